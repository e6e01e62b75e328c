"""How the flow runs the tuning step for each strategy: the ask/tell loop with rungs and a
pruner (search), or population-based training. Both send their units of work as Prefect trial
tasks to the same trainer; the loop and PBT themselves are plain code in tasks/tuning/."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optuna
from prefect import get_run_logger

from flows import steps
from tasks import objectstore
from tasks.contracts import Strategy, TrialRequest
from tasks.engine.placement import Trainer
from tasks.tuning.choices import SearchChoices, TuningPlan
from tasks.tuning.loop import StudyOutcome, TrialEvent, run_study
from tasks.tuning.pbt import PopulationTraining
from tasks.tuning.results import checkpoint_path, model_path
from tasks.tuning.rungs import RungScheduler, Unit
from tasks.tuning.samplers import exhausted
from tasks.tuning.search_space import SearchSpace
from tasks.tuning.stopping import StopWatch


def tune(
    study: optuna.Study,
    space: SearchSpace,
    choices: SearchChoices,
    tuning: TuningPlan,
    template: TrialRequest,
    trainer: Trainer,
    *,
    store: str,
    n_trials: int | None,
    timeout: float | None,
    parallelism: int,
    trial_timeout: float | None,
    seed: int,
    on_event: Callable[[TrialEvent], None],
) -> StudyOutcome:
    """Run the tuning step the choices ask for; returns the loop's (or PBT's) outcome."""
    name = study.study_name
    if choices.strategy == Strategy.PBT:
        def run_segment(member: int, params: dict[str, Any], unit: Unit) -> Any:
            request = unit.request(template.for_trial(member, params))
            uri = objectstore.join(store, "studies", name, "pbt", f"member-{member:03d}.ubj")
            return steps.trial_task.submit(member, request, trainer, uri, trial_timeout)

        log = get_run_logger()
        return PopulationTraining(
            study, space.params, population=choices.population, segments=choices.segments, max_rounds=template.num_boost_round,
            parallelism=parallelism, run_segment=run_segment, checkpoint_path=lambda m, s: checkpoint_path(store, name, 10_000 + m, s),
            state_uri=objectstore.join(store, "studies", name, "pbt-state.json"), storage_options=template.storage_options,
            seed=seed, timeout=timeout, on_event=on_event, log=log.info,
        ).run()

    def run_unit(number: int, params: dict[str, Any], unit: Unit) -> Any:
        request = unit.request(template.for_trial(number, params))
        return steps.trial_task.submit(number, request, trainer, model_path(store, name, number), trial_timeout)

    scheduler = RungScheduler(study, list(choices.rungs), run_unit, lambda number, rung: checkpoint_path(store, name, number, rung))
    objectives = tuning.objectives
    maximize = objectives.direction == "maximize"
    return run_study(
        study, space, n_trials=n_trials, timeout=timeout, parallelism=parallelism, on_event=on_event,
        submit=lambda number, params: None, start=scheduler.start, advance=scheduler.advance, schedule=choices.schedule.value,
        stop=StopWatch(tuning.rules, maximize, best=_best_value(study, maximize)), exhausted=lambda: exhausted(study.sampler, study),
        values_of=objectives.values if objectives.multi else None,
    )


def _best_value(study: optuna.Study, maximize: bool) -> float | None:
    """The study's best metric so far (a resumed study may already be past --stop-at)."""
    values = [t.values[0] for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)) if t.values]
    return (max(values) if maximize else min(values)) if values else None
