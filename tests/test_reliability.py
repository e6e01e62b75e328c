"""Chaos and fault tests (issue 4): worker loss, SIGKILL and resume, object-store faults, concurrency.

The scenarios live in infra/chaos.py; benchmarks/chaos.py runs their long versions and writes the
figures (`.venv/bin/python benchmarks/chaos.py`); here the short versions run in the default suite
and the long ones under `-m slow`. The smaller tests at the end of each section reproduce defects
the scenarios found (benchmarks/chaos_README.md, "Defects found"), now fixed: they guard against
their return.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from infra import chaos
from tasks.tuning.liveness import recover_stale_trials
from tasks.tuning.loop import run_study
from tasks.tuning.records import HEARTBEAT_ATTR, LOST_ATTR, RETRY_OF_ATTR, counts_toward_budget
from tasks.tuning.search_space import suggest
from tasks.tuning.studies import open_study

SPACE = {"x": {"type": "float", "low": -5.0, "high": 5.0}, "depth": {"type": "int", "low": 1, "high": 4}}


def _show(figures: dict) -> str:
    return json.dumps(figures, indent=1, sort_keys=True, default=str)[:6000]


# ----------------------------------------------------------------------------------- worker loss


@pytest.mark.usefixtures("prefect_harness")
def test_worker_loss_costs_a_retry_never_a_trial(tmp_path: Path) -> None:
    """The real flow on 3 single-thread worker processes, one SIGKILLed every ~3 s while it runs a trial."""
    f = chaos.worker_loss(tmp_path, **chaos.WORKER_LOSS_SHORT)
    print(_show(f))
    assert not chaos.check_worker_loss(f, spread_check=False), _show(f)
    assert f["kills_hitting_a_trial"] >= 1, "no kill landed on a running trial: the study was too short"
    assert set(f["retried_trials"]) <= set(f["killed_trials"])
    assert all(t["trials"] for t in f["kill_log"])
    assert f["tune_s"] < 10 * max(f["undisturbed_tune_s"]) + 60  # slower, never hung


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_worker_loss_long(tmp_path: Path) -> None:
    """40 trials, 3 workers, a kill every ~20 s, best value within the spread of 3 undisturbed runs."""
    f = chaos.worker_loss(tmp_path, **chaos.WORKER_LOSS_LONG)
    print(_show(f))
    assert not chaos.check_worker_loss(f, spread_check=True), _show(f)
    assert f["kills_hitting_a_trial"] >= 3


def test_data_parallel_trial_after_a_worker_was_replaced(tmp_path: Path) -> None:
    """Data-parallel placement: after a worker died and its nanny replaced it, the next trial must
    run (on the current workers), not wait forever for the dead worker's share of the data."""
    out = chaos.data_parallel_after_worker_loss(tmp_path, hang_after_s=30)
    print(_show(out))
    # Before the fix the splits stayed pinned to the dead worker's address: 'no-worker' forever.
    assert out["outcome"] == "completed", out


# ---------------------------------------------------------------------------------- crash/resume


def test_crash_resume_sigkill_the_cli_at_shard_tune_and_register(tmp_path: Path, prefect_harness) -> None:
    """`tuneflow run` SIGKILLed (whole process group) in shard, tune and register, re-run each time."""
    from prefect.settings import PREFECT_API_URL

    f = chaos.crash_resume(tmp_path, prefect_api_url=PREFECT_API_URL.value(), **chaos.CRASH_SHORT)
    print(_show(f))
    assert not chaos.check_crash_resume(f), _show(f)
    kills = {k["target"]: k for k in f["kills"]}
    shard_kill = kills["shard"]
    if shard_kill["phase"] == "shard":  # a half-written version was left, and later runs never trusted it
        assert any(v["parts"] and v["created_at"] is None for v in shard_kill["versions"]), shard_kill
    assert kills["tune"]["phase"] == "tune" and kills["tune"]["counts"]["complete"] < f["settings"]["n_trials"]
    if kills["register-version"]["phase"] == "register":  # killed once its model version existed, before the alias
        assert kills["register-version"]["registry"] and len(kills["register-version"]["registry"]) == 1
    assert f["final"]["cache"] == {"validate": ["Cached"], "shard": ["Cached"]}


