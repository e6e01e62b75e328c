"""The Optuna side of tuning: durable storage, resuming, and the asynchronous ask/tell loop.

The loop keeps `parallelism` trials in flight and tells each result as it arrives. It is a plain
function over a `submit(number, params) -> future` callable, so the flow hands it Prefect task
submissions and the tests hand it a thread pool.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import math
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from tasks.errors import TuneflowError, is_transient
from tasks.search_space import suggest

optuna.logging.set_verbosity(optuna.logging.WARNING)

RUN_ATTR = "tuneflow:run"
HEARTBEAT_ATTR = "tuneflow:heartbeat"
LOST_ATTR = "tuneflow:lost"  # failed because its run died, re-enqueued; does not count toward n_trials
RETRY_OF_ATTR = "tuneflow:retry_of"
ERROR_ATTR = "tuneflow:error"
REQUEUES_ATTR = "tuneflow:requeues"  # how often these params were re-enqueued after exhausting retries
MAX_REQUEUES = 2
HEARTBEAT_S = 5.0  # in-flight trials are stamped this often ...
STALE_AFTER_S = 30.0  # ... and a RUNNING trial unstamped this long belongs to a dead run


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """RDB storage for sqlite:// and postgresql:// URLs, a journal file for anything else."""
    if "://" in url and not url.startswith(("journal://", "file://")):
        if not url.startswith(("sqlite", "postgresql", "mysql")):
            raise TuneflowError(f"Unsupported study storage URL {url}.", "use a journal file path, sqlite:///FILE or postgresql://USER:PASS@HOST/DB.")
        try:
            return RDBStorage(url, engine_kwargs={"pool_pre_ping": True}, heartbeat_interval=None)
        except Exception as exc:  # SQLAlchemy raises many kinds; all mean the same to the user
            raise TuneflowError(f"Cannot open study storage {url}: {str(exc).splitlines()[0]}.", "check that the database is running and the URL is right.") from exc
    path = Path(url.split("://", 1)[-1])
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


def default_study_name(dataset: str, fp: str, task: str, metric: str, space: dict[str, Any]) -> str:
    """Same data, problem and space -> same study, so re-running continues it."""
    space_hash = hashlib.sha256(json.dumps(space, sort_keys=True).encode()).hexdigest()[:8]
    return f"{dataset}-{fp[:8]}-{task}-{metric}-{space_hash}"


def open_study(storage_url: str, name: str, direction: str, seed: int) -> optuna.Study:
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=8, multivariate=True)
    study = optuna.create_study(
        storage=open_storage(storage_url), study_name=name, direction=direction, sampler=sampler, load_if_exists=True
    )
    if study.direction.name.lower() != direction:
        raise TuneflowError(
            f"Study '{name}' exists with direction {study.direction.name.lower()}, not {direction}.",
            "use another --study-name or the metric the study was created with.",
        )
    return study


def enqueue_configs(study: optuna.Study, configs: list[dict[str, Any]]) -> None:
    """Queue configurations to be asked first; one already queued or tried is not queued again."""
    for params in configs:
        study.enqueue_trial(params, skip_if_exists=True)


def counts_toward_budget(t: optuna.trial.FrozenTrial) -> bool:
    return t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL) and not t.user_attrs.get(LOST_ATTR)


def recover_stale_trials(study: optuna.Study, stale_after_s: float, now: float | None = None, reenqueue: bool = True) -> list[int]:
    """Fail RUNNING trials whose run stopped heartbeating and re-enqueue their parameters.

    Optuna's own heartbeat does not cover ask/tell, so a killed run leaves RUNNING trials forever.
    """
    now = time.time() if now is None else now
    recovered = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        beat = t.user_attrs.get(HEARTBEAT_ATTR) or (t.datetime_start.timestamp() if t.datetime_start else 0.0)
        if now - beat < stale_after_s:
            continue
        try:
            study._storage.set_trial_user_attr(t._trial_id, LOST_ATTR, True)
            study.tell(t.number, state=TrialState.FAIL)
        except (RuntimeError, ValueError):  # another run recovered or finished it first
            continue
        if t.params and reenqueue:
            study.enqueue_trial(t.params, user_attrs={RETRY_OF_ATTR: t.number}, skip_if_exists=False)
        recovered.append(t.number)
    return recovered


