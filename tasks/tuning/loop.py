"""The asynchronous ask/tell loop: `parallelism` trials in flight, each told as it finishes.

The loop is a small class over a `submit(number, params) -> future` callable: the flow hands it
Prefect task submissions, the tests a thread pool. Counts are kept from the loop's own events;
the study is read from storage only when another run may have changed it (another run is asking
in the same study, a stale trial was recovered, or the budget is nearly reached).

Extending it: `start(trial, params)` submits a trial's first unit of work (default:
`submit(number, params)`), and `advance(trial, result)` is called when a unit finishes. It returns
None (the trial is done: tell its value), the trial's next unit (a future, or a callable that
submits it, which the loop thread then calls: Prefect submits only from the flow's thread), or
raises `optuna.TrialPruned` (tell PRUNED). tasks/tuning/rungs.py is that pair for pruning.

`schedule="sync"` runs batch-synchronously: `parallelism` trials start together and the next
batch starts when the whole batch has finished. The outcome's `busy_seconds` is the time units
were in flight, for slot utilisation.

Stopping: besides `n_trials` and `timeout`, a `StopWatch` (tasks/tuning/stopping.py) stops new
trials on a target value, a plateau or a cost limit, and `exhausted()` ends a grid search; the
outcome's `stopped_by` says which rule ended the run. `values_of(value, result)` turns a finished
trial into what is told (a list for a multi-objective study). A sampled configuration that the
space forbids is told FAIL at once (marked, not counted) and another is asked.
"""

from __future__ import annotations

import concurrent.futures as cf
import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from tasks.errors import TuneflowError, is_transient
from tasks.tuning.curves import CURVE_ATTR, pop_curve
from tasks.tuning.liveness import HEARTBEAT_S, STALE_AFTER_S, Heartbeat, recover_stale_trials, settle_foreign_trials
from tasks.tuning.records import ERROR_ATTR, FORBIDDEN_ATTR, LOST_ATTR, MAX_REQUEUES_DEFAULT, REQUEUES_ATTR, RESULT_ATTR, RETRY_OF_ATTR, counts_toward_budget, json_safe
from tasks.tuning.search_space import SearchSpace, as_space
from tasks.tuning.stopping import StopWatch

Submit = Callable[[int, dict[str, Any]], Any]
Start = Callable[[optuna.Trial, dict[str, Any]], Any]
Advance = Callable[[optuna.Trial, dict[str, Any]], Any]
ValuesOf = Callable[[float, dict[str, Any]], "float | list[float]"]
MAX_FORBIDDEN_IN_A_ROW = 200


@dataclass(frozen=True)
class TrialEvent:
    """What the loop reports after each trial (progress displays, leaderboard artifacts)."""

    number: int
    state: str  # COMPLETE | FAIL | LOST | PRUNED
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
    completed: int = 0
    failed: int = 0
    pruned: int = 0
    recovered: list[int] = field(default_factory=list)
    best_number: int | None = None
    best_value: float | None = None
    seconds: float = 0.0
    events: list[TrialEvent] = field(default_factory=list)
    superseded: list[int] = field(default_factory=list)  # were in flight here, failed as lost by another run
    requeued: list[int] = field(default_factory=list)  # transient failures past their retries, run again
    busy_seconds: float = 0.0  # sum over units of the time each was in flight
    parallelism: int = 1
    stopped_by: str = ""  # n-trials | timeout | grid exhausted | the stopping rule that fired
    cost_hours: float = 0.0  # core-hours (GPU-hours on CUDA) the units of this run held
    cpu_seconds: float = 0.0  # measured on the workers, over every unit of this run
    gpu_seconds: float = 0.0  # wall seconds of units on CUDA

    @property
    def slot_utilisation(self) -> float | None:
        """Share of the slots' time that units were in flight."""
        return round(self.busy_seconds / (self.parallelism * self.seconds), 4) if self.seconds > 0 else None


@dataclass
class _Flight:
    future: Any  # a Prefect future or a concurrent.futures.Future
    trial: optuna.Trial
    params: dict[str, Any]
    submitted: float = field(default_factory=time.time)

    @property
    def raw(self) -> cf.Future:
        """The concurrent.futures.Future behind a Prefect future (or the future itself)."""
        return getattr(self.future, "wrapped_future", self.future)


@dataclass
class _Next:
    """A trial's next unit, to be submitted by the loop thread."""

    submit: Callable[[], Any]
    trial: optuna.Trial
    params: dict[str, Any]


