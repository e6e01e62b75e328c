"""The ask/tell loop and crash recovery, against real Optuna storages (journal file, SQLite, PostgreSQL)."""

from __future__ import annotations

import concurrent.futures as cf
import threading
import time

import optuna
import pytest
from optuna.trial import TrialState

from tasks.tuning import liveness, loop, records, search_space, studies
from tasks.errors import TuneflowError

SPACE = {"x": {"type": "float", "low": -5.0, "high": 5.0}, "depth": {"type": "int", "low": 1, "high": 4}, "max_bin": 256}


@pytest.fixture(params=["journal", "sqlite", "postgresql"])
def storage_url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "journal":
        return str(tmp_path / "study.journal")
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'study.db'}"
    return request.getfixturevalue("pg_database")


def quadratic(number: int, params: dict) -> dict:
    if params["depth"] == 4 and params["x"] > 4.5:
        raise ValueError("bad combination")  # a deterministic failure: must become FAIL, not stop the study
    return {"value": (params["x"] - 1.0) ** 2, "worker": f"w{number % 2}"}


def test_loop_reaches_exactly_n_trials_with_parallelism(storage_url: str) -> None:
    s = studies.open_study(storage_url, "quad", "minimize", seed=1)
    pool = cf.ThreadPoolExecutor(4)
    together = threading.Barrier(3, timeout=10)  # breaks (failing trials) unless 3 run at once

    def submit(number: int, params: dict):
        def work():
            together.wait()
            return quadratic(number, params)

        return pool.submit(work)

    out = loop.run_study(s, SPACE, n_trials=15, timeout=None, parallelism=3, submit=submit)
    trials = s.get_trials(deepcopy=False)
    assert len(trials) == 15
    assert {t.number for t in trials} == set(range(15))
    assert all(t.state in (TrialState.COMPLETE, TrialState.FAIL) for t in trials)
    assert out.completed + out.failed == 15
    assert not any("BrokenBarrier" in t.user_attrs.get(records.ERROR_ATTR, "") for t in trials)
    assert out.best_value == pytest.approx(min(t.value for t in trials if t.state == TrialState.COMPLETE))
    assert all(records.result_of(t)["worker"] in ("w0", "w1") for t in trials if t.state == TrialState.COMPLETE)
    assert all("max_bin" not in t.params for t in trials)  # fixed values are not Optuna params
    # a second run with the same budget adds nothing: the study already has 15
    again = loop.run_study(studies.open_study(storage_url, "quad", "minimize", seed=1), SPACE, n_trials=15, timeout=None, parallelism=3, submit=submit)
    assert again.completed + again.failed == 0
    assert len(s.get_trials(deepcopy=False)) == 15


def test_failed_trials_are_told_fail_with_their_error(tmp_path) -> None:
    s = studies.open_study(str(tmp_path / "j.journal"), "fails", "minimize", seed=0)

    def submit(number, params):
        f = cf.Future()
        f.set_exception(RuntimeError("xgboost says no")) if number % 2 else f.set_result({"value": 1.0})
        return f

    out = loop.run_study(s, SPACE, n_trials=6, timeout=None, parallelism=2, submit=submit)
    failed = [t for t in s.trials if t.state == TrialState.FAIL]
    assert out.failed == 3 and len(failed) == 3
    assert all("xgboost says no" in t.user_attrs[records.ERROR_ATTR] for t in failed)


def test_stale_running_trials_are_failed_and_reenqueued(storage_url: str) -> None:
    s = studies.open_study(storage_url, "crashy", "minimize", seed=0)
    # a run that died: two trials left RUNNING with an old heartbeat, one COMPLETE
    done = s.ask()
    search_space.suggest(done, SPACE)
    s.tell(done, 3.0)
    stale = []
    for _ in range(2):
        t = s.ask()
        search_space.suggest(t, SPACE)
        t.set_user_attr(records.HEARTBEAT_ATTR, time.time() - 3600)
        stale.append((t.number, dict(t.params)))
    fresh = s.ask()  # a live run's trial: must be left alone
    search_space.suggest(fresh, SPACE)
    fresh.set_user_attr(records.HEARTBEAT_ATTR, time.time())

    recovered = liveness.recover_stale_trials(s, stale_after_s=60)
    assert sorted(recovered) == sorted(n for n, _ in stale)
    by_number = {t.number: t for t in s.get_trials(deepcopy=False)}
    assert all(by_number[n].state == TrialState.FAIL and by_number[n].user_attrs[records.LOST_ATTR] for n, _ in stale)
    assert by_number[fresh.number].state == TrialState.RUNNING
    waiting = [t for t in s.get_trials(deepcopy=False) if t.state == TrialState.WAITING]
    assert sorted(t.system_attrs["fixed_params"]["x"] for t in waiting) == sorted(p["x"] for _, p in stale)
    assert not records.counts_toward_budget(by_number[stale[0][0]])


