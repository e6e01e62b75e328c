"""What tuneflow keeps on each Optuna trial (user attributes), and how it reads them back."""

from __future__ import annotations

import json
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

HEARTBEAT_ATTR = "tuneflow:heartbeat"
LOST_ATTR = "tuneflow:lost"  # failed because its run died, re-enqueued; does not count toward n_trials
RETRY_OF_ATTR = "tuneflow:retry_of"
ERROR_ATTR = "tuneflow:error"
REQUEUES_ATTR = "tuneflow:requeues"  # how often these params were re-enqueued after exhausting retries
MAX_REQUEUES_DEFAULT = 2
RESULT_ATTR = "tuneflow:result"  # the trial's result summary (timings, model URI, ...): one write
RUNG_ATTR = "tuneflow:rung"  # multi-fidelity: the last rung a trial passed, its checkpoint and reports
FORBIDDEN_ATTR = "tuneflow:forbidden"  # sampled into a forbidden combination: told FAIL, never trained, not counted
WARM_START_ATTR = "tuneflow:warm_start"  # enqueued from an earlier study's trial: "<study>#<number>"
COPIED_ATTR = "tuneflow:copied_from"  # a finished trial copied from a study on identical data: not this study's budget
PBT_ATTR = "tuneflow:pbt"  # population-based training: a member's lineage, one entry per segment
MAX_ATTR_CHARS = 8000


def counts_toward_budget(t: FrozenTrial) -> bool:
    return (
        t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
        and not t.user_attrs.get(LOST_ATTR) and not t.user_attrs.get(FORBIDDEN_ATTR) and not t.user_attrs.get(COPIED_ATTR)
    )


def result_of(t: FrozenTrial) -> dict[str, Any]:
    """The result summary a finished trial was told with ({} for a failed or running one)."""
    return dict(t.user_attrs.get(RESULT_ATTR) or {})


def json_safe(info: dict[str, Any]) -> dict[str, Any]:
    """The entries of `info` that can be stored as a user attribute (JSON, bounded size)."""
    kept = {}
    for key, value in info.items():
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            continue
        kept[key] = value
    while kept and len(json.dumps(kept)) > MAX_ATTR_CHARS:
        kept.pop(max(kept, key=lambda k: len(json.dumps(kept[k]))))
    return kept


def mark_lost(study: optuna.Study, trial: FrozenTrial) -> None:
    """Flag another run's RUNNING trial as lost before failing it.

    The one private call: Optuna's public API sets attributes only through the `Trial` that
    `ask()` returned in this process, and a dead run's trial has none here.
    """
    study._storage.set_trial_user_attr(trial._trial_id, LOST_ATTR, True)