def settle_foreign_trials(study: optuna.Study, own: set[int], stale_after_s: float, poll_s: float) -> list[int]:
    """At the end of a run: wait for other runs' RUNNING trials to finish or go stale.

    A run killed moments before this one started still looks alive until its heartbeat ages
    past `stale_after_s`; its trials are then failed as lost (the budget is already reached,
    so they are not re-enqueued). Leaves no RUNNING trial behind but those of live runs.
    """
    deadline = time.time() + stale_after_s + poll_s
    lost: list[int] = []
    while True:
        lost += recover_stale_trials(study, stale_after_s, reenqueue=False)
        foreign = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)) if t.number not in own]
        if not foreign or time.time() > deadline:
            return lost
        time.sleep(poll_s)


@dataclass
class TrialEvent:
    """What the loop reports after each trial (progress displays, leaderboard artifacts)."""

    number: int
    state: str
    value: float | None
    params: dict[str, Any]
    info: dict[str, Any]
    done: int
    failed: int
    pruned: int
    running: int
    best_value: float | None
    best_number: int | None


@dataclass
class StudyOutcome:
    study_name: str
    run_id: str
    completed: int
    failed: int
    pruned: int
    recovered: list[int]
    best_number: int | None
    best_value: float | None
    best_params: dict[str, Any]
    seconds: float
    events: list[TrialEvent] = field(default_factory=list)
    superseded: list[int] = field(default_factory=list)  # were in flight here, failed as lost by another run
    requeued: list[int] = field(default_factory=list)  # transient failures past their retries, run again


def _raw(future: Any) -> cf.Future:
    """The concurrent.futures.Future behind a Prefect future (or the future itself)."""
    return getattr(future, "wrapped_future", future)


