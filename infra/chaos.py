"""The chaos and fault scenarios (issue 4), shared by the tests and the benchmark CLI.

tests/test_reliability.py runs the short versions and asserts; benchmarks/chaos.py runs the long
ones and writes their figures. Neither imports the other: both import this module (and the
fault-injecting S3 proxy beside it, infra/faulty_s3_proxy.py). Results: benchmarks/chaos_README.md.

Scenarios (each returns its figures as a dict; `check_*` lists what does not hold):
  worker_loss    the real flow on a LocalCluster of 3 single-thread worker processes; a thread
                 SIGKILLs the worker process that runs a trial every few seconds (its nanny
                 restarts it). Compared with undisturbed runs of the same study.
  crash_resume   `tuneflow run` as a subprocess, its whole process group SIGKILLed at a random
                 point of validate/shard, tune or register, re-run after each kill, then left to
                 finish. Checks caching, the journal's COMPLETE count and the MLflow registry.
  s3_faults      the shard step (and the whole flow) against moto through
                 infra/faulty_s3_proxy.py failing a share of requests; compared with a
                 fault-free run byte for byte.
  concurrency    8 processes doing ask/tell on one PostgreSQL study, 8 processes recovering the
                 same stale trials, and 3 processes calling tasks.tuning.loop.run_study on one study.
  data_parallel_after_worker_loss  the flow's data-parallel trial task after one of 3 workers
                 was SIGKILLed and replaced: must complete, not wait for the dead worker's data.
  mlflow_db_kill_during_creation  register SIGKILLed in the middle of MLflow's first migrations.

Imports only the standard library at module level (the spawned concurrency workers import it too).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing as mp
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

REPO = Path(__file__).resolve().parents[1]

os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
for _k, _v in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"), ("AWS_DEFAULT_REGION", "us-east-1")):
    os.environ.setdefault(_k, _v)

TARGET, ROW_KEY = "churned", "customer_id"
_TUNEFLOW_VARS = ("TUNEFLOW_STORE", "TUNEFLOW_STORAGE", "TUNEFLOW_MLFLOW_TRACKING_URI", "TUNEFLOW_MLFLOW_ARTIFACT_ROOT", "TUNEFLOW_DASK_ADDRESS")


# --------------------------------------------------------------------------------------- helpers


def make_data(path: Path, rows: int, seed: int = 7) -> Path:
    """The churn sample (tasks.data.sample) as one CSV, made once per path."""
    from tasks.data.sample import make_churn

    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:6]}")
        make_churn(rows, seed).to_csv(tmp, index=False)
        tmp.replace(path)
    return path


@contextlib.contextmanager
def env(**values: str | None) -> Iterator[None]:
    """Set (or, with None, unset) environment variables for the block."""
    saved = {k: os.environ.get(k) for k in values}
    try:
        for k, v in values.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def home_env(home: Path) -> dict[str, str | None]:
    """Embedded defaults (journal, local store, SQLite MLflow) under `home`, nothing inherited."""
    return {"TUNEFLOW_HOME": str(home), **{k: None for k in _TUNEFLOW_VARS}}


def journal_trials(home: Path, study_name: str) -> list[Any]:
    """The study's trials, read fresh from the journal under `home` (a new storage each call)."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    path = home / "optuna.journal"
    if not path.exists():
        return []
    storage = JournalStorage(JournalFileBackend(str(path)))
    try:
        return optuna.load_study(study_name=study_name, storage=storage).get_trials(deepcopy=False)
    except KeyError:  # the study was not created yet
        return []


def study_counts(trials: list[Any]) -> dict[str, int]:
    """Trials per state, plus the figures every scenario checks."""
    from optuna.trial import TrialState

    from tasks.tuning.records import LOST_ATTR

    numbers = [t.number for t in trials]
    return {
        "total": len(trials),
        "complete": sum(t.state == TrialState.COMPLETE for t in trials),
        "pruned": sum(t.state == TrialState.PRUNED for t in trials),
        "running": sum(t.state == TrialState.RUNNING for t in trials),
        "waiting": sum(t.state == TrialState.WAITING for t in trials),
        "fail": sum(t.state == TrialState.FAIL and not t.user_attrs.get(LOST_ATTR) for t in trials),
        "lost": sum(bool(t.user_attrs.get(LOST_ATTR)) for t in trials),
        "unique_numbers": len(set(numbers)) == len(numbers) and sorted(numbers) == list(range(len(numbers))),
    }


def _finished(counts: dict[str, int]) -> int:
    """Trials that used the budget as their verdict: COMPLETE or PRUNED (pruning is the default)."""
    return counts["complete"] + counts.get("pruned", 0)


def _round(x: float | None, n: int = 2) -> float | None:
    return None if x is None else round(float(x), n)


# ---------------------------------------------------------------------------------- worker loss


WORKER_LOSS_SHORT = dict(n_trials=12, workers=3, parallelism=3, rows=20_000, max_rounds=300, kill_every_s=3.0, baseline_runs=1)
WORKER_LOSS_LONG = dict(n_trials=40, workers=3, parallelism=3, rows=200_000, max_rounds=400, kill_every_s=20.0, baseline_runs=3)


class WorkerKiller(threading.Thread):
    """SIGKILL one Dask worker process (the nanny's child) running a trial, every ~`every_s` seconds
    (+-25 %), the first one `first_after_s` (default every_s / 2) after the first trial starts.

    The victim is a worker whose processing set holds a `trial-<n>-...` key, so each kill costs
    a trial; a kill is recorded with the trial numbers it hit. A round with no trial running
    within `every_s` (none that was not already hit `max_kills_per_trial` times) is skipped.
    """

    def __init__(
        self, scheduler_address: str, every_s: float, seed: int = 0, first_after_s: float | None = None,
        key_prefix: str = "trial-", max_kills_per_trial: int | None = 2,
    ) -> None:
        super().__init__(name="worker-killer", daemon=True)
        self.key_prefix = key_prefix
        # The flow retries a trial 3 times: 2 kills of one trial at most keep a retry in hand, so a
        # slow machine (long trials, hit again and again) cannot turn the test into a retry-budget test.
        self.max_kills_per_trial = max_kills_per_trial
        self.address, self.every_s = scheduler_address, every_s
        self.first_after_s = every_s / 2 if first_after_s is None else first_after_s
        self.rng = random.Random(seed)
        self.stopped = threading.Event()
        self.kills: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.skipped = 0

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=30)

    def run(self) -> None:
        import psutil
        from distributed import Client

        client = Client(self.address, set_as_default=False, timeout="30s")
        started = time.time()
        try:
            while not self.stopped.is_set() and not any(  # the clock starts with the first trial
                str(k).startswith(self.key_prefix) for keys in client.processing().values() for k in keys
            ):
                self.stopped.wait(0.1)
            wait = self.first_after_s
            while not self.stopped.wait(wait):
                wait = self.every_s * self.rng.uniform(0.75, 1.25)
                try:
                    self._kill_one(client, psutil, started)
                except Exception as exc:  # a worker restarting between two calls: try next round
                    self.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            client.close()

    def _spent(self, key: Any) -> bool:
        """This trial was already killed max_kills_per_trial times."""
        m = re.match(r"trial-(\d+)-", str(key))
        if not m or self.max_kills_per_trial is None:
            return False
        return sum(int(m.group(1)) in k["trials"] for k in self.kills) >= self.max_kills_per_trial

    def _kill_one(self, client: Any, psutil: Any, started: float) -> None:
        deadline = time.time() + self.every_s  # wait this long at most for a worker busy with a trial
        pids: dict[str, int] = {}
        while not self.stopped.is_set():
            addresses = set(client.scheduler_info()["workers"])
            if set(pids) != addresses:  # pids first, so the kill follows the processing snapshot at once
                pids = {a: p for a, p in client.run(os.getpid, on_error="return").items() if isinstance(p, int)}
            busy = {a: [k for k in keys if str(k).startswith(self.key_prefix)] for a, keys in client.processing().items()}
            busy = {a: ks for a, ks in busy.items() if ks and a in pids and not any(self._spent(k) for k in ks)}
            if busy or time.time() > deadline:
                break
            time.sleep(0.05)
        if self.stopped.is_set():
            return
        if not busy:  # no trial running (flow still validating, or between trials): skip this round
            self.skipped += 1
            return
        victim = self.rng.choice(sorted(busy))
        pid = pids[victim]
        if psutil.Process(pid).ppid() != os.getpid():  # only ever a worker process our own nannies started
            raise RuntimeError(f"worker {victim} pid {pid} is not a child of this process")
        os.kill(pid, signal.SIGKILL)
        trials = sorted({int(m.group(1)) for k in busy[victim] if (m := re.match(r"trial-(\d+)-", str(k)))})
        self.kills.append({"t": round(time.time() - started, 2), "worker": victim, "pid": pid, "trials": trials, "keys": [str(k)[:60] for k in busy[victim]]})


