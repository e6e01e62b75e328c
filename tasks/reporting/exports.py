"""The study report and the best trials' learning curves, where people analyse results:
MLflow (the registered model's run) and TensorBoard event files.

- `log_to_mlflow`: the HTML report as an artifact of the run (`report/study_report.html`) and
  each top trial's per-round valid metric as a step metric `curve/trial_<n>/valid_<metric>`
  (step = boosting round), in batches; a curve the run already has is not logged again.
- `write_tensorboard`: one event-file folder per trial (`<out>/trial-00012/`), the curve as the
  scalar `valid/<metric>` per round and the trial's parameters and final value as TensorBoard
  hparams, so `tensorboard --logdir <out>` shows the curves side by side and the HParams tab
  compares the trials.
"""

from __future__ import annotations

import math
import re
import time
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from tasks.tuning.curves import curve_points, metric_of, top_trials
from tasks.tuning.warm_start import IDENTITY_ATTR

REPORT_ARTIFACT = "report/study_report.html"
MLFLOW_BATCH = 1000  # MLflow's most metrics per log_batch


def curve_key(number: int, metric: str) -> str:
    # XGBoost metric names may hold '@' (ndcg@5); MLflow keys may not
    return f"curve/trial_{number}/valid_{re.sub(r'[^0-9A-Za-z_./ -]', '_', metric)}"


def log_to_mlflow(
    tracking_uri: str, run_id: str, html: str | None, study: optuna.Study, metric: str, *, top_k: int = 3, include: int | None = None,
) -> dict[str, int]:
    """Log the report and the top trials' curves to run `run_id`; returns {metric key: points logged}."""
    import tasks.register  # noqa: F401  (sets MLflow's import-time environment first)
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    if html is not None:
        client.log_text(run_id, html, REPORT_ARTIFACT)
    present = set(client.get_run(run_id).data.metrics)
    now = int(time.time() * 1000)
    metrics: list[Metric] = []
    logged: dict[str, int] = {}
    for t in top_trials(study, top_k, include=include):
        key = curve_key(t.number, metric)
        if key in present:  # a re-run that reused this registration: the curve is there already
            continue
        points = [(s, v) for s, v in curve_points(t) if math.isfinite(v)]
        metrics += [Metric(key, v, now, s) for s, v in points]
        logged[key] = len(points)
    for i in range(0, len(metrics), MLFLOW_BATCH):
        client.log_batch(run_id, metrics=metrics[i : i + MLFLOW_BATCH], synchronous=True)
    return logged


def write_tensorboard(study: optuna.Study, out_dir: str | Path, *, metric: str | None = None, top_k: int | None = None) -> list[Path]:
    """TensorBoard event files for the study's trials with a curve (the best `top_k`, or all);
    returns the folders written, best trial first."""
    from tensorboardX import SummaryWriter
    from tensorboardX.summary import hparams

    metric = metric or _metric_name(study)
    trials = top_trials(study, top_k if top_k is not None else len(study.trials))
    out = Path(out_dir)
    written = []
    for t in trials:
        folder = out / f"trial-{t.number:05d}"
        with SummaryWriter(logdir=str(folder), flush_secs=3600) as writer:
            for step, value in curve_points(t):
                writer.add_scalar(f"valid/{metric}", value, global_step=step)
            value = metric_of(t)
            if value is not None:  # TensorBoard's HParams tab: this trial's configuration and result
                for summary in hparams(_hparam_values(t), {f"hparam/{metric}": value}):
                    writer.file_writer.add_summary(summary)
                writer.add_scalar(f"hparam/{metric}", value, global_step=0)
        written.append(folder)
    return written


def _metric_name(study: optuna.Study) -> str:
    ident = study.user_attrs.get(IDENTITY_ATTR) or {}
    return str(ident.get("metric") or "value")


def _hparam_values(t: FrozenTrial) -> dict[str, bool | str | float | int]:
    return {k: v if isinstance(v, (bool, str, float, int)) else str(v) for k, v in t.params.items()}


def trials_with_curves(study: optuna.Study) -> int:
    """How many complete trials of the study kept a curve."""
    return sum(bool(curve_points(t)) for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