def run_study(
    study: optuna.Study,
    space: dict[str, Any],
    *,
    n_trials: int | None,
    timeout: float | None,
    parallelism: int,
    submit: Callable[[int, dict[str, Any]], Any],
    on_event: Callable[[TrialEvent], None] | None = None,
    heartbeat_s: float = HEARTBEAT_S,
    stale_after_s: float = STALE_AFTER_S,
) -> StudyOutcome:
    """Asynchronous ask/tell until n_trials count toward the budget or the timeout passes.

    `submit(number, params)` starts a trial and returns a future whose result is a dict with
    "value" (plus any extra info, stored as user attrs). An exception fails that trial only.
    """
    if n_trials is None and timeout is None:
        raise TuneflowError("No budget given.", "pass --n-trials N and/or --timeout SECONDS.")
    if parallelism < 1:
        raise TuneflowError(f"parallelism must be at least 1 (got {parallelism}).", "pass --parallelism 1 or more.")
    started = time.time()
    run_id = uuid.uuid4().hex[:12]
    recovered = recover_stale_trials(study, stale_after_s)
    trials = study.get_trials(deepcopy=False)
    done = sum(counts_toward_budget(t) for t in trials)
    failed = sum(t.state == TrialState.FAIL and not t.user_attrs.get(LOST_ATTR) for t in trials)
    pruned = sum(t.state == TrialState.PRUNED for t in trials)
    budget = n_trials if n_trials is not None else math.inf
    deadline = started + timeout if timeout else math.inf
    inflight: dict[cf.Future, tuple[Any, optuna.Trial, dict[str, Any]]] = {}
    outcome = StudyOutcome(study.study_name, run_id, 0, 0, 0, recovered, None, None, {}, 0.0)

    def beat() -> None:
        for _, trial, _ in list(inflight.values()):
            try:
                trial.set_user_attr(HEARTBEAT_ATTR, time.time())
            except UpdateFinishedTrialError:  # told meanwhile, or failed as lost by another run
                pass

    def committed() -> tuple[int, int]:
        """(trials that count or may still count toward the budget, RUNNING trials of other runs).

        Read from storage each time: other runs' finished trials count, and their RUNNING trials
        hold budget until they finish or go stale (then they are re-enqueued and run again)."""
        own = {t.number for _, t, _ in list(inflight.values())}
        n = foreign = 0
        for t in study.get_trials(deepcopy=False):
            if counts_toward_budget(t) or t.state == TrialState.RUNNING:
                n += 1
                foreign += t.state == TrialState.RUNNING and t.number not in own
        return n, foreign

    stop_beating = threading.Event()

    def heartbeat_loop() -> None:
        while not stop_beating.wait(heartbeat_s):
            try:
                beat()
                # a run killed just before this one started goes stale while we run
                outcome.recovered += recover_stale_trials(study, stale_after_s)
            except Exception:  # storage hiccup: the next beat retries; never kill the loop
                pass

    beater = threading.Thread(target=heartbeat_loop, name="tuneflow-heartbeat", daemon=True)
    beater.start()
    try:
        while True:
            while len(inflight) < parallelism and committed()[0] < budget and time.time() < deadline:
                # No heartbeat write here: until the first beat, liveness falls back to the trial's
                # start time (each journal write costs ~4 ms on this loop's critical path).
                trial = study.ask()
                try:
                    params = suggest(trial, space)
                except Exception as exc:
                    study.tell(trial, state=TrialState.FAIL)
                    raise TuneflowError(f"Cannot sample the search space: {exc}.", "check the --space file.") from exc
                future = submit(trial.number, params)
                inflight[_raw(future)] = (future, trial, params)
            if not inflight:
                if time.time() >= deadline or not committed()[1]:
                    break
                time.sleep(min(heartbeat_s, 1.0))  # other runs' trials hold the rest of the budget
                continue
            finished, _ = cf.wait(list(inflight), timeout=min(heartbeat_s, 1.0), return_when=cf.FIRST_COMPLETED)
            for raw in finished:
                future, trial, params = inflight.pop(raw)
                info: dict[str, Any] = {}
                value: float | None = None
                try:
                    result = future.result()
                    info = {k: v for k, v in result.items() if k != "value" and _attr_ok(v)}
                    for key, attr in info.items():
                        trial.set_user_attr(key, attr)
                    value = float(result["value"])
                    study.tell(trial, value)
                    state = "COMPLETE"
                    outcome.completed += 1
                except UpdateFinishedTrialError:
                    # Another run failed it as lost (our heartbeat was late: suspended process,
                    # storage stall) and re-enqueued its parameters: that copy is the one that counts.
                    outcome.superseded.append(trial.number)
                    continue
                except Exception as exc:  # this trial failed: tell FAIL and keep the study going
                    requeues = int(trial.user_attrs.get(REQUEUES_ATTR, 0))
                    lost = is_transient(exc) and requeues < MAX_REQUEUES  # lost work, not a verdict on the params
                    try:
                        trial.set_user_attr(ERROR_ATTR, f"{type(exc).__name__}: {str(exc)[:300]}")
                        if lost:
                            trial.set_user_attr(LOST_ATTR, True)
                        study.tell(trial, state=TrialState.FAIL)
                    except UpdateFinishedTrialError:
                        outcome.superseded.append(trial.number)
                        continue
                    if lost:
                        study.enqueue_trial(trial.params, user_attrs={RETRY_OF_ATTR: trial.number, REQUEUES_ATTR: requeues + 1}, skip_if_exists=False)
                        outcome.requeued.append(trial.number)
                        state = "LOST"
                    else:
                        state = "FAIL"
                        failed += 1
                        outcome.failed += 1
                    info = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
                done = sum(counts_toward_budget(t) for t in study.get_trials(deepcopy=False))
                best = _best(study)
                event = TrialEvent(
                    trial.number, state, value, params, info, done, failed, pruned, len(inflight),
                    best[1] if best else None, best[0] if best else None,
                )
                outcome.events.append(event)
                if on_event:
                    on_event(event)
    finally:
        stop_beating.set()
        beater.join()
    own = {e.number for e in outcome.events}
    outcome.recovered += settle_foreign_trials(study, own, stale_after_s, min(heartbeat_s, 1.0))
    best = _best(study)
    if best:
        outcome.best_number, outcome.best_value = best
        outcome.best_params = study.trials[best[0]].params
    outcome.seconds = time.time() - started
    return outcome


def _best(study: optuna.Study) -> tuple[int, float] | None:
    try:
        t = study.best_trial
    except ValueError:  # no COMPLETE trial yet
        return None
    return t.number, float(t.value)


def _attr_ok(value: Any) -> bool:
    """User attrs must be JSON-serialisable and small."""
    try:
        return len(json.dumps(value)) < 2000
    except (TypeError, ValueError):
        return False
