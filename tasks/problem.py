"""The learning problem: task types, metrics and their optimisation directions."""

from __future__ import annotations

from typing import Any, Literal

from tasks.errors import TuneflowError

TaskType = Literal["binary", "multiclass", "regression"]

# XGBoost eval_metric name -> Optuna direction.
METRICS: dict[str, dict[str, str]] = {
    "binary": {"auc": "maximize", "aucpr": "maximize", "logloss": "minimize", "error": "minimize"},
    "multiclass": {"mlogloss": "minimize", "merror": "minimize"},
    "regression": {"rmse": "minimize", "mae": "minimize", "mape": "minimize", "rmsle": "minimize"},
}
DEFAULT_METRIC = {"binary": "auc", "multiclass": "mlogloss", "regression": "rmse"}


def check_task(task: str) -> TaskType:
    if task not in METRICS:
        raise TuneflowError(f"Unknown task '{task}'.", f"use one of: {', '.join(METRICS)}.")
    return task  # type: ignore[return-value]


def resolve_metric(task: str, metric: str | None) -> tuple[str, str]:
    """Return (metric, direction), defaulting the metric by task."""
    check_task(task)
    metric = metric or DEFAULT_METRIC[task]
    if metric not in METRICS[task]:
        raise TuneflowError(
            f"Unknown metric '{metric}' for a {task} task.",
            f"use one of: {', '.join(METRICS[task])} (or leave --metric out for {DEFAULT_METRIC[task]}).",
        )
    return metric, METRICS[task][metric]


def objective_params(task: str, n_classes: int, metric: str) -> dict[str, Any]:
    """XGBoost parameters fixed by the problem, not tuned."""
    if task == "binary":
        return {"objective": "binary:logistic", "eval_metric": metric}
    if task == "multiclass":
        return {"objective": "multi:softprob", "num_class": n_classes, "eval_metric": metric}
    return {"objective": "reg:squarederror", "eval_metric": metric}
