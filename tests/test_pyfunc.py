"""The registered model takes raw rows: in-process pyfunc and `mlflow models serve` (tasks/pyfunc_model.py)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import mlflow.xgboost
import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from mlflow.tracking import MlflowClient

from tasks import pyfunc_model, register
from tasks.contracts import trial_request
from tasks.engine import resident
from tasks.engine.encoding import encode_features
from tasks.engine.shards import load_split_frame
from tests.conftest import CHURN_PROFILE, make_csv, shard_csv

CATEGORICAL = ("region", "plan", "device")
NAME = "raw-rows"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A model trained on a 2000-row churn sample, registered (version 1, champion) in a SQLite MLflow."""
    tmp = tmp_path_factory.mktemp("pyfunc")
    csv = make_csv(tmp / "churn.csv", 2000, seed=11)
    manifest = shard_csv(csv, "churned", "binary", CHURN_PROFILE, str(tmp / "store"), name="churn", row_key="customer_id")
    params = {"max_depth": 4, "eta": 0.2}
    request = trial_request(
        manifest, {"objective": "binary:logistic", "eval_metric": "auc", **params}, device="cpu", nthread=2,
        num_boost_round=30, early_stopping_rounds=10,
    )
    result = resident.run_trial(request)
    resident.release_data()
    X_test, _ = load_split_frame(manifest, "test", {})
    tracking_uri = f"sqlite:///{tmp / 'mlflow.db'}"
    reg = register.register_best_model(
        model_ubj=result.model_ubj, manifest=manifest, metric="auc", direction="maximize", evaluate=lambda _: 0.5,
        params=params, valid_value=result.value, study_name="study-pyfunc", trial_number=0, model_name=NAME,
        tracking_uri=tracking_uri, artifact_root=(tmp / "mlartifacts").as_uri(), input_example=X_test.head(5),
    )
    assert reg["version"] == 1 and reg["alias"] == "champion"
    booster = register.load_registered_booster(f"models:/{NAME}@champion", tracking_uri)
    return {"manifest": manifest, "X_test": X_test, "tracking_uri": tracking_uri, "booster": booster, "model_ubj": result.model_ubj, "tmp": tmp}


def raw_rows(world: dict, n: int = 40) -> pd.DataFrame:
    """Test rows as a caller has them: strings for categoricals, with an unseen category and missing values."""
    raw = world["X_test"].head(n).astype({c: "object" for c in CATEGORICAL}).reset_index(drop=True)
    raw[list(CATEGORICAL)] = raw[list(CATEGORICAL)].astype(str).astype(object)
    raw.loc[0, "region"] = "atlantis"  # not in the manifest's categories
    raw.loc[1, "plan"] = None  # missing categorical
    numeric = next(f["name"] for f in world["manifest"]["features"] if f["kind"] == "numeric")
    raw.loc[2, numeric] = np.nan  # missing numeric
    return raw


def test_registered_pyfunc_predicts_raw_rows(world):
    with _registry(world["tracking_uri"]):
        model = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    raw = raw_rows(world)
    expected = register.predict_frame(world["booster"], raw, world["manifest"])
    got = model.predict(raw)
    assert got.shape == (len(raw),)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert np.all((got > 0) & (got < 1)) and got.std() > 0.01
    # The unseen category scores as a missing one, exactly as predict_frame encodes it.
    missing_region = raw.head(1).assign(region=None)
    np.testing.assert_allclose(model.predict(raw.head(1)), model.predict(missing_region), rtol=1e-6)
    # Frames read from the shards hold pandas `category` columns, which MLflow's schema enforcement
    # rejects for a string column: they go in as strings.
    shards = world["X_test"].head(40)
    as_strings = shards.astype({c: "string" for c in CATEGORICAL})
    np.testing.assert_allclose(model.predict(as_strings), register.predict_frame(world["booster"], shards, world["manifest"]), rtol=1e-6)

    signature = model.metadata.get_input_schema()
    kinds = {c.name: c.type.name for c in signature.inputs}
    assert {kinds[c] for c in CATEGORICAL} == {"string"}
    assert all(kinds[f["name"]] == "double" for f in world["manifest"]["features"] if f["kind"] == "numeric")
    assert not any(c.required for c in signature.inputs)


