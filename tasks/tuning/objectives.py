"""What a study optimises: the metric alone, or the metric plus costs of the model (multi-objective).

`--objectives auc,size_mb,latency_ms` names the metric first, then any of:
- `size_mb`: the saved model's size (UBJSON, MB), minimised;
- `latency_ms`: milliseconds to predict 1,000 rows of the valid split, minimised;
- `train_s`: the trial's training seconds, minimised.

Registration rule (documented in the README): of the completed trials that are within every
limit given with `--within` (e.g. `--within size_mb=2,latency_ms=5`), the one with the best
metric; without limits, the best metric. That trial is always on the Pareto front: a trial that
dominated it would be within the limits too, with a metric at least as good.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from tasks.errors import TuneflowError

COSTS: dict[str, str] = {
    "size_mb": "model size (MB)",
    "latency_ms": "predict latency (ms per 1k rows)",
    "train_s": "training time (s)",
}


def cost_value(name: str, result: dict[str, Any]) -> float:
    """One cost objective from a trial's result summary."""
    if name == "size_mb":
        return float(result.get("model_bytes") or 0) / 1e6
    if name == "latency_ms":
        latency = result.get("predict_ms_per_1k")
        return float(latency) if latency is not None else math.nan
    return float(result.get("train_seconds") or 0.0)


@dataclass(frozen=True)
class Objectives:
    metric: str
    direction: str  # the metric's
    costs: tuple[str, ...] = ()
    limits: dict[str, float] = field(default_factory=dict)  # --within: registration limits per cost

    @property
    def multi(self) -> bool:
        return bool(self.costs)

    @property
    def names(self) -> list[str]:
        return [self.metric, *self.costs]

    @property
    def directions(self) -> list[str]:
        return [self.direction, *("minimize" for _ in self.costs)]

    @property
    def measures_latency(self) -> bool:
        return "latency_ms" in self.costs

    def values(self, metric_value: float, result: dict[str, Any]) -> list[float]:
        return [metric_value, *(cost_value(c, result) for c in self.costs)]

    def trial_values(self, t: FrozenTrial) -> dict[str, float]:
        return dict(zip(self.names, t.values or []))

    def within(self, t: FrozenTrial) -> bool:
        values = self.trial_values(t)
        return all(values.get(name, math.inf) <= limit for name, limit in self.limits.items())

    def describe(self) -> str:
        if not self.multi:
            return f"{self.metric} ({self.direction})"
        limits = ", ".join(f"{k} <= {v:g}" for k, v in self.limits.items())
        return f"{', '.join(self.names)} (Pareto front; registered: best {self.metric}" + (f" within {limits})" if limits else ")")


def parse_objectives(text: str | None, metric: str, direction: str, within: str | None = None) -> Objectives:
    """`--objectives` and `--within` checked against the run's metric."""
    fix = f"write e.g. --objectives {metric},size_mb (the metric first, then {', '.join(COSTS)})."
    names = [n.strip() for n in (text or metric).split(",") if n.strip()]
    if not names or names[0] != metric:
        raise TuneflowError(f"Bad --objectives {text!r}: the first objective must be the run's metric ({metric}).", fix)
    costs = names[1:]
    unknown = [c for c in costs if c not in COSTS]
    if unknown or len(set(costs)) != len(costs):
        raise TuneflowError(f"Bad --objectives {text!r}: {', '.join(unknown) or 'a repeated objective'}.", fix)
    limits = _limits(within, costs)
    return Objectives(metric, direction, tuple(costs), limits)


def _limits(within: str | None, costs: list[str]) -> dict[str, float]:
    if not within:
        return {}
    fix = "write e.g. --within size_mb=2,latency_ms=5 with objectives named in --objectives."
    limits: dict[str, float] = {}
    for part in within.split(","):
        name, sep, value = part.partition("=")
        name = name.strip()
        try:
            limit = float(value)
        except ValueError:
            limit = math.nan
        if not costs:
            raise TuneflowError(f"--within {within} limits objectives, but --objectives names none besides the metric.", "add e.g. --objectives auc,size_mb, or leave --within out.")
        if not sep or name not in costs or not math.isfinite(limit) or limit <= 0:
            raise TuneflowError(f"Bad --within {within!r}" + (f" at {part.strip()!r}" if part.strip() != within.strip() else "") + ".", fix)
        limits[name] = limit
    return limits


def pareto_front(study: optuna.Study, objectives: Objectives) -> list[dict[str, Any]]:
    """The Pareto-optimal completed trials, best metric first, as rows for reports."""
    if not objectives.multi:
        return []
    front = study.best_trials
    maximize = objectives.direction == "maximize"
    front.sort(key=lambda t: -t.values[0] if maximize else t.values[0])
    return [{"number": t.number, **objectives.trial_values(t), "within_limits": objectives.within(t)} for t in front]


def pick_registered(study: optuna.Study, objectives: Objectives) -> FrozenTrial:
    """The trial the registration rule picks (see the module docstring)."""
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.values and not math.isnan(t.values[0])]
    if not objectives.multi:
        return study.best_trial
    fits = [t for t in done if objectives.within(t)]
    if not fits:
        closest = {name: min(objectives.trial_values(t)[name] for t in done) for name in objectives.limits} if done else {}
        raise TuneflowError(
            f"No completed trial is within --within {', '.join(f'{k}<={v:g}' for k, v in objectives.limits.items())} "
            f"(smallest seen: {', '.join(f'{k} {v:.4g}' for k, v in closest.items()) or 'none'}); nothing was registered.",
            "raise the limits, or run more trials in the same study.",
        )
    maximize = objectives.direction == "maximize"
    return max(fits, key=lambda t: (t.values[0] if maximize else -t.values[0], -t.number))


def metric_value(t: FrozenTrial) -> float:
    """A finished trial's metric (its first objective)."""
    values = t.values or ([t.value] if t.value is not None else [])
    return float(values[0]) if values else math.nan

