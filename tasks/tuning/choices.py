"""How a run spends its compute: strategy, pruner, fidelity, schedule, population, checked as one
before any work starts (the CLI checks them before the temporary Prefect server starts)."""

from __future__ import annotations

from dataclasses import dataclass

from tasks.contracts import (
    DEFAULT_FIDELITY, DEFAULT_PBT_SEGMENTS, DEFAULT_PRUNER, DEFAULT_POPULATION, DEFAULT_SAMPLER,
    Fidelity, Placement, Pruner, RunPlan, Schedule, Strategy, WarmStart,
)
from tasks.errors import TuneflowError
from tasks.tuning.objectives import Objectives, parse_objectives
from tasks.tuning.rungs import Rung, ladder
from tasks.tuning.samplers import SamplerChoice, choose_sampler
from tasks.tuning.stopping import StoppingRules

MIN_FRACTION_ROWS = 500  # per worker: the smallest data rung must still rank configurations


@dataclass(frozen=True)
class SearchChoices:
    strategy: Strategy
    pruner: Pruner
    fidelity: Fidelity
    schedule: Schedule
    population: int
    segments: int
    rungs: tuple[Rung, ...]


def _member(kind: type, value: object, option: str):  # noqa: ANN202 (an enum member of `kind`)
    try:
        return kind(value)
    except ValueError:
        raise TuneflowError(f"Bad {option} {value!r}.", f"use {option} {'|'.join(m.value for m in kind)}.") from None


def search_choices(
    strategy: str = Strategy.SEARCH,
    pruner: str | None = None,
    fidelity: str = DEFAULT_FIDELITY,
    schedule: str = Schedule.ASYNC,
    population: int = DEFAULT_POPULATION,
    max_rounds: int = 500,
    segments: int = DEFAULT_PBT_SEGMENTS,
    multi_objective: bool = False,
    early_stopping_rounds: int = 0,
) -> SearchChoices:
    """The checked choices; `pruner=None` means the default for the strategy (and for a
    multi-objective study, which Optuna's pruners cannot judge: none)."""
    chosen_strategy = _member(Strategy, strategy, "--strategy")
    chosen_fidelity = _member(Fidelity, fidelity, "--fidelity")
    chosen_schedule = _member(Schedule, schedule, "--schedule")
    if max_rounds < 1:
        raise TuneflowError(f"Bad --max-rounds {max_rounds}.", "use --max-rounds 1 or more.")
    if early_stopping_rounds < 0:  # a negative patience stops every trial after its first round
        raise TuneflowError(f"Bad --early-stopping-rounds {early_stopping_rounds}.", "use 1 or more rounds without improvement (0 turns early stopping off).")
    if chosen_strategy == Strategy.PBT:
        if multi_objective:
            raise TuneflowError("--strategy pbt optimises one objective.", "use --strategy search with several --objectives.")
        if pruner not in (None, Pruner.NONE):
            raise TuneflowError(f"--pruner {pruner} does not apply to --strategy pbt.", "leave --pruner out: PBT replaces the worst members itself.")
        if population < 2:
            raise TuneflowError(f"Bad --population {population}: PBT needs members to copy from.", "use --population 2 or more (4-16 is usual).")
        if not 1 <= segments <= max_rounds:
            raise TuneflowError(f"Bad PBT segment count {segments} for {max_rounds} rounds.", "use fewer segments than --max-rounds.")
        return SearchChoices(chosen_strategy, Pruner.NONE, chosen_fidelity, chosen_schedule, population, segments, tuple(ladder(chosen_fidelity, Pruner.NONE, max_rounds)))
    if multi_objective and pruner not in (None, Pruner.NONE):
        raise TuneflowError(f"--pruner {pruner} cannot judge a multi-objective study (Optuna's pruners compare one value).", "leave --pruner out (or --pruner none) with several --objectives.")
    chosen_pruner = (Pruner.NONE if multi_objective else DEFAULT_PRUNER) if pruner is None else _member(Pruner, pruner, "--pruner")
    if chosen_pruner == Pruner.NONE and chosen_fidelity != Fidelity.ROUNDS:
        raise TuneflowError(f"--fidelity {chosen_fidelity} needs a pruner: without one every trial trains on all the rows.", "add --pruner sha (or hyperband, median, percentile).")
    rungs = tuple(ladder(chosen_fidelity, chosen_pruner, max_rounds))
    return SearchChoices(chosen_strategy, chosen_pruner, chosen_fidelity, chosen_schedule, population, segments, rungs)


def check_placement(choices: SearchChoices, placement: Placement, train_rows: int, workers: int) -> None:
    """Refuse a fidelity the placement cannot serve: a data rung with too few rows on a worker."""
    smallest = min(r.fraction for r in choices.rungs)
    holders = workers if placement == Placement.DATA else 1
    rows = int(train_rows * smallest / max(1, holders))
    if smallest < 1.0 and rows < MIN_FRACTION_ROWS:
        where = f"each of {holders} workers" if holders > 1 else "the trial"
        raise TuneflowError(
            f"--fidelity {choices.fidelity} trains its first rung on 1/{round(1 / smallest)} of {train_rows} train rows: {rows} rows on {where} (< {MIN_FRACTION_ROWS}).",
            "use --fidelity rounds for data this small" + (", or fewer workers" if holders > 1 else "") + ".",
        )



@dataclass(frozen=True)
class TuningPlan:
    """The search's sampler, objectives, stopping rules and warm start, checked against the space."""

    sampler: SamplerChoice
    objectives: Objectives
    rules: StoppingRules
    warm_start: str  # auto | off | a study name
    n_trials: int | None  # the budget, capped at the grid's size for a grid search


def plan_tuning(
    plan: RunPlan,
    choices: SearchChoices,
    *,
    n_trials: int | None,
    sampler: str = DEFAULT_SAMPLER,
    objectives: str | None = None,
    within: str | None = None,
    stop_at: float | None = None,
    patience: int | None = None,
    min_delta: float = 0.0,
    max_cost: float | None = None,
    warm_start: str = WarmStart.AUTO,
) -> TuningPlan:
    """Check the search options together (the CLI before Prefect starts, the flow again)."""
    chosen_objectives = parse_objectives(objectives, plan.metric, plan.direction, within)
    rules = StoppingRules(stop_at, patience, min_delta, max_cost)
    if choices.strategy == Strategy.PBT:
        if rules.any:
            raise TuneflowError("Stopping rules apply to --strategy search.", "leave --stop-at/--patience/--max-cost out with --strategy pbt.")
        if plan.space.conditional:
            raise TuneflowError("--strategy pbt cannot explore a conditional space.", "use --strategy search, or a space without conditions.")
    if not str(warm_start).strip():
        raise TuneflowError("Bad --warm-start ''.", "use --warm-start auto|off|STUDY_NAME.")
    choice = choose_sampler(sampler, plan.space, n_trials, len(chosen_objectives.names))
    budget = n_trials
    if choice.grid_size is not None and (budget is None or budget > choice.grid_size):
        budget = choice.grid_size
    return TuningPlan(choice, chosen_objectives, rules, str(warm_start), budget)
