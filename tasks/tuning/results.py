"""Reading a study's outcome back: the best trial's full configuration and its saved model."""

from __future__ import annotations

from typing import Any

import optuna

from tasks import objectstore
from tasks.errors import TuneflowError
from tasks.tuning.loop import StudyOutcome
from tasks.tuning.objectives import Objectives, metric_value, pick_registered
from tasks.tuning.records import PBT_ATTR, result_of
from tasks.tuning.search_space import with_fixed


def model_path(store: str, study_name: str, number: int) -> str:
    """Where trial `number`'s model (.ubj) is kept."""
    return objectstore.join(store, "studies", study_name, "models", f"trial-{number:05d}.ubj")


def checkpoint_path(store: str, study_name: str, number: int, unit: int) -> str:
    """Where the whole booster of trial `number` after rung (or PBT segment) `unit` is kept."""
    return objectstore.join(store, "studies", study_name, "checkpoints", f"trial-{number:05d}-unit-{unit:02d}.ubj")


def best_of_study(study: optuna.Study, space: Any, outcome: StudyOutcome, objectives: Objectives | None = None) -> dict[str, Any]:
    """The trial to register (the best, or the registration rule's pick among several objectives);
    a clear error when no trial completed."""
    if outcome.best_number is None:
        raise TuneflowError(
            f"No trial completed in study '{study.study_name}' ({outcome.failed} failed).",
            "look at the trials' errors in the log; check the search space and the data.",
        )
    best = pick_registered(study, objectives) if objectives is not None else study.best_trial
    return {
        "study_name": study.study_name, "number": best.number, "value": metric_value(best),
        "params": with_fixed(space, best.params), "model_uri": result_of(best)["model_uri"],
        "schedule": best.user_attrs.get(PBT_ATTR),  # PBT: the parameters per segment; None for a search
        "resources": {k: result_of(best).get(k) for k in ("cpu_seconds", "peak_rss_mb", "gpu_util_pct", "gpu_mem_peak_mb")},
    }
