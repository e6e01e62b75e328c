"""Multi-fidelity trials: a trial runs as a ladder of rungs, each a unit of work on the workers,
and the flow reports every rung to the trial and asks the study's pruner before the next one.

The workers never see the study: a rung is a `TrialRequest` that continues the trial's booster
(rounds fidelity: live on the worker, with a `.ubj` checkpoint in the store) or trains afresh on
a larger nested fraction of the train rows (data fidelity). The flow owns the trial, so pruning
works the same in both placements and on any device.

Crash-resume: after a rung passes, the trial records it (`tuneflow:rung`: its checkpoint, best
round and the values reported so far). When a run dies, another run fails the trial as lost and
enqueues its parameters again (tasks/tuning/liveness.py); the copy reports the recorded values
again and resumes from the last recorded rung's checkpoint, so no rung is lost or run twice in
the study. A rung that was running when the run died is run again from the rung before it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna

from tasks.contracts import REDUCTION_FACTOR, Fidelity, Pruner, TrialRequest
from tasks.tuning.curves import CurveBuilder
from tasks.tuning.records import RETRY_OF_ATTR, RUNG_ATTR

MIN_RUNG_ROUNDS = 10  # fewer rounds than this rank configurations by their learning rate alone
MAX_RUNGS = 4


@dataclass(frozen=True)
class Rung:
    index: int
    rounds: int  # boosting rounds in the trial's booster at the end of this rung
    fraction: float  # share of the train rows it trains on
    step: int  # the resource reported to Optuna: trial.report(value, step)


def ladder(fidelity: Fidelity, pruner: Pruner, max_rounds: int, eta: int = REDUCTION_FACTOR) -> list[Rung]:
    """The rungs of every trial: one full rung without a pruner; else geometric in rounds, data or both.

    Steps are min_step * eta^k exactly, as Optuna's SuccessiveHalving/Hyperband rungs expect.
    rounds: as many rungs (at most 4) as keep the first at >= 10 rounds; the last trains to max_rounds.
    data:   fractions 1/9, 1/3, 1 of the train rows, each trained afresh up to max_rounds.
    both:   fractions 1/9, 1/3, 1 and rounds max_rounds/9, /3, /1 together.
    """
    if pruner == Pruner.NONE:
        return [Rung(0, max_rounds, 1.0, max_rounds)]
    if fidelity == Fidelity.ROUNDS:
        k = 1
        while k < MAX_RUNGS and max_rounds // eta**k >= MIN_RUNG_ROUNDS:
            k += 1
        first = max_rounds // eta ** (k - 1)
        return [Rung(i, first * eta**i if i < k - 1 else max_rounds, 1.0, first * eta**i) for i in range(k)]
    k = 3
    rungs = []
    for i in range(k):
        shrink = eta ** (k - 1 - i)
        rounds = max_rounds if fidelity == Fidelity.DATA else max(1, math.ceil(max_rounds / shrink))
        rungs.append(Rung(i, rounds, 1.0 / shrink, eta**i))
    return rungs


def make_pruner(pruner: Pruner, rungs: list[Rung], eta: int = REDUCTION_FACTOR) -> optuna.pruners.BasePruner:
    """Optuna's pruner for `pruner`, its resources set to the ladder's steps."""
    first, last = rungs[0].step, rungs[-1].step
    match pruner:
        case Pruner.NONE:
            return optuna.pruners.NopPruner()
        case Pruner.MEDIAN:
            return optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=0)
        case Pruner.PERCENTILE:
            return optuna.pruners.PercentilePruner(25.0, n_startup_trials=4, n_warmup_steps=0)
        case Pruner.SHA:
            return optuna.pruners.SuccessiveHalvingPruner(min_resource=first, reduction_factor=eta, min_early_stopping_rate=0)
        case Pruner.HYPERBAND:
            return optuna.pruners.HyperbandPruner(min_resource=first, max_resource=last, reduction_factor=eta)
    raise ValueError(pruner)


@dataclass
class RungState:
    """Where one trial is on the ladder."""

    rung: int = 0  # the rung running now
    best: tuple[int, float] | None = None  # best (round, value) of the booster being continued
    checkpoint: str | None = None  # the saved booster the next rung continues
    total_rounds: int = 0
    reports: dict[int, float] = dataclasses.field(default_factory=dict)
    resumed_from: int | None = None  # the lost trial this one continues
    seconds: float = 0.0  # worker seconds over the rungs
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    attempts: int = 1  # the most Prefect attempts any of its rungs took
    cpu_seconds: float = 0.0  # worker CPU over the rungs
    peak_rss_mb: float = 0.0  # the largest worker memory peak of its rungs
    curve: CurveBuilder = dataclasses.field(default_factory=CurveBuilder)  # the valid metric per round, over the rungs

    def record(self) -> dict[str, Any]:
        return {"rung": self.rung, "best": list(self.best) if self.best else None, "checkpoint": self.checkpoint,
                "total_rounds": self.total_rounds, "reports": {str(k): v for k, v in self.reports.items()}, "seconds": round(self.seconds, 4),
                "cpu_seconds": round(self.cpu_seconds, 4), "peak_rss_mb": self.peak_rss_mb}


@dataclass(frozen=True)
class Unit:
    """What the flow sends for one rung (over the trial's request)."""

    rung: Rung
    num_boost_round: int
    fraction: float
    resume_from: str | None
    checkpoint_uri: str | None
    best_so_far: tuple[int, float] | None
    live_key: str | None

    def request(self, base: TrialRequest) -> TrialRequest:
        """The trial's request for this rung."""
        return dataclasses.replace(
            base, num_boost_round=self.num_boost_round, fraction=self.fraction, resume_from=self.resume_from,
            checkpoint_uri=self.checkpoint_uri, best_so_far=self.best_so_far, live_key=self.live_key,
        )


RunUnit = Callable[[int, dict[str, Any], Unit], Any]  # (trial number, params, unit) -> future


class RungScheduler:
    """The tuning loop's `start`/`advance` pair for a ladder of rungs."""

    def __init__(self, study: optuna.Study, rungs: list[Rung], run_unit: RunUnit, checkpoint_path: Callable[[int, int], str]) -> None:
        self.study, self.rungs, self.run_unit, self.checkpoint_path = study, rungs, run_unit, checkpoint_path
        self.states: dict[int, RungState] = {}
        self.single_objective = len(study.directions) == 1

    def start(self, trial: optuna.Trial, params: dict[str, Any]) -> Any:
        state = self._resumed(trial) or RungState()
        state.params = params
        self.states[trial.number] = state
        return self.run_unit(trial.number, params, self._unit(trial.number, state))

    def advance(self, trial: optuna.Trial, result: dict[str, Any]) -> Callable[[], Any] | None:
        """Report the rung; None when the trial is done, else the next rung (raises TrialPruned)."""
        state = self.states[trial.number]
        rung = self.rungs[state.rung]
        value = float(result["value"])
        state.best, state.total_rounds = (int(result["best_iteration"]), value), int(result.get("total_rounds") or 0)
        state.checkpoint = result.get("checkpoint_uri")
        state.seconds += float(result.get("seconds") or 0.0)
        state.cpu_seconds += float(result.get("cpu_seconds") or 0.0)
        state.peak_rss_mb = max(state.peak_rss_mb, float(result.get("peak_rss_mb") or 0.0))
        state.attempts = max(state.attempts, int(result.get("attempt") or 1))
        result["attempt"] = state.attempts  # a retried rung shows on the trial, whichever rung it was
        state.reports[rung.step] = value
        state.curve.add(result)  # the trial's curve so far replaces this unit's history in the result
        if self.single_objective:  # Optuna takes no reports in a multi-objective study (it has no pruner either)
            trial.report(value, rung.step)
        result["rung"], result["rungs"], result["unit_seconds"], result["seconds"] = rung.index, len(self.rungs), result.get("seconds"), round(state.seconds, 4)
        result["cpu_seconds"], result["peak_rss_mb"] = round(state.cpu_seconds, 4), state.peak_rss_mb  # the trial's, over its rungs
        nxt = self.rungs[rung.index + 1] if rung.index + 1 < len(self.rungs) else None
        converged = nxt is not None and nxt.fraction == rung.fraction and bool(result.get("stopped_early"))
        if nxt is None or converged:  # full fidelity, or early stopping ended it before the ladder did
            self.states.pop(trial.number, None)
            return None
        if trial.should_prune():
            self.states.pop(trial.number, None)
            raise optuna.TrialPruned(f"pruned at rung {rung.index} (step {rung.step}) with {value:.6g}")
        state.rung += 1
        trial.set_user_attr(RUNG_ATTR, state.record())  # passed: a resumed copy starts after it
        return lambda: self.run_unit(trial.number, state.params, self._unit(trial.number, state))

    def _unit(self, number: int, state: RungState) -> Unit:
        rung = self.rungs[state.rung]
        prev = self.rungs[state.rung - 1] if state.rung else None
        continues = prev is not None and prev.fraction == rung.fraction and state.checkpoint is not None
        nxt = self.rungs[rung.index + 1] if rung.index + 1 < len(self.rungs) else None
        keep = nxt is not None and nxt.fraction == rung.fraction  # the next rung continues this one's booster
        return Unit(
            rung=rung,
            num_boost_round=rung.rounds - (state.total_rounds if continues else 0),
            fraction=rung.fraction,
            resume_from=state.checkpoint if continues else None,
            checkpoint_uri=self.checkpoint_path(number, rung.index) if keep else None,
            best_so_far=state.best if continues else None,
            live_key=f"{self.study.study_name}:{number}" if (keep or continues) else None,
        )

    def _resumed(self, trial: optuna.Trial) -> RungState | None:
        """The state a re-enqueued copy of a lost trial resumes from: its last recorded rung."""
        lost = trial.user_attrs.get(RETRY_OF_ATTR)
        if lost is None:
            return None
        old = next((t for t in self.study.get_trials(deepcopy=False) if t.number == lost), None)
        rec = old.user_attrs.get(RUNG_ATTR) if old is not None else None
        if not rec or rec["rung"] >= len(self.rungs):
            return None
        reports = {int(k): float(v) for k, v in rec["reports"].items()}
        for step, value in sorted(reports.items() if self.single_objective else ()):
            trial.report(value, step)
        state = RungState(rung=int(rec["rung"]), best=tuple(rec["best"]) if rec["best"] else None, checkpoint=rec["checkpoint"],
                          total_rounds=int(rec["total_rounds"]), reports=reports, resumed_from=int(lost), seconds=float(rec.get("seconds", 0.0)),
                          cpu_seconds=float(rec.get("cpu_seconds", 0.0)), peak_rss_mb=float(rec.get("peak_rss_mb", 0.0)))
        trial.set_user_attr(RUNG_ATTR, state.record())
        return state