def test_model_encoding_is_the_training_encoding(world):
    """tasks/pyfunc_model.py restates encode_features (it must import without tuneflow): they agree."""
    features = world["manifest"]["features"]
    X = world["X_test"].head(60)
    raw = raw_rows(world, 60)
    codes = pd.DataFrame(encode_features(X, features), columns=[f["name"] for f in features])
    codes.loc[0, "region"] = 99  # out-of-range code
    for frame in (X, raw, codes, X.astype({c: "string" for c in CATEGORICAL})):
        np.testing.assert_array_equal(pyfunc_model.encode(frame, features), encode_features(frame, features))
    with pytest.raises(ValueError, match="lacks feature columns"):
        pyfunc_model.encode(X.drop(columns=["plan"]), features)


def test_older_xgboost_flavor_versions_still_load(world):
    """Versions registered before the pyfunc model (xgboost flavor) still give their booster."""
    client = MlflowClient(tracking_uri=world["tracking_uri"], registry_uri=world["tracking_uri"])
    with _registry(world["tracking_uri"]), mlflow.start_run(experiment_id=client.get_experiment_by_name("tuneflow").experiment_id):
        booster = xgb.Booster(model_file=bytearray(world["model_ubj"]))
        info = mlflow.xgboost.log_model(booster, name="model", model_format="ubj", pip_requirements=["xgboost"])
        version = mlflow.register_model(info.model_uri, "legacy")
    loaded = register.load_registered_booster(f"models:/legacy/{version.version}", world["tracking_uri"])
    assert bytes(loaded.save_raw("ubj")) == bytes(booster.save_raw("ubj"))
    new = register.load_registered_booster(f"models:/{NAME}/1", world["tracking_uri"])
    assert bytes(new.save_raw("ubj")) == bytes(booster.save_raw("ubj"))


def test_mlflow_models_serve_scores_raw_rows(world, tmp_path):
    raw = raw_rows(world, 20)
    with _registry(world["tracking_uri"]):
        expected = mlflow.pyfunc.load_model(f"models:/{NAME}@champion").predict(raw)
    bindir = Path(sys.executable).parent
    port = _free_port()
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}", "MLFLOW_TRACKING_URI": world["tracking_uri"]}
    log = open(tmp_path / "serve.log", "wb")
    proc = subprocess.Popen(
        [str(bindir / "mlflow"), "models", "serve", "-m", f"models:/{NAME}/1", "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "-w", "1"],
        env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        _wait_ready(proc, port, tmp_path / "serve.log", timeout=60)
        records = raw.astype(object).where(raw.notna(), None)
        payload = {"dataframe_split": {"columns": list(raw.columns), "data": records.values.tolist()}}
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations", data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            served = np.asarray(json.loads(response.read())["predictions"], dtype=np.float64)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # the server and its uvicorn worker: this session only
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        log.close()
    np.testing.assert_allclose(served, expected, rtol=1e-6)


class _registry:
    """Point the fluent API (models:/ URIs) at the test's SQLite store, and restore it afterwards."""

    def __init__(self, uri: str) -> None:
        self.uri = uri

    def __enter__(self) -> None:
        self.before = (mlflow.get_tracking_uri(), mlflow.get_registry_uri())
        mlflow.set_tracking_uri(self.uri)
        mlflow.set_registry_uri(self.uri)

    def __exit__(self, *exc) -> None:
        mlflow.set_tracking_uri(self.before[0])
        mlflow.set_registry_uri(self.before[1])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(proc: subprocess.Popen, port: int, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"mlflow models serve exited {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"mlflow models serve not ready in {timeout}s:\n{log.read_text(errors='replace')[-3000:]}")