@pytest.mark.slow
def test_crash_resume_long(tmp_path: Path, prefect_harness) -> None:
    from prefect.settings import PREFECT_API_URL

    f = chaos.crash_resume(tmp_path, prefect_api_url=PREFECT_API_URL.value(), **chaos.CRASH_LONG)
    print(_show(f))
    assert not chaos.check_crash_resume(f), _show(f)
    assert len([k for k in f["kills"] if k["phase"] != "exited"]) >= 8


def test_run_study_survives_another_run_failing_its_trial(tmp_path: Path) -> None:
    """A run whose heartbeat was late (suspended, storage stall) finds its in-flight trial failed
    as lost by another run: it must drop that trial, not crash the flow."""
    url = str(tmp_path / "late.journal")
    s = open_study(url, "late", "minimize", 0)
    gate = threading.Event()
    pool = cf.ThreadPoolExecutor(2)

    def other_run() -> None:
        time.sleep(0.5)
        recover_stale_trials(open_study(url, "late", "minimize", 0), stale_after_s=1.0, now=time.time() + 60)
        gate.set()

    threading.Thread(target=other_run, daemon=True).start()
    # Before the fix this raised optuna's UpdateFinishedTrialError out of run_study (and the flow).
    out = run_study(s, SPACE, n_trials=4, timeout=None, parallelism=2, submit=lambda n, p: pool.submit(lambda: (gate.wait(5), {"value": p["x"] ** 2})[1]))
    trials = s.get_trials(deepcopy=False)
    assert sum(t.state.name == "COMPLETE" for t in trials) == 4 and out.completed >= 2
    assert out.superseded and all(n in {t.number for t in trials if t.user_attrs.get(LOST_ATTR)} for n in out.superseded)


def test_a_trial_whose_retries_ran_out_on_a_transient_error_does_not_use_the_budget(tmp_path: Path) -> None:
    """A trial that kept losing its worker (Prefect's 3 retries spent on KilledWorker) is lost work,
    not a bad configuration: it must not count toward n_trials, and its parameters run again.
    Seen for real: at load ~10 the short worker-loss run hit one long trial 4 times (11 COMPLETE
    + 1 FAIL of 12); the long run completed a trial on its last allowed attempt."""
    from tasks.errors import TransientError

    s = open_study(str(tmp_path / "spent.journal"), "spent", "minimize", 0)
    seen: list[int] = []

    def submit(number: int, params: dict) -> cf.Future:
        f: cf.Future = cf.Future()
        seen.append(number)
        if number == 0:  # what trial_task raises once its retries are spent on lost workers
            f.set_exception(TransientError("KilledWorker: all those workers died while running it"))
        else:
            f.set_result({"value": params["x"] ** 2})
        return f

    run_study(s, SPACE, n_trials=3, timeout=None, parallelism=1, submit=submit)
    trials = s.get_trials(deepcopy=False)
    counts = chaos.study_counts(trials)
    assert counts["complete"] == 3, counts  # the lost trial did not use the budget
    first = trials[0]
    assert first.user_attrs.get(LOST_ATTR) and any(t.user_attrs.get(RETRY_OF_ATTR) == 0 and t.params == first.params for t in trials)


def test_resumed_run_reruns_the_dead_runs_trials_with_their_params(tmp_path: Path) -> None:
    """A run killed moments ago left a RUNNING trial (fresh heartbeat). The resumed run must re-run
    its parameters (issue: 'marked FAIL and re-enqueued with the same parameters') and leave no
    WAITING trial behind, instead of sampling new ones and failing it unseen at the end."""
    url = str(tmp_path / "resume.journal")
    s = open_study(url, "resume", "minimize", 0)
    s.enqueue_trial({"x": 4.321, "depth": 3})  # params no fresh sampler would draw
    dead = s.ask()
    suggest(dead, SPACE)
    dead.set_user_attr(HEARTBEAT_ATTR, time.time())
    lost = dict(dead.params)
    pool = cf.ThreadPoolExecutor(1)
    run_study(
        open_study(url, "resume", "minimize", 0), SPACE, n_trials=2, timeout=None, parallelism=1,
        # each trial outlasts the dead trial's staleness (2 s > 1 s), so the lost trial is re-enqueued
        # before a second new one could be asked, however slow a loaded machine is at checking
        submit=lambda n, p: pool.submit(lambda: (time.sleep(2.0), {"value": p["x"] ** 2})[1]), heartbeat_s=0.1, stale_after_s=1.0,
    )
    trials = s.get_trials(deepcopy=False)
    counts = chaos.study_counts(trials)
    assert counts["complete"] == 2 and counts["running"] == 0 and counts["lost"] == 1
    rerun = [t for t in trials if t.state.name == "COMPLETE" and t.params == lost]
    assert rerun and not counts["waiting"], f"the lost trial's params were not re-run: {counts}"
    assert rerun[0].user_attrs[RETRY_OF_ATTR] == dead.number