@contextlib.contextmanager
def local_cluster(workers: int) -> Iterator[Any]:
    """A process LocalCluster of single-thread workers, configured as tasks/engine/cluster.py does."""
    import dask
    from distributed import LocalCluster

    # tasks/engine/cluster.py sets this for the clusters it creates: a worker death fails its task at
    # once (KilledWorker), so the Prefect retry is counted on the trial instead of a silent re-run.
    dask.config.set({"distributed.scheduler.allowed-failures": 0})
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0", memory_limit=None) as cluster:
        yield cluster


def _import_heavy() -> bool:
    """What a flow's first run would otherwise pay inside the timed region (imports, GX, MLflow)."""
    import great_expectations  # noqa: F401
    import xgboost  # noqa: F401

    import tasks.engine.resident  # noqa: F401
    import tasks.validation  # noqa: F401

    return True


def warm_up(address: str) -> None:
    """Import the heavy modules here and on every worker, so the first timed run is not penalised."""
    from distributed import Client

    import flows.tune_xgboost  # noqa: F401
    import tasks.register  # noqa: F401

    _import_heavy()
    with Client(address, set_as_default=False, timeout="30s") as client:
        client.run(_import_heavy)


def flow_run(data: Path, home: Path, *, address: str, study_name: str, n_trials: int, parallelism: int, max_rounds: int, seed: int = 0) -> dict[str, Any]:
    """One in-process run of the real flow against the cluster at `address`; its study's trials.

    The data is copied under `home` first: a new path is a new fingerprint, so no run reuses
    another's cached validation, shards or worker-resident data, and all runs pay the same costs.
    """
    import shutil

    from flows.tune_xgboost import tune_xgboost
    from tasks.contracts import Placement

    home.mkdir(parents=True, exist_ok=True)
    data = Path(shutil.copy(data, home / "churn.csv"))
    with env(**home_env(home)):
        started = time.perf_counter()
        result = tune_xgboost(
            data=str(data), target=TARGET, row_key=ROW_KEY, n_trials=n_trials, parallelism=parallelism,
            max_rounds=max_rounds, early_stopping_rounds=max_rounds, seed=seed, dask_address=address,
            study_name=study_name, placement=Placement.TRIAL,
        )
        wall = time.perf_counter() - started
    trials = journal_trials(home, study_name)
    return {"result": result, "wall_s": wall, "trials": trials}


def worker_loss(workdir: Path, *, n_trials: int, workers: int, parallelism: int, rows: int, max_rounds: int, kill_every_s: float, baseline_runs: int, seed: int = 0) -> dict[str, Any]:
    """Undisturbed run(s), then the same study with a worker SIGKILLed every ~kill_every_s."""
    from optuna.trial import TrialState

    from tasks.tuning.records import result_of

    data = make_data(workdir / f"churn-{rows}.csv", rows)
    runs: list[dict[str, Any]] = []
    with local_cluster(workers) as cluster:
        address = cluster.scheduler_address
        warm_up(address)
        for i in range(baseline_runs):
            run = flow_run(data, workdir / f"calm-{i}-{uuid.uuid4().hex[:6]}", address=address, study_name="worker-loss", n_trials=n_trials, parallelism=parallelism, max_rounds=max_rounds, seed=seed)
            runs.append(run)
        killer = WorkerKiller(address, kill_every_s, seed=seed)
        killer.start()
        try:
            chaos = flow_run(data, workdir / f"chaos-{uuid.uuid4().hex[:6]}", address=address, study_name="worker-loss", n_trials=n_trials, parallelism=parallelism, max_rounds=max_rounds, seed=seed)
        finally:
            killer.stop()

    trials = chaos["trials"]
    complete = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]  # a pruned trial's rungs were retried too
    attempts = {t.number: int(result_of(t).get("attempt", 1)) for t in complete}
    retried = sorted(n for n, a in attempts.items() if a > 1)
    hit = sorted({n for k in killer.kills for n in k["trials"]})
    calm_best = [r["result"]["best_value"] for r in runs]
    calm_tune = [r["result"]["tune_seconds"] for r in runs]
    calm_wall = [r["wall_s"] for r in runs]
    return {
        "scenario": "worker-loss",
        "settings": dict(n_trials=n_trials, workers=workers, parallelism=parallelism, rows=rows, max_rounds=max_rounds, kill_every_s=kill_every_s, baseline_runs=baseline_runs, max_kills_per_trial=killer.max_kills_per_trial),
        "counts": study_counts(trials),
        "kills": len(killer.kills),
        "kills_hitting_a_trial": sum(bool(k["trials"]) for k in killer.kills),
        "killed_trials": hit,
        "retried_trials": retried,
        "retries": sum(a - 1 for a in attempts.values()),
        "retried_not_killed": sorted(set(retried) - set(hit)),
        "killed_not_retried": sorted(set(hit) - set(retried)),
        "killer_errors": killer.errors,
        "kill_rounds_skipped": killer.skipped,
        "kill_log": killer.kills,
        "best_value": chaos["result"]["best_value"],
        "undisturbed_best_values": calm_best,
        "tune_s": _round(chaos["result"]["tune_seconds"]),
        "undisturbed_tune_s": [_round(x) for x in calm_tune],
        "wall_s": _round(chaos["wall_s"]),
        "undisturbed_wall_s": [_round(x) for x in calm_wall],
        "tune_slowdown": _round(chaos["result"]["tune_seconds"] / (sum(calm_tune) / len(calm_tune)), 3) if calm_tune else None,
        "registered_version": chaos["result"]["registered"]["version"],
    }