class StudyCounts:
    """The study's trials as they bear on the budget, updated from this run's events and re-read
    from storage on `refresh()`."""

    def __init__(self, study: optuna.Study) -> None:
        self.study = study
        self.refresh(set())

    def refresh(self, own_in_flight: set[int]) -> None:
        self.counted = self.failed = self.pruned = self.foreign_running = 0
        self.max_number = -1
        self.best: tuple[int, float] | None = None
        maximize = self.study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
        for t in self.study.get_trials(deepcopy=False):
            self.max_number = max(self.max_number, t.number)
            self.counted += counts_toward_budget(t)
            self.failed += t.state == TrialState.FAIL and counts_toward_budget(t)
            self.pruned += t.state == TrialState.PRUNED
            self.foreign_running += t.state == TrialState.RUNNING and t.number not in own_in_flight
            if t.state == TrialState.COMPLETE and t.values:
                self.offer_best(t.number, float(t.values[0]), maximize)
        self.refreshed_at = time.time()

    def offer_best(self, number: int, value: float | None, maximize: bool) -> None:
        if value is not None and not math.isnan(value) and (self.best is None or (value > self.best[1] if maximize else value < self.best[1])):
            self.best = (number, value)


class TuningLoop:
    """Asynchronous ask/tell until n_trials count toward the budget or the timeout passes.

    The loop thread asks, samples and submits. A finished trial is told by the thread that
    completes its future (a done-callback), so its tell never queues behind another trial's
    sampling; the loop thread then publishes the event. `lock` guards the counts and the
    in-flight table, which both threads touch.
    """

    def __init__(
        self,
        study: optuna.Study,
        space: SearchSpace | dict[str, Any],
        *,
        n_trials: int | None,
        timeout: float | None,
        parallelism: int,
        submit: Submit,
        on_event: Callable[[TrialEvent], None] | None = None,
        advance: Advance | None = None,
        start: Start | None = None,
        schedule: str = "async",
        stop: StopWatch | None = None,
        exhausted: Callable[[], bool] | None = None,
        values_of: ValuesOf | None = None,
        heartbeat_s: float = HEARTBEAT_S,
        stale_after_s: float = STALE_AFTER_S,
        max_requeues: int = MAX_REQUEUES_DEFAULT,
    ) -> None:
        if n_trials is None and timeout is None:
            raise TuneflowError("No budget given.", "pass --n-trials N and/or --timeout SECONDS.")
        if parallelism < 1:
            raise TuneflowError(f"parallelism must be at least 1 (got {parallelism}).", "pass --parallelism 1 or more.")
        self.study, self.space, self.parallelism = study, as_space(space), parallelism
        self.stop, self.exhausted, self.values_of = stop, exhausted, values_of
        if schedule not in ("async", "sync"):
            raise TuneflowError(f"Unknown schedule {schedule!r}.", "use --schedule async|sync.")
        self.submit, self.on_event, self.advance, self.start = submit, on_event, advance, start
        self.sync = schedule == "sync"
        self.budget = n_trials if n_trials is not None else math.inf
        self.timeout = timeout
        self.heartbeat_s, self.stale_after_s, self.max_requeues = heartbeat_s, stale_after_s, max_requeues
        self.maximize = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
        self.in_flight: dict[int, _Flight] = {}  # by trial number
        self.outcome = StudyOutcome(study.study_name, parallelism=parallelism)
        self.shared = False  # another run is asking in this study: read counts before every ask
        self.lock = threading.RLock()
        self.settled: queue.SimpleQueue[TrialEvent | BaseException | _Next | None] = queue.SimpleQueue()

    def run(self) -> StudyOutcome:
        started = time.time()
        deadline = started + self.timeout if self.timeout else math.inf
        self.outcome.recovered += recover_stale_trials(self.study, self.stale_after_s)
        self.counts = StudyCounts(self.study)
        poll_s = min(self.heartbeat_s, 1.0)
        with Heartbeat(self.study, self._in_flight_trials, self.heartbeat_s, self.stale_after_s) as heartbeat:
            while True:
                if heartbeat.changed.is_set():
                    heartbeat.changed.clear()
                    self._refresh()
                if not self.sync or not self.in_flight:  # sync: a new batch only once the last one is done
                    while len(self.in_flight) < self.parallelism and time.time() < deadline and self._budget_left():
                        self._start_trial()
                if not self.in_flight and self.settled.empty():
                    self._refresh()
                    if time.time() >= deadline or not self.counts.foreign_running:
                        break
                    time.sleep(poll_s)  # other runs' trials hold the rest of the budget
                    continue
                try:
                    self._publish(self.settled.get(timeout=poll_s))
                except queue.Empty:
                    continue
                while not self.settled.empty():
                    self._publish(self.settled.get())
            self.outcome.recovered += heartbeat.recovered
        own = {e.number for e in self.outcome.events}
        self.outcome.recovered += settle_foreign_trials(self.study, own, self.stale_after_s, poll_s)
        self._refresh()
        if self.counts.best is not None:
            self.outcome.best_number, self.outcome.best_value = self.counts.best
        self.outcome.seconds = time.time() - started
        self.outcome.stopped_by = self._stopped_by(deadline)
        if self.stop is not None:
            self.outcome.cost_hours = round(self.stop.spent_hours, 6)
        return self.outcome

    def _stopped_by(self, deadline: float) -> str:
        if self.stop is not None and self.stop.reason:
            return self.stop.reason
        if self.exhausted is not None and self.exhausted():
            return "grid exhausted: every configuration was tried"
        if time.time() >= deadline:
            return f"timeout: {self.timeout:g} s"
        return f"n-trials: the study has {self.counts.counted} counted trials (budget {self.budget:g})"

    # -- budget ----------------------------------------------------------------------------------

    def _in_flight_trials(self) -> list[optuna.Trial]:
        with self.lock:
            return [f.trial for f in self.in_flight.values()]

    def _refresh(self) -> None:
        with self.lock:
            self.counts.refresh(set(self.in_flight))

    def _committed(self) -> int:
        return self.counts.counted + self.counts.foreign_running + len(self.in_flight)

    def _budget_left(self) -> bool:
        """Whether one more trial may start. Reads storage only when it can have changed under us."""
        if (self.stop is not None and self.stop.reason) or (self.exhausted is not None and self.exhausted()):
            return False
        with self.lock:
            if self.shared or self.budget - self._committed() <= self.parallelism or time.time() - self.counts.refreshed_at > self.heartbeat_s:
                self.counts.refresh(set(self.in_flight))
            return self._committed() < self.budget

    # -- one trial -------------------------------------------------------------------------------

    def _start_trial(self) -> None:
        for _ in range(MAX_FORBIDDEN_IN_A_ROW):
            trial, params = self._ask()
            forbidden = self.space.forbidden_by(params)
            if forbidden is None:
                break
            trial.set_user_attr(FORBIDDEN_ATTR, forbidden)
            self.study.tell(trial, state=TrialState.FAIL)
        else:
            raise TuneflowError(
                f"The sampler proposed {MAX_FORBIDDEN_IN_A_ROW} forbidden configurations in a row.",
                "loosen the forbiddens in the --space file: they exclude nearly all of the space.",
            )
        # No heartbeat write here: until the first beat, liveness falls back to the trial's start time.
        future = self.start(trial, params) if self.start else self.submit(trial.number, params)
        self._track(_Flight(future, trial, params))

    def _ask(self) -> tuple[optuna.Trial, dict[str, Any]]:
        trial = self.study.ask()
        with self.lock:
            if trial.number > self.counts.max_number + 1:
                self.shared = True  # someone else created trials since we last looked
            self.counts.max_number = max(self.counts.max_number, trial.number)
        try:
            return trial, self.space.suggest(trial)
        except Exception as exc:
            self.study.tell(trial, state=TrialState.FAIL)
            raise TuneflowError(f"Cannot sample the search space: {exc}.", "check the --space file.") from exc

    def _track(self, flight: _Flight) -> None:
        with self.lock:
            self.in_flight[flight.trial.number] = flight
        flight.raw.add_done_callback(lambda _: self._on_done(flight))

    def _on_done(self, flight: _Flight) -> None:
        """Runs in the thread that finished the future: tell at once, hand the event to the loop."""
        try:
            event = self._finish(flight)
        except BaseException as exc:  # a storage failure while telling: the loop re-raises it
            event = exc
        if event is not None:
            self.settled.put(event)

    def _finish(self, flight: _Flight) -> TrialEvent | None:
        """Tell a finished unit of work: COMPLETE, PRUNED, FAIL, or LOST (re-enqueued), or continue it."""
        trial, value, info = flight.trial, None, {}
        with self.lock:
            self.outcome.busy_seconds += time.time() - flight.submitted
        result: dict[str, Any] = {}
        try:
            result = dict(flight.future.result())
            with self.lock:
                self.outcome.cpu_seconds += float(result.get("cpu_seconds") or 0.0)
                self.outcome.gpu_seconds += float(result.get("seconds") or 0.0) if result.get("device") == "cuda" else 0.0
            if self.stop is not None:
                with self.lock:
                    self.stop.spend(result)
            if self.advance is not None:
                following = self.advance(trial, result)
                if following is not None:  # the trial's next unit of work: it stays in flight
                    if callable(following) and not hasattr(following, "add_done_callback"):
                        self.settled.put(_Next(following, trial, flight.params))  # the loop thread submits it
                    else:
                        self._track(_Flight(following, trial, flight.params))
                    return None
            value = float(result.pop("value"))
            curve = pop_curve(result)
            info = json_safe(result)
            state = "COMPLETE"
            with self.lock:  # tell and count as one step: a refresh in between would count it twice
                trial.set_user_attr(RESULT_ATTR, info)
                if curve:
                    trial.set_user_attr(CURVE_ATTR, curve)
                self.study.tell(trial, self.values_of(value, info) if self.values_of else value)
                self.counts.counted += 1
                self.counts.offer_best(trial.number, value, self.maximize)
                self.outcome.completed += 1
                if self.stop is not None:
                    self.stop.finished(trial.number, value)
        except UpdateFinishedTrialError:
            # Another run failed it as lost (our heartbeat was late: suspended process, storage
            # stall) and re-enqueued its parameters: that copy is the one that counts.
            self._superseded(trial)
            return self._untrack(trial, None)
        except optuna.TrialPruned:
            value = float(result["value"]) if "value" in result else None
            curve = pop_curve(result)
            info = json_safe({k: v for k, v in result.items() if k != "value"})
            with self.lock:
                try:
                    trial.set_user_attr(RESULT_ATTR, info)
                    if curve:
                        trial.set_user_attr(CURVE_ATTR, curve)
                except UpdateFinishedTrialError:
                    self._superseded(trial)
                    return self._untrack(trial, None)
                if not self._tell(trial, TrialState.PRUNED):
                    return self._untrack(trial, None)
                state = "PRUNED"
                self.counts.counted += 1
                self.counts.pruned += 1
                self.outcome.pruned += 1
                if self.stop is not None:
                    self.stop.finished(trial.number, value)
        except Exception as exc:  # this trial failed: tell FAIL and keep the study going
            state, info = self._fail(trial, exc)
            if state is None:
                return self._untrack(trial, None)
        with self.lock:
            return self._untrack(trial, TrialEvent(
                trial.number, state, value, flight.params, info, self.counts.counted, self.counts.failed, self.counts.pruned,
                len(self.in_flight) - 1, *((self.counts.best[1], self.counts.best[0]) if self.counts.best else (None, None)),
            ))

    def _untrack(self, trial: optuna.Trial, event: TrialEvent | None) -> TrialEvent | None:
        with self.lock:
            self.in_flight.pop(trial.number, None)
        self.settled.put(None)  # wake the loop: a slot is free
        return event

    def _fail(self, trial: optuna.Trial, exc: Exception) -> tuple[str | None, dict[str, Any]]:
        """FAIL for a verdict on the parameters; LOST (and enqueued again) for lost work."""
        error = f"{type(exc).__name__}: {str(exc)[:300]}"
        requeues = int(trial.user_attrs.get(REQUEUES_ATTR, 0))
        lost = is_transient(exc) and requeues < self.max_requeues
        try:
            trial.set_user_attr(ERROR_ATTR, error)
            if lost:
                trial.set_user_attr(LOST_ATTR, True)
        except UpdateFinishedTrialError:
            self._superseded(trial)
            return None, {}
        with self.lock:
            if not self._tell(trial, TrialState.FAIL):
                return None, {}
            if lost:
                self.study.enqueue_trial(trial.params, user_attrs={RETRY_OF_ATTR: trial.number, REQUEUES_ATTR: requeues + 1}, skip_if_exists=False)
                self.outcome.requeued.append(trial.number)
                self.counts.refresh(set(self.in_flight))  # the enqueued copy took a trial number
                return "LOST", {"error": error}
            self.counts.counted += 1
            self.counts.failed += 1
            self.outcome.failed += 1
        return "FAIL", {"error": error}

    def _tell(self, trial: optuna.Trial, state: TrialState) -> bool:
        try:
            self.study.tell(trial, state=state)
            return True
        except UpdateFinishedTrialError:
            self._superseded(trial)
            return False

    def _superseded(self, trial: optuna.Trial) -> None:
        with self.lock:
            self.outcome.superseded.append(trial.number)
        self._refresh()

    def _publish(self, event: TrialEvent | BaseException | _Next | None) -> None:
        if isinstance(event, BaseException):
            raise event
        if isinstance(event, _Next):
            try:
                future = event.submit()
            except Exception as exc:  # could not even submit the next unit: the trial fails
                failed: cf.Future = cf.Future()
                failed.set_exception(exc)
                future = failed
            self._track(_Flight(future, event.trial, event.params))
            return
        if event is None:
            return
        self.outcome.events.append(event)
        if self.on_event:
            self.on_event(event)


def run_study(study: optuna.Study, space: SearchSpace | dict[str, Any], **options: Any) -> StudyOutcome:
    """`TuningLoop(study, space, **options).run()`: n_trials, timeout, parallelism, submit, on_event, ..."""
    return TuningLoop(study, space, **options).run()