def test_register_crash_between_decision_and_alias(tmp_path: Path) -> None:
    """SIGKILL after the decision tags, before the alias: the re-run must still set `champion`."""
    from mlflow.tracking import MlflowClient

    from tasks import register

    manifest = chaos.small_manifest(tmp_path, 3000)
    model = chaos.small_model(manifest)  # run_trial(trial_request(...)) on the resident engine
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    kw = dict(model_ubj=model.model_ubj, manifest=manifest, metric="auc", direction="maximize", evaluate=lambda m: 0.7,
              params={"max_depth": 3}, valid_value=model.value, study_name="s", trial_number=0, model_name="m",
              tracking_uri=uri, artifact_root=(tmp_path / "art").as_uri())

    class Killed(BaseException):
        pass

    def killed(*a, **k):
        raise Killed()

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(MlflowClient, "set_registered_model_alias", killed)
        with pytest.raises(Killed):
            register.register_best_model(**kw)
    again = register.register_best_model(**kw)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    assert len(client.search_model_versions("name='m'")) == 1
    # Before the fix the decision tags came first: the re-run reused them and never set the alias.
    assert str(client.get_model_version_by_alias("m", "champion").version) == "1" and again["alias"] == "champion"


def test_mlflow_db_survives_a_kill_during_its_creation(tmp_path: Path) -> None:
    """The first register of a run creates the embedded MLflow SQLite database (300+ DDL statements of
    migrations). A SIGKILL in the middle must not leave a database that no later run can open."""
    out = chaos.mlflow_db_kill_during_creation(tmp_path, kill_at_ddl=30)
    print(out)
    assert out["first_rc"] == -9  # the subprocess really died mid-migration
    # Before the fix: "sqlite3.OperationalError: table ... already exists" on every later run.
    assert out["outcome"] == "registered" and out["version"] == 1 and out["alias"] == "champion", out


# ------------------------------------------------------------------------------------- s3 faults


def test_faulty_proxy_forwards_and_injects_each_kind(s3_endpoint: str) -> None:
    """The proxy itself: verbatim forwarding (PUT/HEAD/GET, sizes, bytes), each fault kind, control endpoint."""
    import os
    import uuid

    import boto3
    import botocore.config
    import botocore.exceptions

    proxy_mod = chaos.proxy_module()
    direct = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    bucket = f"px-{uuid.uuid4().hex[:10]}"
    direct.create_bucket(Bucket=bucket)
    body = os.urandom(200_000)
    no_retry = botocore.config.Config(retries={"total_max_attempts": 1, "mode": "standard"})
    with proxy_mod.FaultyS3Proxy(s3_endpoint, seed=3) as proxy:
        s3 = boto3.client("s3", endpoint_url=proxy.url, region_name="us-east-1", config=no_retry)
        s3.put_object(Bucket=bucket, Key="a.bin", Body=body)
        assert s3.head_object(Bucket=bucket, Key="a.bin")["ContentLength"] == len(body)
        assert s3.get_object(Bucket=bucket, Key="a.bin")["Body"].read() == body
        assert proxy.stats()["faults"] == 0 and proxy.stats()["forwarded"] == 3

        proxy.configure(script={"PUT": ["500", "503", "reset", "reset_after"], "GET": ["truncate"]})
        errors = []
        for key in ("b0", "b1", "b2", "b3"):
            try:
                s3.put_object(Bucket=bucket, Key=key, Body=b"x" * 10)
            except (botocore.exceptions.ClientError, botocore.exceptions.HTTPClientError) as exc:
                code = (getattr(exc, "response", None) or {}).get("Error", {}).get("Code", "")
                errors.append(f"{type(exc).__name__}:{code}")
        assert errors[:2] == ["ClientError:InternalError", "ClientError:SlowDown"] and len(errors) == 4
        keys = {o["Key"] for o in direct.list_objects_v2(Bucket=bucket)["Contents"]}
        assert "b3" in keys and "b2" not in keys  # reset_after reached moto, reset did not
        with pytest.raises(Exception):
            s3.get_object(Bucket=bucket, Key="a.bin")["Body"].read()
        stats = proxy.stats()
        assert stats["faults_by_kind"] == {"500": 1, "503": 1, "reset": 1, "reset_after": 1, "truncate": 1}

        proxy.configure(rate=1.0, methods=["DELETE"])  # only DELETEs fail now
        assert s3.get_object(Bucket=bucket, Key="a.bin")["Body"].read() == body
        with urllib.request.urlopen(urllib.request.Request(proxy.url + "/__faults__", data=b'{"rate": 0.0}', method="POST")) as r:
            assert json.loads(r.read())["rate"] == 0.0


