"""Chaos and fault scenarios for tuneflow (issue 4): prove that nothing is lost, with figures.

    .venv/bin/python benchmarks/chaos.py                       # all four scenarios, long versions
    .venv/bin/python benchmarks/chaos.py --short               # the CI-sized versions
    .venv/bin/python benchmarks/chaos.py worker-loss crash-resume --out /tmp/chaos.json

Needs PostgreSQL and moto S3 for the s3-faults and concurrency scenarios:
`bash infra/services.sh up && eval "$(bash infra/services.sh env)"` (they are skipped otherwise).
Prints each scenario's figures as JSON and writes them all to --out
(default benchmarks/results/chaos.json).

Scenarios (the same code runs the short versions in tests/test_reliability.py):
  worker-loss    the real flow on a LocalCluster of 3 single-thread worker processes; a thread
                 SIGKILLs the worker process that runs a trial every few seconds (its nanny
                 restarts it). Compared with undisturbed runs of the same study.
  crash-resume   `tuneflow run` as a subprocess, its whole process group SIGKILLed at a random
                 point of validate/shard, tune or register, re-run after each kill, then left to
                 finish. Checks caching, the journal's COMPLETE count and the MLflow registry.
  s3-faults      the shard step (and the whole flow) against moto through
                 infra/faulty_s3_proxy.py failing a share of requests; compared with a
                 fault-free run byte for byte.
  concurrency    8 processes doing ask/tell on one PostgreSQL study, 8 processes recovering the
                 same stale trials, and 3 processes calling tasks.study.run_study on one study.
"""

from __future__ import annotations

import argparse
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
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
for _k, _v in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"), ("AWS_DEFAULT_REGION", "us-east-1")):
    os.environ.setdefault(_k, _v)

TARGET, ROW_KEY = "churned", "customer_id"
_TUNEFLOW_VARS = ("TUNEFLOW_STORE", "TUNEFLOW_STORAGE", "TUNEFLOW_MLFLOW_TRACKING_URI", "TUNEFLOW_MLFLOW_ARTIFACT_ROOT", "TUNEFLOW_DASK_ADDRESS")


# --------------------------------------------------------------------------------------- helpers


def make_data(path: Path, rows: int, seed: int = 7) -> Path:
    """The churn sample (tests.conftest.make_csv), made once per path."""
    from tests.conftest import make_csv

    if not path.exists():
        make_csv(path, rows, seed)
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

    from tasks import study as st

    numbers = [t.number for t in trials]
    return {
        "total": len(trials),
        "complete": sum(t.state == TrialState.COMPLETE for t in trials),
        "running": sum(t.state == TrialState.RUNNING for t in trials),
        "waiting": sum(t.state == TrialState.WAITING for t in trials),
        "fail": sum(t.state == TrialState.FAIL and not t.user_attrs.get(st.LOST_ATTR) for t in trials),
        "lost": sum(bool(t.user_attrs.get(st.LOST_ATTR)) for t in trials),
        "unique_numbers": len(set(numbers)) == len(numbers) and sorted(numbers) == list(range(len(numbers))),
    }


def _round(x: float | None, n: int = 2) -> float | None:
    return None if x is None else round(float(x), n)


def save(figures: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2, sort_keys=True, default=str) + "\n")


# ---------------------------------------------------------------------------------- worker loss


WORKER_LOSS_SHORT = dict(n_trials=10, workers=3, parallelism=3, rows=20_000, max_rounds=120, kill_every_s=4.0, baseline_runs=1)
WORKER_LOSS_LONG = dict(n_trials=40, workers=3, parallelism=3, rows=200_000, max_rounds=400, kill_every_s=20.0, baseline_runs=3)


class WorkerKiller(threading.Thread):
    """Every ~`every_s` seconds SIGKILL one Dask worker process (the nanny's child) running a trial.

    The victim is a worker whose processing set holds a `trial-<n>-...` key, so each kill costs
    a trial; a kill is recorded with the trial numbers it hit.
    """

    def __init__(self, scheduler_address: str, every_s: float, seed: int = 0, first_after_s: float | None = None) -> None:
        super().__init__(name="worker-killer", daemon=True)
        self.address, self.every_s = scheduler_address, every_s
        self.first_after_s = every_s if first_after_s is None else first_after_s
        self.rng = random.Random(seed)
        self.stopped = threading.Event()
        self.kills: list[dict[str, Any]] = []
        self.errors: list[str] = []

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=30)

    def run(self) -> None:
        import psutil
        from distributed import Client

        client = Client(self.address, set_as_default=False, timeout="30s")
        started = time.time()
        try:
            wait = self.first_after_s
            while not self.stopped.wait(wait):
                wait = self.every_s * self.rng.uniform(0.75, 1.25)
                try:
                    self._kill_one(client, psutil, started)
                except Exception as exc:  # a worker restarting between two calls: try next round
                    self.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            client.close()

    def _kill_one(self, client: Any, psutil: Any, started: float) -> None:
        deadline = time.time() + self.every_s  # wait this long at most for a worker busy with a trial
        while not self.stopped.is_set():
            busy = {a: [k for k in keys if str(k).startswith("trial-")] for a, keys in client.processing().items()}
            busy = {a: ks for a, ks in busy.items() if ks}
            if busy or time.time() > deadline:
                break
            time.sleep(0.1)
        if self.stopped.is_set():
            return
        candidates = sorted(busy) or sorted(client.scheduler_info()["workers"])
        victim = self.rng.choice(candidates)
        pid = client.run(os.getpid, workers=[victim])[victim]
        proc = psutil.Process(pid)
        if proc.ppid() != os.getpid():  # only ever a worker process this process's nannies started
            raise RuntimeError(f"worker {victim} pid {pid} is not a child of this process")
        trials = sorted({int(str(k).split("-")[1]) for k in busy.get(victim, [])})
        os.kill(pid, signal.SIGKILL)
        self.kills.append({"t": round(time.time() - started, 2), "worker": victim, "pid": pid, "trials": trials})


