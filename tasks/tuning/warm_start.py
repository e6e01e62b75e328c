"""Seeding a new study from an earlier one (SageMaker's warm start, Optuna's enqueue/add_trials).

Every study tuneflow opens carries its identity as study attributes: dataset name, data
fingerprint, task, metric, objectives and the search space's hash. A new, empty study looks for
an earlier study with the same dataset, task, metric, objectives and space (the latest one that
has completed trials):
- identical data (same fingerprint): its completed trials are copied in, values included, so the
  sampler starts with what is already known. Copies do not count toward the new study's budget;
- changed data: its `top_k` configurations are enqueued, to be evaluated first on the new data.
`--warm-start STUDY` names the parent instead; `--warm-start off` starts cold.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState, create_trial

from tasks.contracts import RunPlan
from tasks.errors import TuneflowError
from tasks.tuning.records import COPIED_ATTR, RESULT_ATTR, WARM_START_ATTR
from tasks.tuning.studies import is_journal, journal_path, open_storage, space_hash

if TYPE_CHECKING:
    from tasks.tuning.choices import TuningPlan

IDENTITY_ATTR = "tuneflow:identity"
TOP_K = 5
_MATCH = ("dataset", "task", "metric", "objectives", "space")


@dataclass(frozen=True)
class StudyIdentity:
    dataset: str
    fingerprint: str
    task: str
    metric: str
    objectives: str  # comma-separated names
    space: str  # hash of the search space

    def matches(self, other: dict[str, Any]) -> bool:
        mine = asdict(self)
        return all(other.get(k) == mine[k] for k in _MATCH)


def study_identity(plan: RunPlan, tuning: TuningPlan) -> StudyIdentity:
    """What a run's study is about (the data version, the problem, the objectives and the space)."""
    return StudyIdentity(plan.name, plan.fingerprint, plan.task, plan.metric, ",".join(tuning.objectives.names), space_hash(plan.space))


def check_warm_start(storage_url: str, mode: str, identity: StudyIdentity) -> None:
    """`--warm-start STUDY`: refuse a parent that is not there or not alike, before any work."""
    if mode in ("auto", "off"):
        return
    if is_journal(storage_url) and not Path(journal_path(storage_url)).exists():  # no storage yet: no study either
        raise TuneflowError(f"--warm-start study '{mode}' is not in the study storage {storage_url} (it does not exist yet).",
                            "run a study first, or use --warm-start auto|off.")
    check_parent(open_storage(storage_url), mode, identity)


def stamp(study: optuna.Study, identity: StudyIdentity) -> None:
    """Record what the study is about, so a later study can find it."""
    if study.user_attrs.get(IDENTITY_ATTR) != asdict(identity):
        study.set_user_attr(IDENTITY_ATTR, asdict(identity))


def find_parent(storage: optuna.storages.BaseStorage, identity: StudyIdentity, exclude: str) -> str | None:
    """The latest other study with the same dataset, task, metric, objectives and space, if any."""
    best: tuple[Any, str] | None = None
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        if summary.study_name == exclude or not identity.matches(summary.user_attrs.get(IDENTITY_ATTR) or {}):
            continue
        if summary.n_trials == 0 or summary.datetime_start is None:
            continue
        if best is None or summary.datetime_start > best[0]:
            best = (summary.datetime_start, summary.study_name)
    return best[1] if best else None


def check_parent(storage: optuna.storages.BaseStorage, parent: str, identity: StudyIdentity) -> None:
    """`--warm-start STUDY`: the study exists and was tuned for the same problem and space."""
    names = {s.study_name: s for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    if parent not in names:
        raise TuneflowError(f"--warm-start study '{parent}' is not in the study storage.", "name a study from `optuna studies --storage URL`, or use --warm-start auto|off.")
    theirs = names[parent].user_attrs.get(IDENTITY_ATTR) or {}
    if not identity.matches(theirs):
        differ = [k for k in _MATCH if theirs.get(k) != asdict(identity)[k]]
        raise TuneflowError(
            f"--warm-start study '{parent}' was tuned with another {', '.join(differ)}: its configurations do not carry over.",
            "name a study of the same task, metric, objectives and search space, or use --warm-start auto|off.",
        )


def seed_new_study(study: optuna.Study, storage: optuna.storages.BaseStorage, mode: str, identity: StudyIdentity) -> dict[str, Any] | None:
    """`--warm-start auto|off|STUDY` for a study that has no trials yet; what was done, or None."""
    if mode == "off" or study.get_trials(deepcopy=False):
        return None
    parent = mode if mode != "auto" else find_parent(storage, identity, study.study_name)
    return warm_start(study, storage, parent, identity) if parent else None


def warm_start(study: optuna.Study, storage: optuna.storages.BaseStorage, parent_name: str, identity: StudyIdentity, top_k: int = TOP_K) -> dict[str, Any] | None:
    """Seed the (empty) `study` from `parent_name`; returns what was done, for the log and report."""
    parent = optuna.load_study(study_name=parent_name, storage=storage)
    done = [t for t in parent.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.values and not math.isnan(t.values[0])]
    if not done:
        return None
    same_data = (parent.user_attrs.get(IDENTITY_ATTR) or {}).get("fingerprint") == identity.fingerprint
    if same_data:
        study.add_trials([
            create_trial(
                params=t.params, distributions=t.distributions, values=t.values, state=TrialState.COMPLETE,
                user_attrs={RESULT_ATTR: t.user_attrs.get(RESULT_ATTR) or {}, COPIED_ATTR: f"{parent_name}#{t.number}"},
            )
            for t in done
        ])
        return {"from": parent_name, "mode": "copied", "trials": len(done)}
    maximize = parent.directions[0] == optuna.study.StudyDirection.MAXIMIZE
    ranked = sorted(done, key=lambda t: -t.values[0] if maximize else t.values[0])
    seen: list[dict[str, Any]] = []
    for t in ranked:
        if t.params not in seen:
            seen.append(t.params)
            study.enqueue_trial(t.params, user_attrs={WARM_START_ATTR: f"{parent_name}#{t.number}"}, skip_if_exists=True)
        if len(seen) == top_k:
            break
    return {"from": parent_name, "mode": "enqueued", "trials": len(seen)}