@pytest.mark.usefixtures("prefect_harness")
def test_s3_faults_shards_identical_and_no_partial_objects(tmp_path: Path, s3_endpoint: str) -> None:
    """The whole flow on S3 through the fault proxy (every fault kind forced once, then 20 % random
    faults): shards and manifest identical to a fault-free run, no orphan/temporary objects."""
    f = chaos.s3_faults(tmp_path, endpoint=s3_endpoint, **chaos.S3_SHORT)
    print(_show(f))
    assert not chaos.check_s3_faults(f), _show(f)
    assert f["faulty"]["proxy"]["faults_by_method"].get("PUT", 0) >= 4


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_s3_faults_long(tmp_path: Path, s3_endpoint: str) -> None:
    f = chaos.s3_faults(tmp_path, endpoint=s3_endpoint, **chaos.S3_LONG)
    print(_show(f))
    assert not chaos.check_s3_faults(f), _show(f)


# ----------------------------------------------------------------------------------- concurrency


@pytest.mark.services
def test_eight_processes_ask_tell_on_one_postgres_study(pg_database: str) -> None:
    """8 spawned processes x K ask/tell, 8 processes recovering the same stale trials, 3 run_study."""
    f = chaos.concurrency(pg_database, **chaos.CONC_SHORT)
    print(_show(f))
    assert not chaos.check_concurrency(f), _show(f)


@pytest.mark.slow
@pytest.mark.services
def test_concurrency_long(pg_database: str) -> None:
    f = chaos.concurrency(pg_database, **chaos.CONC_LONG)
    print(_show(f))
    assert not chaos.check_concurrency(f), _show(f)


def test_concurrent_run_study_keeps_the_study_budget(tmp_path: Path) -> None:
    """Two run_study calls on one study (a deployment triggered twice, two users): n_trials is the
    study's total ('resumed studies count what they have'), so together they must stop near it."""
    url = str(tmp_path / "two.journal")
    open_study(url, "two", "minimize", 0)
    pool = cf.ThreadPoolExecutor(4)
    barrier = threading.Barrier(2)

    def one_run(seed: int) -> None:
        s = open_study(url, "two", "minimize", seed)
        barrier.wait()
        run_study(s, SPACE, n_trials=6, timeout=None, parallelism=2, heartbeat_s=0.2,
                     submit=lambda n, p: pool.submit(lambda: (time.sleep(0.05), {"value": p["x"] ** 2})[1]))

    runs = [threading.Thread(target=one_run, args=(i,)) for i in range(2)]
    for r in runs:
        r.start()
    for r in runs:
        r.join(60)
    trials = open_study(url, "two", "minimize", 0).get_trials(deepcopy=False)
    counted = sum(counts_toward_budget(t) for t in trials)
    assert not any(t.state.name == "RUNNING" for t in trials)
    # Before the fix each run counted only its own trials: 12 here.
    assert 6 <= counted <= 6 + 2, f"two runs with n_trials=6 made {counted} trials"