@contextlib.contextmanager
def local_cluster(workers: int) -> Iterator[Any]:
    """A process LocalCluster of single-thread workers, configured as tasks/cluster.py does."""
    import dask
    from distributed import LocalCluster

    # tasks/cluster.py sets this for the clusters it creates: a worker death fails its task at
    # once (KilledWorker), so the Prefect retry is counted on the trial instead of a silent re-run.
    dask.config.set({"distributed.scheduler.allowed-failures": 0})
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0", memory_limit=None) as cluster:
        yield cluster


def _restart_workers(address: str, workers: int) -> None:
    """Fresh worker processes (no resident data) so every run pays the same loading cost."""
    from distributed import Client

    with Client(address, set_as_default=False, timeout="30s") as client:
        client.restart(wait_for_workers=True)
        client.wait_for_workers(workers, timeout=120)


def flow_run(data: Path, home: Path, *, address: str, study_name: str, n_trials: int, parallelism: int, max_rounds: int, seed: int = 0) -> dict[str, Any]:
    """One in-process run of the real flow against the cluster at `address`; its study's trials."""
    from flows.tune_xgboost import tune_xgboost

    with env(**home_env(home)):
        started = time.perf_counter()
        result = tune_xgboost(
            data=str(data), target=TARGET, row_key=ROW_KEY, n_trials=n_trials, parallelism=parallelism,
            max_rounds=max_rounds, early_stopping_rounds=max_rounds, seed=seed, dask_address=address,
            study_name=study_name, placement="trial",
        )
        wall = time.perf_counter() - started
    trials = journal_trials(home, study_name)
    return {"result": result, "wall_s": wall, "trials": trials}


def worker_loss(workdir: Path, *, n_trials: int, workers: int, parallelism: int, rows: int, max_rounds: int, kill_every_s: float, baseline_runs: int, seed: int = 0) -> dict[str, Any]:
    """Undisturbed run(s), then the same study with a worker SIGKILLed every ~kill_every_s."""
    from optuna.trial import TrialState

    data = make_data(workdir / f"churn-{rows}.csv", rows)
    runs: list[dict[str, Any]] = []
    with local_cluster(workers) as cluster:
        address = cluster.scheduler_address
        for i in range(baseline_runs):
            _restart_workers(address, workers)
            run = flow_run(data, workdir / f"calm-{i}-{uuid.uuid4().hex[:6]}", address=address, study_name="worker-loss", n_trials=n_trials, parallelism=parallelism, max_rounds=max_rounds, seed=seed)
            runs.append(run)
        _restart_workers(address, workers)
        killer = WorkerKiller(address, kill_every_s, seed=seed)
        killer.start()
        try:
            chaos = flow_run(data, workdir / f"chaos-{uuid.uuid4().hex[:6]}", address=address, study_name="worker-loss", n_trials=n_trials, parallelism=parallelism, max_rounds=max_rounds, seed=seed)
        finally:
            killer.stop()

    trials = chaos["trials"]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    attempts = {t.number: int(t.user_attrs.get("attempt", 1)) for t in complete}
    retried = sorted(n for n, a in attempts.items() if a > 1)
    hit = sorted({n for k in killer.kills for n in k["trials"]})
    calm_best = [r["result"]["best_value"] for r in runs]
    calm_tune = [r["result"]["tune_seconds"] for r in runs]
    calm_wall = [r["wall_s"] for r in runs]
    return {
        "scenario": "worker-loss",
        "settings": dict(n_trials=n_trials, workers=workers, parallelism=parallelism, rows=rows, max_rounds=max_rounds, kill_every_s=kill_every_s, baseline_runs=baseline_runs),
        "counts": study_counts(trials),
        "kills": len(killer.kills),
        "kills_hitting_a_trial": sum(bool(k["trials"]) for k in killer.kills),
        "killed_trials": hit,
        "retried_trials": retried,
        "retries": sum(a - 1 for a in attempts.values()),
        "retried_not_killed": sorted(set(retried) - set(hit)),
        "killed_not_retried": sorted(set(hit) - set(retried)),
        "killer_errors": killer.errors,
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