def check_worker_loss(f: dict[str, Any], *, spread_check: bool) -> list[str]:
    """What must hold after the worker-loss run; an empty list when all does."""
    n = f["settings"]["n_trials"]
    c = f["counts"]
    problems = []
    if c["complete"] + c["pruned"] != n or c["running"] or c["fail"] or c["waiting"] or not c["unique_numbers"]:
        problems.append(f"study {c}, want exactly {n} COMPLETE, nothing else, numbers 0..N-1")
    if f["kills_hitting_a_trial"] and not f["retried_trials"]:
        problems.append(f"{f['kills_hitting_a_trial']} kills hit a trial but no trial shows attempt > 1")
    if f["retried_not_killed"]:
        problems.append(f"trials retried without a kill to explain it: {f['retried_not_killed']}")
    if f["registered_version"] != 1:
        problems.append(f"registered version {f['registered_version']}")
    if spread_check and f["undisturbed_best_values"]:
        lo, hi = min(f["undisturbed_best_values"]), max(f["undisturbed_best_values"])
        tol = max(hi - lo, 0.005)
        if not lo - tol <= f["best_value"] <= hi + tol:
            problems.append(f"best value {f['best_value']} outside the undisturbed spread [{lo}, {hi}] +- {tol}")
    return problems


def data_parallel_after_worker_loss(workdir: Path, *, rows: int = 6_000, hang_after_s: float = 45.0) -> dict[str, Any]:
    """The flow's data-parallel trial (trial_task's body) after one worker of 3 was SIGKILLed and
    replaced by its nanny. Returns how it ended: 'completed', 'failed: ...' or 'hung' (no result
    within hang_after_s, with the scheduler tasks stuck in 'no-worker' listed)."""
    from distributed import Client

    from flows.steps import trial_task
    from tasks import objectstore
    from tasks.contracts import Device, Placement, trial_request
    from tasks.engine.placement import open_trainer
    from tasks.problem import objective_params

    manifest = small_manifest(workdir, rows)
    request = trial_request(
        manifest, {**objective_params("binary", 2, "auc"), "seed": 0, "max_depth": 4, "learning_rate": 0.2, "max_bin": 64},
        placement=Placement.DATA, device=Device.CPU, nthread=1, num_boost_round=20, early_stopping_rounds=20, collective_timeout_s=60,
    )
    out: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        client = stack.enter_context(Client(stack.enter_context(local_cluster(3)), set_as_default=True))
        client.wait_for_workers(3, timeout=120)
        trainer = stack.enter_context(open_trainer(client, Placement.DATA, manifest, {}))  # the flow's data-parallel state
        first = trial_task.fn(0, request.for_trial(0, {}), trainer, objectstore.join(str(workdir / "models"), "t0.ubj"), None)
        out["before_kill_value"] = first["value"]
        victim = sorted(client.scheduler_info()["workers"])[0]
        os.kill(client.run(os.getpid, workers=[victim])[victim], signal.SIGKILL)
        deadline = time.time() + 60
        while time.time() < deadline and (victim in client.scheduler_info()["workers"] or len(client.scheduler_info()["workers"]) < 3):
            time.sleep(0.2)  # the nanny has replaced the worker (new address)
        box: dict[str, Any] = {}

        def attempt() -> None:
            try:
                box["result"] = trial_task.fn(1, request.for_trial(1, {}), trainer, objectstore.join(str(workdir / "models"), "t1.ubj"), None)
            except BaseException as exc:  # noqa: BLE001 (reported)
                box["error"] = f"{type(exc).__name__}: {str(exc)[:200]}"

        started = time.time()
        t = threading.Thread(target=attempt, daemon=True)
        t.start()
        t.join(hang_after_s)
        out["seconds"] = round(time.time() - started, 1)
        if t.is_alive():
            out["outcome"] = "hung"
            out["stuck_tasks"] = client.run_on_scheduler(_no_worker_tasks)
        else:
            out["outcome"] = "completed" if "result" in box else f"failed: {box.get('error')}"
    return out


def _no_worker_tasks(dask_scheduler: Any) -> list[dict[str, Any]]:
    return [
        {"key": str(k)[:60], "restricted_to": sorted(ts.worker_restrictions or [])}
        for k, ts in dask_scheduler.tasks.items() if ts.state == "no-worker"
    ]


def small_manifest(workdir: Path, rows: int) -> dict[str, Any]:
    """Shards of the churn sample in a local store (no Prefect, synchronous Dask scheduler)."""
    import dask

    from tasks.data import inputs, shard
    from tasks.data.sample import DEVICES, PLANS, REGIONS

    csv = make_data(workdir / f"churn-{rows}.csv", rows)
    files = inputs.expand_inputs(str(csv))
    schema = inputs.infer_schema(files, TARGET, "binary", {})
    fp = shard.fingerprint(files, schema, seed=0, fractions=shard.DEFAULT_FRACTIONS, row_key=ROW_KEY)
    profile = {"categories": {"region": list(REGIONS), "plan": list(PLANS), "device": list(DEVICES)}, "classes": {"0": 1, "1": 1}}
    with dask.config.set(scheduler="synchronous"):
        return shard.shard_dataset(
            inputs.read_dataset(files, schema, {}), files, schema, profile, store=str(workdir / "store"), name="churn",
            fp=fp, seed=0, fractions=shard.DEFAULT_FRACTIONS, row_key=ROW_KEY, storage_options={},
        )


_KILLED_REGISTER = """
import base64, json, os, signal, sys
from pathlib import Path
from sqlalchemy import event
from sqlalchemy.engine import Engine

sys.path.insert(0, {repo!r})
from infra import chaos
from tasks import register

workdir, kill_at = Path({workdir!r}), {kill_at}
manifest = chaos.small_manifest(workdir, 3000)
model = chaos.small_model(manifest)
(workdir / "model.ubj").write_bytes(model.model_ubj)
(workdir / "kw.json").write_text(json.dumps({{"manifest": manifest, "valid_value": model.value}}))
ddl = [0]

@event.listens_for(Engine, "after_cursor_execute")
def kill_mid_migration(conn, cursor, statement, parameters, context, executemany):
    if statement.lstrip().upper().startswith(("CREATE TABLE", "ALTER TABLE", "CREATE INDEX", "DROP")):
        ddl[0] += 1
        if ddl[0] == kill_at:  # SIGKILL in the middle of MLflow's first-use migrations
            os.kill(os.getpid(), signal.SIGKILL)

register.register_best_model(**chaos.register_kwargs(workdir, manifest, model.model_ubj, model.value))
"""


def small_model(manifest: dict[str, Any]) -> Any:
    """A 5-round depth-3 model of `manifest`, trained here by the trial engine (a TrialResult)."""
    from tasks.contracts import Device, trial_request
    from tasks.engine.resident import release_data, run_trial
    from tasks.problem import objective_params

    request = trial_request(manifest, {**objective_params("binary", 2, "auc"), "max_depth": 3}, device=Device.CPU, nthread=1, num_boost_round=5, early_stopping_rounds=5)
    try:
        return run_trial(request)
    finally:
        release_data()


def register_kwargs(workdir: Path, manifest: dict[str, Any], model_ubj: bytes, valid_value: float) -> dict[str, Any]:
    return dict(
        model_ubj=model_ubj, manifest=manifest, metric="auc", direction="maximize", evaluate=lambda m: 0.7,
        params={"max_depth": 3}, valid_value=valid_value, study_name="s", trial_number=0, model_name="m",
        tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}", artifact_root=(workdir / "art").as_uri(),
    )


