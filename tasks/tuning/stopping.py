"""Stopping rules beyond the trial count and the timeout, checked as trials finish.

- `stop_at`: stop once the metric (the first objective) reaches this value (SageMaker's
  target-value rule);
- `patience` / `min_delta`: stop after `patience` finished trials (complete or pruned) without
  an improvement of the best value by more than `min_delta` (Ray Tune's plateau stopper, counted
  in trials);
- `max_cost`: stop once the trials have used this many core-hours (CPU) or GPU-hours (CUDA),
  measured from the trials: each unit's seconds on the worker times the cores (or GPUs) it held,
  the way a cluster bills them.

A rule stops new trials from starting; trials in flight finish and count. Only a search
(`--strategy search`) uses them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from tasks.errors import TuneflowError


@dataclass(frozen=True)
class StoppingRules:
    stop_at: float | None = None
    patience: int | None = None
    min_delta: float = 0.0
    max_cost: float | None = None  # core-hours on CPU, GPU-hours on CUDA

    def __post_init__(self) -> None:
        if self.stop_at is not None and not math.isfinite(self.stop_at):
            raise TuneflowError(f"Bad --stop-at {self.stop_at}.", "give a finite metric value, e.g. --stop-at 0.9.")
        if self.patience is not None and self.patience < 1:
            raise TuneflowError(f"Bad --patience {self.patience}.", "use --patience 1 or more (finished trials without improvement).")
        if not math.isfinite(self.min_delta) or self.min_delta < 0:
            raise TuneflowError(f"Bad --min-delta {self.min_delta}.", "use --min-delta 0 or more (the smallest gain that counts).")
        if self.min_delta and self.patience is None:
            raise TuneflowError("--min-delta needs --patience.", "add --patience N, or leave --min-delta out.")
        if self.max_cost is not None and (not math.isfinite(self.max_cost) or self.max_cost <= 0):
            raise TuneflowError(f"Bad --max-cost {self.max_cost}.", "give core-hours (GPU-hours on CUDA) above 0, e.g. --max-cost 0.5.")

    @property
    def any(self) -> bool:
        return self.stop_at is not None or self.patience is not None or self.max_cost is not None

    def describe(self) -> str:
        parts = []
        if self.stop_at is not None:
            parts.append(f"stop at {self.stop_at:g}")
        if self.patience is not None:
            parts.append(f"patience {self.patience}" + (f" (min delta {self.min_delta:g})" if self.min_delta else ""))
        if self.max_cost is not None:
            parts.append(f"max cost {self.max_cost:g} h")
        return ", ".join(parts) or "none"


def unit_cost_seconds(result: dict[str, Any]) -> float:
    """Resource-seconds one unit of work held: its seconds on the worker times its cores or GPUs."""
    seconds = float(result.get("seconds") or 0.0)
    if result.get("device") == "cuda":
        return seconds * float(result.get("gpus") or 1)
    return seconds * float(result.get("cores") or 1)


class StopWatch:
    """Applies the rules to a study's finished trials, in the order they finish."""

    def __init__(self, rules: StoppingRules, maximize: bool, best: float | None = None, spent_hours: float = 0.0) -> None:
        self.rules, self.maximize = rules, maximize
        self.best = best
        self.since_gain = 0
        self.spent_seconds = spent_hours * 3600.0
        self.reason: str | None = None

    def spend(self, result: dict[str, Any]) -> None:
        """Count one finished unit of work (every rung, not only a trial's last)."""
        self.spent_seconds += unit_cost_seconds(result)
        if self.rules.max_cost is not None and self.reason is None and self.spent_seconds / 3600.0 >= self.rules.max_cost:
            self.reason = f"max-cost: {self.spent_seconds / 3600.0:.4f} h used (limit {self.rules.max_cost:g} h)"

    def finished(self, number: int, value: float | None) -> None:
        """One trial finished (complete or pruned) with its metric value, if it has one."""
        better = value is not None and not math.isnan(value) and (
            self.best is None or (value > self.best if self.maximize else value < self.best)
        )
        gain = math.inf if self.best is None else (abs(value - self.best) if better and value is not None else 0.0)
        if better:
            self.best = value
        if better and gain > self.rules.min_delta:
            self.since_gain = 0
        else:
            self.since_gain += 1
        if self.reason is not None:
            return
        if self.rules.stop_at is not None and self.best is not None and (
            self.best >= self.rules.stop_at if self.maximize else self.best <= self.rules.stop_at
        ):
            self.reason = f"stop-at: trial {number} reached {self.best:.6g} (target {self.rules.stop_at:g})"
        elif self.rules.patience is not None and self.since_gain >= self.rules.patience:
            delta = f" by more than {self.rules.min_delta:g}" if self.rules.min_delta else ""
            self.reason = f"patience: {self.since_gain} finished trials without improving the best{delta} ({self.best:.6g})"

    @property
    def spent_hours(self) -> float:
        return self.spent_seconds / 3600.0
