"""Secrets (tasks/redact.py): passwords in URLs are masked in logs, errors, reports, artifacts and
MLflow, and a canary password given to `tuneflow run --storage` (a real PostgreSQL role) and
canary AWS keys (a real S3 API, moto) are nowhere in what the run printed or left behind."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tasks import redact as redaction
from tasks.errors import TuneflowError
from tasks.redact import MASK, hold_password, redact, split_password, with_password
from tests.conftest import IN_CI, REPO, make_csv


@pytest.mark.parametrize("text,expected", [
    ("postgresql://tuneflow:hunter2@db:5432/tuneflow", "postgresql://tuneflow:***@db:5432/tuneflow"),
    ("postgresql+psycopg2://u:p@ss@host/db?x=a@b", "postgresql+psycopg2://u:***@host/db?x=a@b"),  # an unencoded '@' in it
    ("study in 'mysql://a:b@c/d', then redis://:tok@h", "study in 'mysql://a:***@c/d', then redis://:***@h"),
    ("MLflow at https://me:pw@mlflow.example:5000/api", "MLflow at https://me:***@mlflow.example:5000/api"),
    ("endpoint http://key:sec@minio:9000 s3://bucket/key", "endpoint http://key:***@minio:9000 s3://bucket/key"),
    ("host=db password=hunter2 user=x", "host=db password=*** user=x"),
    ('{"password": "x1", "aws_secret_access_key": "y"}', '{"password": "***", "aws_secret_access_key": "***"}'),
    ("AWS_SECRET_ACCESS_KEY=abc TUNEFLOW_RELAY_TOKEN=zz", "AWS_SECRET_ACCESS_KEY=*** TUNEFLOW_RELAY_TOKEN=***"),
    ("https://s3/x?X-Amz-Signature=abc&X-Amz-Security-Token=t", "https://s3/x?X-Amz-Signature=***&X-Amz-Security-Token=***"),
])
def test_redact_masks_passwords(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize("text", [
    "postgresql://tuneflow@db/tuneflow", "s3://bucket/prefix/x.csv", "sqlite:////tmp/x.db", "/data/a:b@c.csv", "C://x",
    "tuneflow-churn-1a2b3c4d-binary-auc-5e6f7a8b", "TUNEFLOW_STORAGE_PASSWORD_BLOCK=secret/tuneflow-postgres",
    "credentials from Prefect blocks: AWS_ACCESS_KEY_ID, PGPASSWORD", 'store {"aws_secret_access_key": ...} in the Secret block.',
])
def test_redact_leaves_the_rest(text: str) -> None:
    assert redact(text) == text


def test_environment_and_held_secrets_are_masked_anywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = f"Canary{uuid.uuid4().hex}"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setenv("PGPASSWORD", "tuneflow")  # short: masked in URLs only, or every 'tuneflow' would go
    assert redact(f"boto said {secret} and {secret.lower()}!") == f"boto said {MASK} and {secret.lower()}!"
    assert redact("model tuneflow-churn") == "model tuneflow-churn"
    held = f"Held-{uuid.uuid4().hex}"
    bare = hold_password(f"postgresql+psycopg2://canary:{held}@127.0.0.1:5432/db")
    assert bare == "postgresql+psycopg2://canary@127.0.0.1:5432/db" and held in with_password(bare)
    assert redact(f"psycopg2 said: password {held!r} rejected") == f"psycopg2 said: password {MASK!r} rejected"
    assert split_password("s3://bucket/x") == ("s3://bucket/x", None) and hold_password("s3://bucket/x") == "s3://bucket/x"


def test_errors_are_redacted() -> None:
    err = TuneflowError("Cannot open study storage postgresql://u:hunter2@db/x.", "check postgresql://u:hunter2@db/x.")
    assert "hunter2" not in str(err) and "hunter2" not in err.problem + err.fix and "u:***@db" in str(err)


def test_every_log_record_is_redacted(caplog: pytest.LogCaptureFixture) -> None:
    redaction.install_log_redaction()
    log = logging.getLogger("some.library")
    with caplog.at_level(logging.INFO):
        log.info("connecting to %s", "postgresql://u:hunter2@db/x")
        try:
            raise RuntimeError("could not reach https://me:hunter2@mlflow/api")
        except RuntimeError:
            log.exception("failed")
        logging.getLogger("prefect.flow_runs").warning("storage: mysql://a:hunter2@h/d")
    text = caplog.text + "".join(logging.Formatter().format(r) for r in caplog.records)
    assert "hunter2" not in text and text.count("***") >= 3 and "RuntimeError" in text


def test_a_held_password_reaches_postgresql(pg_database: str) -> None:
    from tasks.tuning.studies import open_storage

    bare = hold_password(pg_database)
    assert split_password(pg_database)[1] and split_password(bare)[1] is None
    open_storage(bare).get_all_studies()  # the password comes back in this process


def _grep(canaries: list[str], where: Path) -> list[str]:
    hits = []
    for path in where.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            hits += [f"{path}: {c[:6]}..." for c in canaries if c.encode() in data]
    return hits


def test_canary_secrets_leave_no_trace(tmp_path: Path, pg_url: str, s3_bucket: str, s3_endpoint: str) -> None:
    """`tuneflow run` end to end with a canary PostgreSQL password in --storage and canary AWS keys
    in the environment; then every output and every store is searched for them."""
    import boto3
    import sqlalchemy as sa

    password, key_id, secret = f"CanaryPw-{uuid.uuid4().hex[:16]}", f"AKIACANARY{uuid.uuid4().hex[:10].upper()}", f"CanarySecret{uuid.uuid4().hex}"
    canaries = [password, key_id, secret]
    role, db = f"canary_{uuid.uuid4().hex[:8]}", f"t_canary_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'"))
            conn.execute(sa.text(f'CREATE DATABASE "{db}"'))
    except sa.exc.ProgrammingError as exc:  # the test role may not create roles (infra/services.sh grants CREATEROLE)
        admin.dispose()
        if IN_CI:
            raise
        pytest.skip(f"cannot create a PostgreSQL role: {str(exc).splitlines()[0]}")
    base = sa.engine.make_url(pg_url)
    canary_url = base.set(username=role, password=password, database=db).render_as_string(hide_password=False)
    try:
        grant = sa.create_engine(base.set(database=db), isolation_level="AUTOCOMMIT")
        with grant.connect() as conn:
            conn.execute(sa.text(f"GRANT ALL ON SCHEMA public TO {role}"))
        grant.dispose()

        csv = make_csv(tmp_path / "data" / "churn.csv", 1500)
        home, prefect_home = tmp_path / "home", tmp_path / "prefect"
        env = {"TUNEFLOW_HOME": str(home), "PREFECT_HOME": str(prefect_home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
               "AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": secret, "AWS_DEFAULT_REGION": "us-east-1", "TUNEFLOW_S3_ENDPOINT_URL": s3_endpoint}
        ambient = ("PGPASSWORD", "AWS_SESSION_TOKEN", "TUNEFLOW_STORAGE", "TUNEFLOW_STORE", "TUNEFLOW_MLFLOW_TRACKING_URI", "TUNEFLOW_DASK_ADDRESS", "PREFECT_API_URL")
        proc = subprocess.run(
            [str(Path(sys.executable).with_name("tuneflow")), "run", "--data", str(csv), "--target", "churned", "--n-trials", "2", "--parallelism", "1",
             "--max-rounds", "10", "--storage", canary_url, "--store", f"s3://{s3_bucket}/store"],
            capture_output=True, text=True, timeout=600, cwd=REPO, env={**{k: v for k, v in os.environ.items() if k not in ambient}, **env},
        )
        assert proc.returncode == 0, redact(proc.stderr[-4000:])
        assert "warning: the --storage URL carries a password" in proc.stderr
        assert f"in postgresql+psycopg2://{role}@" in proc.stdout  # the study's storage, shown without its password

        outputs = {"stdout": proc.stdout, "stderr": proc.stderr}
        hits = [f"{name}: {c[:6]}..." for name, text in outputs.items() for c in canaries if c in text]
        hits += _grep(canaries, home)  # MLflow's database (runs, params, tags, registry) and artifacts
        hits += _grep(canaries, prefect_home)  # the run's Prefect database: flow run parameters, logs, artifacts, states
        assert (prefect_home / "prefect.db").exists() and (home / "mlflow.db").exists()
        assert role.encode() in b"".join(p.read_bytes() for p in prefect_home.glob("prefect.db*"))  # the search would see it

        s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
        keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=s3_bucket) for o in page.get("Contents", [])]
        assert any(k.endswith(".json") and "reports/" in k for k in keys)  # shards, models, reports, Prefect's results
        for k in keys:
            body = s3.get_object(Bucket=s3_bucket, Key=k)["Body"].read()
            hits += [f"s3://{s3_bucket}/{k}: {c[:6]}..." for c in canaries if c.encode() in body]

        study_db = sa.create_engine(canary_url)  # Optuna's tables: studies, trials, user and system attributes
        with study_db.connect() as conn:
            tables = [r[0] for r in conn.execute(sa.text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))]
            rows = "\n".join(r[0] for t in tables for r in conn.execute(sa.text(f'SELECT t::text FROM "{t}" t')))
        study_db.dispose()
        assert "tuneflow:identity" in rows and len(tables) > 5
        hits += [f"optuna tables: {c[:6]}..." for c in canaries if c in rows]
        assert not hits, hits
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
            conn.execute(sa.text(f"DROP ROLE IF EXISTS {role}"))
        admin.dispose()
