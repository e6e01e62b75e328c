"""Shared fixtures: sample data, real S3 (moto server over HTTP), real PostgreSQL, Dask, Prefect."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI") == "true"

os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


# The validation profile of make_csv's churn frame (its categories and classes), for shard_csv.
CHURN_PROFILE = {
    "categories": {
        "region": ["north", "south", "east", "west", "central"],
        "plan": ["free", "basic", "pro", "enterprise"],
        "device": ["android", "ios", "web", "desktop"],
    },
    "classes": {"0": 1, "1": 1},
}


def make_csv(path: Path, rows: int, seed: int = 7) -> Path:
    """A churn CSV from the project's own generator."""
    from tasks.data.sample import make_churn

    path.parent.mkdir(parents=True, exist_ok=True)
    make_churn(rows, seed).to_csv(path, index=False)
    return path


def shard_csv(csv: Path, target: str, task: str, profile: dict, store: str, *, name: str = "data", row_key: str | None = None, seed: int = 0, scheduler: str = "sync") -> dict:
    """A dataset version of `csv` written by the real shard step (profile: categories and classes)."""
    import dask

    from tasks import objectstore
    from tasks.data import inputs, shard

    files = inputs.expand_inputs(str(csv))
    schema = inputs.infer_schema(files, target, task, {})
    fp = shard.fingerprint(files, schema, seed=seed, fractions=shard.DEFAULT_FRACTIONS, row_key=row_key)
    with dask.config.set(scheduler=scheduler):
        return shard.shard_dataset(
            inputs.read_dataset(files, schema, {}), files, schema, profile, store=store, name=name, fp=fp, seed=seed,
            fractions=shard.DEFAULT_FRACTIONS, row_key=row_key, storage_options=objectstore.storage_options_for(store),
        )


@pytest.fixture(scope="session")
def churn_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_csv(tmp_path_factory.mktemp("data") / "churn.csv", 6000)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint() -> str:
    """moto's S3 server over real HTTP: the one infra/services.sh started, or our own."""
    endpoint = os.environ.get("TUNEFLOW_TEST_S3_ENDPOINT")
    if endpoint:
        yield endpoint
        return
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket; TUNEFLOW_S3_ENDPOINT_URL points every s3:// access at moto."""
    import boto3

    monkeypatch.setenv("TUNEFLOW_S3_ENDPOINT_URL", s3_endpoint)
    bucket = f"tf-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    return bucket


@pytest.fixture(scope="session")
def pg_url() -> str:
    """PostgreSQL started by infra/services.sh (TUNEFLOW_TEST_PG_URL). Required in CI."""
    url = os.environ.get("TUNEFLOW_TEST_PG_URL")
    if not url:
        if IN_CI:
            pytest.fail("TUNEFLOW_TEST_PG_URL is not set in CI: .ci/run must start PostgreSQL (infra/services.sh up).")
        pytest.skip("no PostgreSQL: run `make services-up` and export $(infra/services.sh env)")
    return url


@pytest.fixture
def pg_database(pg_url: str) -> str:
    """A fresh database per test, so studies never collide."""
    import sqlalchemy as sa

    name = f"t_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    yield pg_url.rsplit("/", 1)[0] + "/" + name
    engine = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


@pytest.fixture(scope="session")
def dask_cluster():
    """One process-based LocalCluster for the whole session (2 single-threaded workers)."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        yield cluster


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory: pytest.TempPathFactory):
    """A temporary Prefect API and database for flow tests."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def tuneflow_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Embedded defaults (store, journal, MLflow) under a fresh folder."""
    home = tmp_path / "home"
    monkeypatch.setenv("TUNEFLOW_HOME", str(home))
    for var in ("TUNEFLOW_STORE", "TUNEFLOW_STORAGE", "TUNEFLOW_MLFLOW_TRACKING_URI", "TUNEFLOW_DASK_ADDRESS"):
        monkeypatch.delenv(var, raising=False)
    return home


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """The installed `tuneflow` command in a subprocess, as a user runs it."""
    exe = Path(sys.executable).with_name("tuneflow")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}, cwd=REPO)