def mlflow_db_kill_during_creation(workdir: Path, kill_at_ddl: int = 30) -> dict[str, Any]:
    """register_best_model in a subprocess SIGKILLed after the kill_at_ddl-th DDL statement of MLflow's
    first-use migrations of the embedded SQLite database; then register_best_model again here."""
    from tasks import register

    workdir.mkdir(parents=True, exist_ok=True)
    code = _KILLED_REGISTER.format(repo=str(REPO), workdir=str(workdir), kill_at=kill_at_ddl)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO)
    out: dict[str, Any] = {"first_rc": proc.returncode, "db_exists": (workdir / "mlflow.db").exists()}
    saved = json.loads((workdir / "kw.json").read_text())
    try:
        result = register.register_best_model(**register_kwargs(workdir, saved["manifest"], (workdir / "model.ubj").read_bytes(), saved["valid_value"]))
        out.update(outcome="registered", version=result["version"], alias=result["alias"])
    except Exception as exc:
        out.update(outcome="failed", error=f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    return out


# --------------------------------------------------------------------------------- crash/resume


# precreate_mlflow_db: the short version creates the embedded MLflow database before the first run,
# so its register kill cannot land in MLflow's first-use migrations (a known defect with its own
# test, test_mlflow_db_survives_a_kill_during_its_creation); the long version does not.
CRASH_SHORT = dict(n_trials=8, rows=24_000, files=4, max_rounds=150, parallelism=2, plan=["shard", "tune", "register-version"], baseline=False, precreate_mlflow_db=True)
CRASH_LONG = dict(
    n_trials=24, rows=120_000, files=6, max_rounds=300, parallelism=2, baseline=True, precreate_mlflow_db=False,
    # tune kills come early and after a few trials each, so the study is still running for all of them
    plan=["validate", "shard", "tune", "startup", "tune", "tune", "tune", "tune", "register", "register"],
)
CRASH_STUDY = "crash-resume"
_PHASES = ("startup", "validate", "shard", "tune", "register", "finishing")
_MARKERS = tuple((re.compile(m), phase) for m, phase in (  # stderr line -> the phase it starts
    (r"Beginning flow run", "validate"),
    (r"validation passed", "shard"),
    (r"placement:", "tune"),
    (r"Executing task 'register'", "register"),  # Prefect's task-run DEBUG log (enabled below)
    (r"Task run 'register-\w+' - Finished in state", "finishing"),
))


def make_multifile_data(folder: Path, rows: int, files: int) -> Path:
    """`files` CSVs of the churn sample with distinct customer ids: one Dask partition each."""
    from tasks.data.sample import make_churn

    folder.mkdir(parents=True, exist_ok=True)
    if len(list(folder.glob("*.csv"))) == files:
        return folder
    per = rows // files
    for i in range(files):
        df = make_churn(per, seed=100 + i)
        df["customer_id"] += i * per
        df.to_csv(folder / f"part-{i}.csv", index=False)
    return folder


class CliRun:
    """`tuneflow run` in its own process group, with its stderr parsed for phase markers."""

    def __init__(self, args: list[str], environ: dict[str, str], log_path: Path, n_trials: int) -> None:
        self.n_trials = n_trials
        self.started = time.time()
        self.phase = "startup"
        self.seen: dict[str, float] = {"startup": 0.0}
        self.cache_states: dict[str, list[str]] = {"validate": [], "shard": []}
        self.retries = 0
        self.done = 0  # trials the study had done per this run's last trial line
        self.ended: float | None = None
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(
            args, cwd=REPO, env=environ, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.PIPE,
            text=True, errors="replace", start_new_session=True,
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        done_re = re.compile(r"\| done (\d+),")
        state_re = re.compile(r"Task run '(validate|shard)-\w+' - Finished in state (\w+)")
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.write(line)
            t = round(time.time() - self.started, 2)
            for marker, phase in _MARKERS:
                if phase not in self.seen and marker.search(line):
                    self.seen[phase] = t
                    if _PHASES.index(phase) > _PHASES.index(self.phase):
                        self.phase = phase
            if "Created version '" in line and "version_created" not in self.seen:  # MLflow, inside register
                self.seen["version_created"] = t
            m = done_re.search(line)
            if m:
                self.done = max(self.done, int(m.group(1)))
                if self.done >= self.n_trials and "tune_done" not in self.seen:
                    self.seen["tune_done"] = t
            m = state_re.search(line)
            if m:
                self.cache_states[m.group(1)].append(m.group(2))
            if "Retry " in line and "will start" in line:
                self.retries += 1
        self.log.flush()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_for(self, phase: str, timeout: float) -> bool:
        """Until `phase` (or a later one) starts; False if the run ends or the time is up first."""
        deadline = time.time() + timeout
        while time.time() < deadline and self.alive():
            if phase in self.seen or _PHASES.index(self.phase) > _PHASES.index(phase):
                return True
            time.sleep(0.02)
        return phase in self.seen

    def kill(self) -> float:
        """SIGKILL the whole process group (flow process, Dask nannies and workers); when it happened."""
        t = time.time() - self.started
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=60)
        self.ended = time.time()
        self.reader.join(timeout=30)
        self.log.close()
        return round(t, 2)

    def wait(self, timeout: float) -> int:
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return -9
        self.ended = time.time()
        self.reader.join(timeout=30)
        self.log.close()
        return rc


def _leftover_processes(mark: str) -> list[int]:
    """Processes still carrying this scenario's marker in their environment (they should not exist)."""
    import psutil

    left = []
    for p in psutil.process_iter(["pid"]):
        with contextlib.suppress(psutil.Error):
            if p.environ().get("TUNEFLOW_CHAOS_MARK") == mark:
                left.append(p.pid)
    return left


def _kill_leftovers(pids: list[int]) -> None:
    for pid in pids:  # only processes this scenario started (they carry its marker)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _versions_on_disk(store: Path, name: str) -> list[dict[str, Any]]:
    """Dataset version folders under the local store: fingerprint, manifest created_at, part files."""
    root = store / "datasets" / name
    out = []
    for d in sorted(root.iterdir()) if root.exists() else []:
        manifest = d / "_manifest.json"
        out.append({
            "fingerprint": d.name,
            "created_at": json.loads(manifest.read_text())["created_at"] if manifest.exists() else None,
            "parts": len(list(d.rglob("part-*.parquet"))),
            "tmp_files": len([p for p in d.rglob("*") if ".tmp-" in p.name]),
        })
    return out


def _registry(home: Path, model_name: str) -> list[dict[str, Any]]:
    """Model versions of `model_name` in the embedded MLflow (SQLite) under `home`."""
    db = home / "mlflow.db"
    if not db.exists():
        return []
    from mlflow.tracking import MlflowClient

    from tasks import register

    uri = f"sqlite:///{db}"
    try:
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        versions = client.search_model_versions(f"name='{model_name}'")
    except Exception as exc:  # e.g. a database left half-created by a kill during MLflow's first migrations
        return [{"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"}]
    try:
        champion = client.get_model_version_by_alias(model_name, register.CHAMPION).version
    except Exception:
        champion = None
    return [
        {"version": int(v.version), "trial": v.tags.get(register.TAG_TRIAL), "champion": v.version == champion}
        for v in sorted(versions, key=lambda v: int(v.version))
    ]


def _kill_delay(target: str, rng: random.Random) -> float:
    return {"startup": rng.uniform(1.0, 8.0), "validate": rng.uniform(0.2, 3.0)}.get(target, 0.0)


def crash_resume(
    workdir: Path, *, n_trials: int, rows: int, files: int, max_rounds: int, parallelism: int, plan: list[str],
    baseline: bool, precreate_mlflow_db: bool = False, prefect_api_url: str | None = None, seed: int = 0, run_timeout_s: float = 600,
) -> dict[str, Any]:
    """Run `tuneflow run`, SIGKILL it at the planned phases, re-run after each kill, then let it finish."""
    data = make_multifile_data(workdir / "churn", rows, files)
    exe = str(Path(sys.executable).with_name("tuneflow"))
    rng = random.Random(seed)
    mark = uuid.uuid4().hex

    def cli(home: Path, tag: str) -> CliRun:
        environ = {
            **{k: v for k, v in os.environ.items() if not k.startswith("TUNEFLOW_") or k.startswith("TUNEFLOW_TEST_")},
            "TUNEFLOW_HOME": str(home), "PREFECT_HOME": str(home.parent / f"{home.name}-prefect"),
            "PREFECT_LOGGING_LOGGERS_PREFECT_TASK_RUNS_LEVEL": "DEBUG", "PYTHONUNBUFFERED": "1",
            "TUNEFLOW_CHAOS_MARK": mark, "COLUMNS": "200",
        }
        if prefect_api_url:
            environ["PREFECT_API_URL"] = prefect_api_url
        args = [
            exe, "run", "--data", str(data), "--target", TARGET, "--row-key", ROW_KEY, "--n-trials", str(n_trials),
            "--parallelism", str(parallelism), "--max-rounds", str(max_rounds), "--early-stopping-rounds", str(max_rounds),
            "--study-name", CRASH_STUDY, "--seed", str(seed),
        ]
        return CliRun(args, environ, home.parent / f"{home.name}-{tag}.log", n_trials)

    figures: dict[str, Any] = {"scenario": "crash-resume", "settings": dict(n_trials=n_trials, rows=rows, files=files, max_rounds=max_rounds, parallelism=parallelism, plan=plan, baseline=baseline, precreate_mlflow_db=precreate_mlflow_db)}
    if baseline:
        calm = cli(workdir / "calm", "run")
        rc = calm.wait(run_timeout_s)
        figures["undisturbed"] = {"rc": rc, "wall_s": _round(time.time() - calm.started), "phases": calm.seen}
        _kill_leftovers(_leftover_processes(mark))

    home = workdir / "home"
    store = home / "store"
    if precreate_mlflow_db:
        from mlflow.tracking import MlflowClient

        home.mkdir(parents=True, exist_ok=True)
        uri = f"sqlite:///{home / 'mlflow.db'}"
        MlflowClient(tracking_uri=uri, registry_uri=uri).search_registered_models()
    started = time.time()
    kills: list[dict[str, Any]] = []
    runs: list[CliRun] = []
    for i, target in enumerate(plan):
        run = cli(home, f"run{i}")
        runs.append(run)
        reached = True if target == "startup" else run.wait_for(target.split("-")[0], run_timeout_s)
        if target == "tune":  # kill after a random number of this run's trials, with others in flight
            start = _finished(study_counts(journal_trials(home, CRASH_STUDY)))
            goal = start + rng.randint(1, max(1, min(4, n_trials - 2 - start)))
            while run.alive() and run.done < goal and "tune_done" not in run.seen:
                time.sleep(0.01)
            end = time.time() + rng.uniform(0.0, 0.3)
            while time.time() < end and run.alive():
                time.sleep(0.01)
        elif target.startswith("register"):  # while scoring the model, or the moment its version exists (before the alias)
            if target == "register-version" or rng.random() < 0.5:
                while run.alive() and "version_created" not in run.seen and run.phase == "register":
                    time.sleep(0.005)
            else:
                end = time.time() + rng.uniform(0.0, 0.6)
                while time.time() < end and run.alive():
                    time.sleep(0.01)
        elif target == "shard":  # kill as soon as a part file is written: a half-written dataset version
            deadline = time.time() + 10
            while time.time() < deadline and run.alive() and not any(v["parts"] and v["created_at"] is None for v in _versions_on_disk(store, "churn")):
                if any(v["created_at"] for v in _versions_on_disk(store, "churn")):
                    break
                time.sleep(0.005)
        else:
            end = time.time() + _kill_delay(target, rng)
            while time.time() < end and run.alive():
                time.sleep(0.01)
        phase = run.phase
        if not run.alive():  # finished (or failed) before the kill
            rc = run.wait(10)
            kills.append({"run": i, "target": target, "reached": reached, "phase": "exited", "rc": rc})
            continue
        at = run.kill()
        left = _leftover_processes(mark)
        _kill_leftovers(left)
        trials = journal_trials(home, CRASH_STUDY)
        kills.append({
            "run": i, "target": target, "reached": reached, "phase": phase, "at_s": at, "leftover_processes": len(left),
            "counts": study_counts(trials), "versions": _versions_on_disk(store, "churn"),
            "registry": _registry(home, "tuneflow-churn"), "cache": run.cache_states, "retries": run.retries,
        })

    final = cli(home, "final")
    runs.append(final)
    rc = final.wait(run_timeout_s)
    final_s = time.time() - final.started
    total_s = time.time() - started
    _kill_leftovers(_leftover_processes(mark))
    trials = journal_trials(home, CRASH_STUDY)
    counts = study_counts(trials)
    from tasks.tuning.records import LOST_ATTR, RETRY_OF_ATTR

    retry_of = {t.user_attrs.get(RETRY_OF_ATTR) for t in trials}
    lost = [t.number for t in trials if t.user_attrs.get(LOST_ATTR)]
    report = json.loads((store / "reports" / f"{CRASH_STUDY}.json").read_text()) if (store / "reports" / f"{CRASH_STUDY}.json").exists() else {}
    first_computed = next((j for j, r in enumerate(runs) if "Completed" in r.cache_states["shard"]), None)
    recomputed = [
        {"run": j, **r.cache_states} for j, r in enumerate(runs)
        if first_computed is not None and j > first_computed and any(s != "Cached" for s in r.cache_states["validate"] + r.cache_states["shard"])
    ]
    settle = [round(r.seen["register"] - r.seen["tune_done"], 1) for r in runs if "register" in r.seen and "tune_done" in r.seen]
    figures.update({
        "kills": kills,
        "final": {"rc": rc, "wall_s": _round(final_s), "phases": final.seen, "cache": final.cache_states},
        "counts": counts,
        "complete_after_each_kill": [_finished(k["counts"]) for k in kills if "counts" in k],
        "lost_trials": lost,
        "lost_not_rerun": [n for n in lost if n not in retry_of],  # re-enqueued copies carry tuneflow:retry_of
        "complete_never_decreased": _nondecreasing([_finished(k["counts"]) for k in kills if "counts" in k] + [_finished(counts)]),
        "versions": _versions_on_disk(store, "churn"),
        "manifest_created_at_seen": sorted({v["created_at"] for k in kills for v in k.get("versions", []) if v["created_at"]} | {v["created_at"] for v in _versions_on_disk(store, "churn") if v["created_at"]}),
        "validate_shard_recomputed_after_completion": recomputed,
        "registry": _registry(home, "tuneflow-churn"),
        "best_trial": report.get("best_trial"),
        "best_value": report.get("best_value"),
        "recovered_in_final_run": report.get("recovered_trials"),
        "total_wall_s": _round(total_s),
        "tune_done_to_register_s": settle,
        "runs": [{"wall_s": _round((r.ended or time.time()) - r.started), "phases": r.seen} for r in runs],
        "retries": sum(r.retries for r in runs),
        "leftover_processes": sum(k.get("leftover_processes", 0) for k in kills),
    })
    if baseline and "undisturbed" in figures:
        figures["slowdown_vs_undisturbed"] = _round(total_s / figures["undisturbed"]["wall_s"], 2)
    return figures


def _nondecreasing(xs: list[int]) -> bool:
    return all(a <= b for a, b in zip(xs, xs[1:]))


def check_crash_resume(f: dict[str, Any]) -> list[str]:
    """What must hold after crash/resume; an empty list when all does."""
    n = f["settings"]["n_trials"]
    problems = []
    if f["final"]["rc"] != 0:
        problems.append(f"final run exited {f['final']['rc']}")
    c = f["counts"]
    if _finished(c) != n or c["running"] or not c["unique_numbers"]:
        problems.append(f"final study {c}, want {n} COMPLETE, 0 RUNNING, numbers 0..N-1")
    if f["lost_not_rerun"]:
        problems.append(f"trials lost with a killed run whose parameters were never re-run: {f['lost_not_rerun']}")
    if not f["complete_never_decreased"]:
        problems.append(f"COMPLETE count decreased: {f['complete_after_each_kill']} -> {c['complete']}")
    if len(f["versions"]) != 1 or not f["versions"][0]["created_at"] or f["versions"][0]["tmp_files"]:
        problems.append(f"dataset versions at the end: {f['versions']}")
    if len(f["manifest_created_at_seen"]) != 1:
        problems.append(f"manifest rewritten: created_at values {f['manifest_created_at_seen']}")
    if f["validate_shard_recomputed_after_completion"]:
        problems.append(f"validate/shard ran again after completing: {f['validate_shard_recomputed_after_completion']}")
    reg = f["registry"]
    if len(reg) != 1 or str(reg[0]["trial"]) != str(f["best_trial"]) or not reg[0]["champion"]:
        problems.append(f"registry {reg}, want one champion version for trial {f['best_trial']}")
    if f["leftover_processes"]:
        problems.append(f"{f['leftover_processes']} processes outlived their killed process group")
    return problems


# ------------------------------------------------------------------------------------ s3 faults


# every fault kind forced once on writes and reads, then random faults at `rate`
S3_SCRIPT = {"PUT": ["reset_after", "500", "reset", "503"], "GET": ["truncate", "500", "reset"], "HEAD": ["503", "reset"]}
S3_SHORT = dict(rows=6_000, rate=0.2, seed=1, n_trials=2, max_rounds=20, sweep=[])
S3_LONG = dict(
    rows=60_000, rate=0.2, seed=1, n_trials=4, max_rounds=40,
    # (fault rate, botocore retries on?) for the shard step alone: which layer saves it
    sweep=[(0.1, True), (0.3, True), (0.5, True), (0.7, True), (0.2, False), (0.5, False)],
)
_MANIFEST_VOLATILE = ("created_at", "shard_seconds", "uri", "fingerprint", "sources", "name")


def proxy_module() -> Any:
    """infra/faulty_s3_proxy.py, the fault-injecting proxy these scenarios drive."""
    from infra import faulty_s3_proxy

    return faulty_s3_proxy


def _s3(endpoint: str) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")


def _keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return keys


def audit_store(endpoint: str, bucket: str, prefix: str) -> dict[str, Any]:
    """Read the store straight from moto: every dataset version, its part files against its
    manifest (sha256, size), objects no manifest lists, temporary objects, open multipart uploads."""
    s3 = _s3(endpoint)
    keys = _keys(s3, bucket, prefix)
    versions: dict[str, dict[str, Any]] = {}
    for key in keys:
        m = re.match(rf"{re.escape(prefix)}/datasets/[^/]+/([0-9a-f]+)/(.+)$", key)
        if m:
            versions.setdefault(m.group(1), {"objects": []})["objects"].append(m.group(2))
    problems: list[str] = []
    manifests = {}
    for fp, v in versions.items():
        base = next(k for k in keys if f"/{fp}/" in k).split(f"/{fp}/")[0] + f"/{fp}/"
        if "_manifest.json" not in v["objects"]:
            problems.append(f"version {fp}: {len(v['objects'])} objects and no manifest")
            continue
        manifest = json.loads(s3.get_object(Bucket=bucket, Key=base + "_manifest.json")["Body"].read())
        manifests[fp] = manifest
        listed = {f["path"]: f for s in manifest["splits"].values() for f in s["files"]}
        for rel in v["objects"]:
            if rel == "_manifest.json":
                continue
            if rel not in listed:
                problems.append(f"version {fp}: {rel} is not in the manifest")
                continue
            body = s3.get_object(Bucket=bucket, Key=base + rel)["Body"].read()
            if hashlib.sha256(body).hexdigest() != listed[rel]["sha256"] or len(body) != listed[rel]["bytes"]:
                problems.append(f"version {fp}: {rel} differs from its manifest entry")
        missing = set(listed) - set(v["objects"])
        if missing:
            problems.append(f"version {fp}: manifest lists missing objects {sorted(missing)}")
    tmp = [k for k in keys if ".tmp-" in k]
    if tmp:
        problems.append(f"temporary objects left: {tmp}")
    uploads = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    if uploads:
        problems.append(f"{len(uploads)} unfinished multipart uploads")
    return {"objects": len(keys), "versions": sorted(versions), "manifests": manifests, "problems": problems}


def comparable(manifest: dict[str, Any]) -> dict[str, Any]:
    """A manifest without what legitimately differs between two writes of the same data."""
    return {k: v for k, v in manifest.items() if k not in _MANIFEST_VOLATILE}


def task_run_counts(flow_run_id: Any) -> dict[str, list[int]]:
    """Task name -> run_count of each of its task runs in that flow run (run_count > 1: retried)."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    out: dict[str, list[int]] = {}
    for tr in runs:
        out.setdefault(tr.name.rsplit("-", 1)[0], []).append(int(tr.run_count))
    return out


def _retries(counts: dict[str, list[int]]) -> dict[str, int]:
    return {name: sum(max(0, c - 1) for c in cs) for name, cs in counts.items() if any(c > 1 for c in cs)}


def _flow_through_proxy(data_uri: str, store: str, home: Path, proxy_url: str, address: str, n_trials: int, max_rounds: int) -> dict[str, Any]:
    from flows.tune_xgboost import tune_xgboost
    from tasks.contracts import Placement

    with env(**home_env(home), TUNEFLOW_S3_ENDPOINT_URL=proxy_url):
        started = time.perf_counter()
        state = tune_xgboost(
            data=data_uri, target=TARGET, row_key=ROW_KEY, n_trials=n_trials, parallelism=2, max_rounds=max_rounds,
            early_stopping_rounds=max_rounds, dask_address=address, store=store, study_name="s3-faults", placement=Placement.TRIAL,
            return_state=True,
        )
        wall = time.perf_counter() - started
    counts = task_run_counts(state.state_details.flow_run_id)
    out: dict[str, Any] = {"state": state.type.value, "wall_s": _round(wall), "task_runs": {k: len(v) for k, v in counts.items()}, "prefect_retries": _retries(counts)}
    if state.is_completed():
        out["result"] = state.result()
    else:
        out["error"] = str(state.message)[:500]
    return out


def _shard_only(data_uri: str, store: str, proxy: Any, rate: float, address: str) -> dict[str, Any]:
    """validate (fault-free, cached after the first call) then the real shard task with faults on."""
    from prefect import flow

    from flows.steps import shard_task, validate_task
    from tasks import objectstore
    from tasks.engine.cluster import dask_client
    from tasks.plan import plan_run

    @flow(name="chaos-shard-only")
    def shard_only() -> dict[str, Any]:
        proxy.configure(rate=0.0)
        plan = plan_run(data_uri, TARGET, "binary", None, None, None, 0, ROW_KEY, 1, None, 1)
        with dask_client(address, 2):
            report = validate_task(plan.files, plan.schema, plan.expectations, plan.data_options, plan.fingerprint)
            proxy.configure(rate=rate)
            try:
                return shard_task(
                    plan.files, plan.schema, report["profile"], store, plan.name, plan.fingerprint, 0, ROW_KEY,
                    {**plan.data_options, **objectstore.storage_options_for(store)},
                )
            finally:
                proxy.configure(rate=0.0)

    with env(TUNEFLOW_S3_ENDPOINT_URL=proxy.url):
        started = time.perf_counter()
        state = shard_only(return_state=True)
        wall = time.perf_counter() - started
    counts = task_run_counts(state.state_details.flow_run_id)
    out: dict[str, Any] = {"state": state.type.value, "wall_s": _round(wall), "prefect_retries": _retries(counts), "shard_runs": counts.get("shard", [])}
    if state.is_completed():
        out["manifest"] = state.result()
    else:
        out["error"] = str(state.message)[:500]
    return out


def s3_faults(workdir: Path, *, rows: int, rate: float, seed: int, n_trials: int, max_rounds: int, sweep: list[tuple[float, bool]], endpoint: str | None = None) -> dict[str, Any]:
    """The whole flow on S3 through the fault proxy vs. fault-free; then the shard step alone per rate."""
    FaultyS3Proxy = proxy_module().FaultyS3Proxy

    endpoint = endpoint or os.environ.get("TUNEFLOW_TEST_S3_ENDPOINT")
    if not endpoint:
        raise RuntimeError("no S3 endpoint: bash infra/services.sh up && eval \"$(bash infra/services.sh env)\"")
    csv = make_data(workdir / f"churn-{rows}.csv", rows)
    s3 = _s3(endpoint)
    bucket = f"chaos-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    for tag in ("clean", "faulty"):  # two copies: distinct fingerprints, so nothing is cached between the runs
        s3.upload_file(str(csv), bucket, f"landing/{tag}/churn.csv")
    figures: dict[str, Any] = {"scenario": "s3-faults", "settings": dict(rows=rows, rate=rate, seed=seed, n_trials=n_trials, max_rounds=max_rounds, sweep=sweep), "bucket": bucket}

    with local_cluster(2) as cluster:
        with FaultyS3Proxy(endpoint, rate=0.0, seed=seed) as proxy:
            clean = _flow_through_proxy(f"s3://{bucket}/landing/clean/churn.csv", f"s3://{bucket}/clean", workdir / "clean", proxy.url, cluster.scheduler_address, n_trials, max_rounds)
            figures["clean"] = {k: v for k, v in clean.items() if k != "result"} | {"proxy": proxy.stats()}
            proxy.reset_counters()
            proxy.configure(rate=rate, seed=seed, script={m: list(ks) for m, ks in S3_SCRIPT.items()})
            faulty = _flow_through_proxy(f"s3://{bucket}/landing/faulty/churn.csv", f"s3://{bucket}/faulty", workdir / "faulty", proxy.url, cluster.scheduler_address, n_trials, max_rounds)
            proxy.configure(rate=0.0)
            figures["faulty"] = {k: v for k, v in faulty.items() if k != "result"} | {"proxy": proxy.stats()}
    a, b = audit_store(endpoint, bucket, "clean"), audit_store(endpoint, bucket, "faulty")
    figures["audit"] = {"clean": {k: v for k, v in a.items() if k != "manifests"}, "faulty": {k: v for k, v in b.items() if k != "manifests"}}
    ma, mb = list(a["manifests"].values()), list(b["manifests"].values())
    figures["identical_shards"] = len(ma) == len(mb) == 1 and comparable(ma[0]) == comparable(mb[0])
    if "result" in faulty:
        trials = journal_trials(workdir / "faulty", "s3-faults")
        figures["faulty"]["counts"] = study_counts(trials)
        models = _keys(s3, bucket, "faulty/studies/")
        figures["faulty"]["models"] = len([k for k in models if k.endswith(".ubj")])

    points = []
    for point_rate, botocore_retries in sweep:
        values = {} if botocore_retries else {"AWS_MAX_ATTEMPTS": "1"}  # botocore: 1 attempt = no retry
        with env(**values), local_cluster(2) as cluster, FaultyS3Proxy(endpoint, rate=0.0, seed=seed) as proxy:
            prefix = f"sweep-{int(point_rate * 100)}-{'b' if botocore_retries else 'nob'}"
            out = _shard_only(f"s3://{bucket}/landing/clean/churn.csv", f"s3://{bucket}/{prefix}", proxy, point_rate, cluster.scheduler_address)
            audit = audit_store(endpoint, bucket, prefix)
            manifest = out.pop("manifest", None)
            points.append({
                "rate": point_rate, "botocore_retries": botocore_retries, **out, "proxy": proxy.stats(),
                "identical": manifest is not None and comparable(manifest) == comparable(ma[0]),
                "problems": audit["problems"],
            })
    figures["sweep"] = points
    return figures


def check_s3_faults(f: dict[str, Any]) -> list[str]:
    problems = []
    for tag in ("clean", "faulty"):
        if f[tag]["state"] != "COMPLETED":
            problems.append(f"{tag} flow ended {f[tag]['state']}: {f[tag].get('error')}")
        problems += [f"{tag}: {p}" for p in f["audit"][tag]["problems"]]
    if not f["identical_shards"]:
        problems.append("the faulty run's manifest/shards differ from the fault-free run's")
    if f["faulty"]["proxy"]["faults"] == 0:
        problems.append("no fault was injected")
    counts = f["faulty"].get("counts")
    n = f["settings"]["n_trials"]
    if counts and (_finished(counts) != n or counts["running"]):
        problems.append(f"faulty run's study {counts}")
    if counts and f["faulty"].get("models") != n:
        problems.append(f"faulty run: {f['faulty'].get('models')} model objects for {n} trials")
    for p in f["sweep"]:
        problems += [f"sweep {p['rate']}/{p['botocore_retries']}: {x}" for x in p["problems"]]
        if p["state"] == "COMPLETED" and not p["identical"]:
            problems.append(f"sweep {p['rate']}/{p['botocore_retries']}: completed with different shards")
    return problems


# ---------------------------------------------------------------------------------- concurrency


CONC_SHORT = dict(procs=8, k=6, enqueued=8, stale=8, run_study_procs=3, run_study_n=12)
CONC_LONG = dict(procs=8, k=60, enqueued=16, stale=32, run_study_procs=3, run_study_n=60)
CONC_SPACE = {"x": {"type": "float", "low": -5.0, "high": 5.0}, "depth": {"type": "int", "low": 1, "high": 6}}


def _objective(params: dict[str, Any]) -> float:
    return (params["x"] - 1.0) ** 2 + 0.1 * params["depth"]


def _ask_tell_worker(url: str, name: str, seed: int, k: int, barrier: Any) -> dict[str, Any]:
    from tasks.tuning.search_space import suggest
    from tasks.tuning.studies import open_study

    s = open_study(url, name, "minimize", seed)
    barrier.wait()
    started = time.time()
    out = []
    for _ in range(k):
        trial = s.ask()
        params = suggest(trial, CONC_SPACE)
        s.tell(trial, _objective(params))
        out.append((trial.number, params))
    return {"told": out, "seconds": time.time() - started}


def _recover_worker(url: str, name: str, barrier: Any) -> list[int]:
    from tasks.tuning.liveness import recover_stale_trials
    from tasks.tuning.studies import open_study

    s = open_study(url, name, "minimize", 0)
    barrier.wait()
    return recover_stale_trials(s, stale_after_s=60)


def _run_study_worker(url: str, name: str, seed: int, n_trials: int, barrier: Any) -> dict[str, Any]:
    import concurrent.futures as cf

    from tasks.tuning.loop import run_study
    from tasks.tuning.studies import open_study

    s = open_study(url, name, "minimize", seed)
    pool = cf.ThreadPoolExecutor(2)
    barrier.wait()
    started = time.time()
    out = run_study(
        s, CONC_SPACE, n_trials=n_trials, timeout=None, parallelism=2,
        submit=lambda n, p: pool.submit(lambda: (time.sleep(0.05), {"value": _objective(p)})[1]),
        heartbeat_s=1.0,
    )
    return {"completed": out.completed, "failed": out.failed, "recovered": out.recovered, "seconds": round(time.time() - started, 2)}


def _in_processes(fn: Any, arg_lists: list[tuple], timeout: float = 300) -> list[Any]:
    """Run fn(*args, barrier) in one spawned process per args, all released by one barrier."""
    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(len(arg_lists), timeout=timeout)
        with ctx.Pool(len(arg_lists)) as pool:
            results = [pool.apply_async(fn, (*args, barrier)) for args in arg_lists]
            return [r.get(timeout=timeout) for r in results]


def concurrency(url: str, *, procs: int, k: int, enqueued: int, stale: int, run_study_procs: int, run_study_n: int) -> dict[str, Any]:
    """ask/tell, stale-trial recovery and run_study from several processes on one study."""
    import optuna
    from optuna.trial import TrialState

    from tasks.tuning.records import HEARTBEAT_ATTR, counts_toward_budget
    from tasks.tuning.search_space import suggest
    from tasks.tuning.studies import open_storage, open_study

    figures: dict[str, Any] = {"scenario": "concurrency", "storage": url.split("://")[0], "settings": dict(procs=procs, k=k, enqueued=enqueued, stale=stale, run_study_procs=run_study_procs, run_study_n=run_study_n)}

    # 1. procs x k ask/tell, with `enqueued` fixed configurations waiting to be popped
    name = f"conc-asktell-{uuid.uuid4().hex[:6]}"
    s = open_study(url, name, "minimize", 0)
    configs = [{"x": round(-4.0 + i * 0.25, 2), "depth": 1 + i % 6} for i in range(enqueued)]
    for c in configs:
        s.enqueue_trial(c)
    results = _in_processes(_ask_tell_worker, [(url, name, i, k) for i in range(procs)])
    per_proc = [r["told"] for r in results]
    seconds = max(r["seconds"] for r in results)  # from the barrier's release to the last tell
    trials = optuna.load_study(study_name=name, storage=open_storage(url)).get_trials(deepcopy=False)
    numbers = sorted(n for out in per_proc for n, _ in out)
    ran = [(t.params["x"], t.params["depth"]) for t in trials if t.state == TrialState.COMPLETE]
    figures["ask_tell"] = {
        "seconds": round(seconds, 2),
        "trials": len(trials),
        "expected": procs * k,
        "counts": study_counts(trials),
        "numbers_told_by_processes_unique": numbers == sorted(set(numbers)) and len(numbers) == procs * k,
        "enqueued_each_run_once": all(ran.count((c["x"], c["depth"])) == 1 for c in configs),
        "trials_per_second": round(len(trials) / seconds, 1),
    }

    # 2. procs processes recover the same `stale` trials at once: each is failed and re-enqueued once
    name = f"conc-recover-{uuid.uuid4().hex[:6]}"
    s = open_study(url, name, "minimize", 0)
    for _ in range(stale):
        t = s.ask()
        suggest(t, CONC_SPACE)
        t.set_user_attr(HEARTBEAT_ATTR, time.time() - 3600)
    recovered = _in_processes(_recover_worker, [(url, name) for _ in range(procs)])
    trials = optuna.load_study(study_name=name, storage=open_storage(url)).get_trials(deepcopy=False)
    flat = [n for r in recovered for n in r]
    figures["recover"] = {
        "stale": stale,
        "recovered_total": len(flat),
        "recovered_by_exactly_one_process": sorted(flat) == list(range(stale)),
        "per_process": [len(r) for r in recovered],
        "waiting_after": sum(t.state == TrialState.WAITING for t in trials),
        "running_after": sum(t.state == TrialState.RUNNING for t in trials),
    }

    # 3. run_study itself from several processes on one study, each with n_trials = run_study_n
    name = f"conc-runstudy-{uuid.uuid4().hex[:6]}"
    open_study(url, name, "minimize", 0)
    started = time.time()
    outs = _in_processes(_run_study_worker, [(url, name, i, run_study_n) for i in range(run_study_procs)])
    trials = optuna.load_study(study_name=name, storage=open_storage(url)).get_trials(deepcopy=False)
    figures["run_study"] = {
        "processes": run_study_procs,
        "n_trials_each": run_study_n,
        "seconds": round(time.time() - started, 2),
        "per_process": outs,
        "counts": study_counts(trials),
        "budget_overshoot": sum(counts_toward_budget(t) for t in trials) - run_study_n,
    }
    return figures


def check_concurrency(f: dict[str, Any]) -> list[str]:
    problems = []
    a = f["ask_tell"]
    c = a["counts"]
    if a["trials"] != a["expected"] or c["complete"] != a["expected"] or c["running"] or c["waiting"] or not c["unique_numbers"]:
        problems.append(f"ask/tell: {a}")
    if not a["numbers_told_by_processes_unique"] or not a["enqueued_each_run_once"]:
        problems.append(f"ask/tell: duplicated trials {a}")
    r = f["recover"]
    if not r["recovered_by_exactly_one_process"] or r["waiting_after"] != r["stale"] or r["running_after"]:
        problems.append(f"recover: {r}")
    rs = f["run_study"]
    if rs["counts"]["running"] or not rs["counts"]["unique_numbers"]:
        problems.append(f"run_study: {rs}")
    # n_trials is the study's total: concurrent runs may overshoot it only by trials asked at the
    # same instant (each run keeps 2 in flight)
    if not 0 <= rs["budget_overshoot"] <= 2 * (rs["processes"] - 1):
        problems.append(f"run_study x{rs['processes']} with n_trials={rs['n_trials_each']} made {rs['counts']['total']} trials")
    return problems
