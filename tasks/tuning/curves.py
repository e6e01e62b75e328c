"""Per-round learning curves kept with each trial: the valid metric after every boosting round.

A unit of work returns its rounds' values (`TrialResult.history`); the flow's trial task passes
them on as `history`. A trial of several rungs continues one booster (rounds fidelity), so its
curve is its units' histories end to end; a unit trained afresh (data fidelity, a first unit)
starts a new curve, so the curve is the last fresh unit's and the ones continuing it. The loop
stores the curve once, when the trial is told, as the `tuneflow:curve` user attribute:
`{"start": first round, "every": stride, "values": [...], "rounds": rounds in the booster}`,
subsampled to at most `MAX_POINTS` values (the last round is always kept).

Read back with `curve_points(trial)`; `top_trials(study, k)` are the best complete trials that
have one (what the MLflow step metrics and the TensorBoard export show).
"""

from __future__ import annotations

import math
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

CURVE_ATTR = "tuneflow:curve"
HISTORY_KEY, HISTORY_START_KEY = "history", "history_start"  # in a unit's result dict
MAX_POINTS = 500


def compact_curve(values: list[float] | tuple[float, ...] | None, start: int = 0, max_points: int = MAX_POINTS) -> dict[str, Any] | None:
    """The stored form of a curve: every `every`-th round from `start`, the last round always kept."""
    if not values:
        return None
    values = [float(v) for v in values]
    every = max(1, math.ceil(len(values) / max_points))
    kept = values[::every]
    last_kept = (len(values) - 1) // every * every
    tail = [values[-1]] if last_kept != len(values) - 1 else []
    # 7 significant digits: the metric's own precision in XGBoost's eval log; NaN is stored as None (JSON)
    short = [None if math.isnan(v) else float(f"{v:.7g}") for v in kept + tail]
    if len(short) > max_points:  # the kept tail over the limit: drop the last stride point before it
        short = short[: max_points - 1] + short[-1:]
    return {"start": int(start), "every": every, "values": short, "rounds": int(start) + len(values)}


def curve_points(trial: FrozenTrial) -> list[tuple[int, float]]:
    """(round, valid metric) pairs of a trial's stored curve; [] when it has none."""
    curve = trial.user_attrs.get(CURVE_ATTR)
    if not curve or not curve.get("values"):
        return []
    start, every, values = int(curve["start"]), int(curve["every"]), list(curve["values"])
    steps = [start + i * every for i in range(len(values))]
    if every > 1 and len(values) >= 2:  # the last value is the final round, not the next stride point
        steps[-1] = int(curve.get("rounds", steps[-1] + 1)) - 1
    return [(s, float(v)) for s, v in zip(steps, values) if v is not None]


class CurveBuilder:
    """One trial's curve over its units (the rung scheduler keeps one per trial in flight)."""

    def __init__(self) -> None:
        self.values: list[float] = []
        self.start = 0

    def add(self, result: dict[str, Any]) -> None:
        """Take a unit's `history` from its result; put the trial's curve so far in its place."""
        history = list(result.pop(HISTORY_KEY, None) or [])
        total = int(result.get("total_rounds") or len(history))
        continued = result.get("resumed") in ("live", "checkpoint")
        if continued and self.values and self.start + len(self.values) == total - len(history):
            self.values += history
        elif history:  # a fresh booster, or a continued one whose earlier rounds this run never saw
            self.values, self.start = history, total - len(history)
        if self.values:
            result[HISTORY_KEY], result[HISTORY_START_KEY] = list(self.values), self.start


def pop_curve(result: dict[str, Any]) -> dict[str, Any] | None:
    """Remove a finished trial's history from its result; its stored (compacted) curve, or None."""
    history = result.pop(HISTORY_KEY, None)
    start = result.pop(HISTORY_START_KEY, None)
    if start is None and history:  # one unit: its booster's rounds end with this history
        start = max(0, int(result.get("total_rounds") or len(history)) - len(history))
    return compact_curve(history, int(start or 0))


def metric_of(trial: FrozenTrial) -> float | None:
    """The trial's metric (its first objective)."""
    return float(trial.values[0]) if trial.values else None


def top_trials(study: optuna.Study, k: int = 3, *, with_curve: bool = True, include: int | None = None) -> list[FrozenTrial]:
    """The best `k` complete trials by the metric (with a stored curve when asked), plus trial
    `include` (the registered one) when it is not among them."""
    maximize = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
    trials = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
              if t.values and not math.isnan(t.values[0]) and (not with_curve or curve_points(t))]
    trials.sort(key=lambda t: -t.values[0] if maximize else t.values[0])
    chosen = trials[:k]
    if include is not None and all(t.number != include for t in chosen):
        chosen += [t for t in trials if t.number == include]
    return chosen
