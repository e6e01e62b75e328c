"""Liveness of ask/tell trials, which Optuna's own heartbeat does not cover: in-flight trials are
stamped every few seconds, and a RUNNING trial whose stamp is too old belongs to a dead run; it
is failed as lost and its parameters are enqueued again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from tasks.tuning.records import HEARTBEAT_ATTR, RETRY_OF_ATTR, mark_lost

HEARTBEAT_S = 5.0  # in-flight trials are stamped this often ...
STALE_AFTER_S = 30.0  # ... and a RUNNING trial unstamped this long belongs to a dead run


def recover_stale_trials(study: optuna.Study, stale_after_s: float, now: float | None = None, reenqueue: bool = True) -> list[int]:
    """Fail RUNNING trials whose run stopped heartbeating and (by default) re-enqueue their parameters."""
    now = time.time() if now is None else now
    recovered = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        beat = t.user_attrs.get(HEARTBEAT_ATTR) or (t.datetime_start.timestamp() if t.datetime_start else 0.0)
        if now - beat < stale_after_s:
            continue
        try:
            mark_lost(study, t)
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


class Heartbeat:
    """A thread that stamps this run's in-flight trials and recovers other runs' stale ones.

    `recovered` collects what it failed as lost; `changed` is set whenever it did, so the loop
    knows the study's counts moved under it.
    """

    def __init__(self, study: optuna.Study, in_flight: Callable[[], Iterable[optuna.Trial]], heartbeat_s: float = HEARTBEAT_S, stale_after_s: float = STALE_AFTER_S) -> None:
        self.study, self.in_flight = study, in_flight
        self.heartbeat_s, self.stale_after_s = heartbeat_s, stale_after_s
        self.recovered: list[int] = []
        self.changed = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tuneflow-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                self.beat()
                found = recover_stale_trials(self.study, self.stale_after_s)  # a run killed just before this one started
            except Exception:  # storage hiccup: the next beat retries; never kill the loop
                continue
            if found:
                self.recovered += found
                self.changed.set()

    def beat(self) -> None:
        for trial in list(self.in_flight()):
            try:
                trial.set_user_attr(HEARTBEAT_ATTR, time.time())
            except UpdateFinishedTrialError:  # told meanwhile, or failed as lost by another run
                pass