def test_resume_runs_retries_with_the_same_params_and_reaches_budget(tmp_path) -> None:
    url = str(tmp_path / "resume.journal")
    s = studies.open_study(url, "resume", "minimize", seed=0)
    t = s.ask()
    search_space.suggest(t, SPACE)
    t.set_user_attr(records.HEARTBEAT_ATTR, time.time() - 3600)
    lost_params = dict(t.params)
    calls = []

    def submit(number, params):
        calls.append(params)
        f = cf.Future()
        f.set_result({"value": params["x"] ** 2})
        return f

    out = loop.run_study(studies.open_study(url, "resume", "minimize", seed=0), SPACE, n_trials=5, timeout=None, parallelism=2, submit=submit, stale_after_s=60)
    assert out.recovered == [0]
    assert calls[0]["x"] == lost_params["x"]
    complete = [t for t in s.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    assert len(complete) == 5
    assert complete[0].user_attrs[records.RETRY_OF_ATTR] == 0


def test_timeout_budget_stops_asking(tmp_path) -> None:
    s = studies.open_study(str(tmp_path / "t.journal"), "timed", "minimize", seed=0)
    pool = cf.ThreadPoolExecutor(2)
    out = loop.run_study(s, SPACE, n_trials=None, timeout=0.5, parallelism=2, submit=lambda n, p: pool.submit(lambda: (time.sleep(0.1), {"value": 1.0})[1]))
    assert 2 <= out.completed <= 14
    assert out.seconds < 3


def test_bad_budget_and_storage_are_clear_errors(tmp_path) -> None:
    s = studies.open_study(str(tmp_path / "b.journal"), "b", "minimize", seed=0)
    with pytest.raises(TuneflowError, match="No budget"):
        loop.run_study(s, SPACE, n_trials=None, timeout=None, parallelism=1, submit=lambda n, p: None)
    with pytest.raises(TuneflowError, match="Unsupported study storage"):
        studies.open_storage("redis://localhost/0")
    with pytest.raises(TuneflowError, match="direction"):
        studies.open_study(str(tmp_path / "b.journal"), "b", "maximize", seed=0)


def test_run_killed_just_before_is_settled_without_running_leftovers(tmp_path) -> None:
    """A run SIGKILLed moments ago still looks alive: its trials are failed once they go stale."""
    url = str(tmp_path / "k.journal")
    s = studies.open_study(url, "killed", "minimize", seed=0)
    t = s.ask()
    search_space.suggest(t, SPACE)
    t.set_user_attr(records.HEARTBEAT_ATTR, time.time())  # fresh: the dead run beat just now
    pool = cf.ThreadPoolExecutor(2)
    out = loop.run_study(
        studies.open_study(url, "killed", "minimize", seed=0), SPACE, n_trials=3, timeout=None, parallelism=2,
        submit=lambda n, p: pool.submit(lambda: {"value": 1.0}), heartbeat_s=0.2, stale_after_s=1.0,
    )
    trials = s.get_trials(deepcopy=False)
    assert not [x for x in trials if x.state == TrialState.RUNNING]
    assert sum(x.state == TrialState.COMPLETE for x in trials) == 3
    assert t.number in out.recovered


def test_advance_hook_continues_and_prunes_trials(tmp_path) -> None:
    """The one place a pruner or rung scheduler plugs in: continue a trial, or prune it."""
    s = studies.open_study(str(tmp_path / "rungs.journal"), "rungs", "minimize", seed=0)
    pool = cf.ThreadPoolExecutor(2)
    rungs: dict[int, int] = {}

    def submit(number, params):
        return pool.submit(lambda: {"value": (params["x"] - 1.0) ** 2, "rung": 0})

    def advance(trial, result):
        rung = result["rung"]
        rungs[trial.number] = rung
        trial.report(result["value"], step=rung)
        if trial.number % 3 == 2:
            raise optuna.TrialPruned()
        if rung < 2:  # two more rungs: the trial stays in flight
            return pool.submit(lambda: {**result, "rung": rung + 1})
        return None

    out = loop.run_study(s, SPACE, n_trials=6, timeout=None, parallelism=2, submit=submit, advance=advance)
    trials = s.get_trials(deepcopy=False)
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(trials) == 6 and len(pruned) == 2 and len(complete) == 4
    assert out.pruned == 2 and out.completed == 4 and out.events[-1].pruned == 2 and out.events[-1].done == 6
    assert all(rungs[t.number] == 2 and sorted(t.intermediate_values) == [0, 1, 2] for t in complete)
    assert all(sorted(t.intermediate_values) == [0] for t in pruned)


def test_a_lone_run_does_not_rescan_the_study_per_trial(tmp_path) -> None:
    """Counts are kept from the loop's own events: a run alone on its study reads all trials a
    bounded number of times, not once or more per trial."""
    s = studies.open_study(str(tmp_path / "scan.journal"), "scan", "minimize", seed=0)
    scans = 0
    real = s.get_trials

    def counting(*args, **kwargs):
        nonlocal scans
        scans += 1
        return real(*args, **kwargs)

    s.get_trials = counting  # type: ignore[method-assign]
    pool = cf.ThreadPoolExecutor(2)
    out = loop.run_study(s, SPACE, n_trials=60, timeout=None, parallelism=2, submit=lambda n, p: pool.submit(lambda: {"value": p["x"] ** 2}), heartbeat_s=30)
    assert out.completed == 60 and out.events[-1].done == 60
    assert scans <= 12, scans  # start, end and the last few asks before the budget, not 60+
