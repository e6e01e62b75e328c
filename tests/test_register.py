"""tasks.register against a real SQLite MLflow and real XGBoost models trained on real shards."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from scipy.stats import rankdata

from tasks import register
from tasks.contracts import trial_request
from tasks.engine import resident
from tasks.engine.encoding import to_matrix
from tasks.engine.shards import load_split_frame
from tasks.errors import TuneflowError
from tests.conftest import CHURN_PROFILE, make_csv, shard_csv

GOOD = {"max_depth": 4, "eta": 0.1}
BAD = {"max_depth": 1, "eta": 0.1}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Shards of a 5000-row churn sample, a good and a bad model, and one SQLite MLflow."""
    tmp = tmp_path_factory.mktemp("register")
    csv = make_csv(tmp / "churn.csv", 5000, seed=7)
    manifest = shard_csv(csv, "churned", "binary", CHURN_PROFILE, str(tmp / "store"), name="churn", row_key="customer_id")

    def train(params: dict, rounds: int) -> dict:
        request = trial_request(
            manifest, {"objective": "binary:logistic", "eval_metric": "auc", **params}, device="cpu", nthread=2,
            num_boost_round=rounds, early_stopping_rounds=10,
        )
        result = resident.run_trial(request)
        return {"value": result.value, "model_ubj": result.model_ubj, "params": params}

    good, bad = train(GOOD, 100), train(BAD, 2)
    resident.release_data()
    X_test, y_test = load_split_frame(manifest, "test", {})
    return {
        "manifest": manifest, "good": good, "bad": bad, "X_test": X_test, "y_test": y_test,
        "tracking_uri": f"sqlite:///{tmp / 'mlflow.db'}", "artifact_root": (tmp / "mlartifacts").as_uri(),
    }


def evaluator(world: dict, metric: str = "auc", split: str = "test"):
    return functools.partial(resident.evaluate_model, manifest=world["manifest"], metric=metric, storage_options={}, split=split)


def reg(world: dict, model: dict, trial_number: int, model_name: str, *, metric: str = "auc", direction: str = "maximize", evaluate=None, **extra) -> dict:
    return register.register_best_model(
        model_ubj=model["model_ubj"], manifest=world["manifest"], metric=metric, direction=direction,
        evaluate=evaluate or evaluator(world, metric), params=model["params"], valid_value=model["value"],
        study_name="study-1", trial_number=trial_number, model_name=model_name,
        tracking_uri=world["tracking_uri"], artifact_root=world["artifact_root"], **extra,
    )


def client(world: dict) -> MlflowClient:
    return MlflowClient(tracking_uri=world["tracking_uri"], registry_uri=world["tracking_uri"])


def auc(y: np.ndarray, score: np.ndarray) -> float:
    """Mann-Whitney AUC with tied scores averaged, as XGBoost computes it."""
    ranks = rankdata(score)
    pos = y == 1
    return float((ranks[pos].sum() - pos.sum() * (pos.sum() + 1) / 2) / (pos.sum() * (~pos).sum()))


def test_first_registration_becomes_champion_and_predicts(world):
    plots = {"optimization_history.html": "<html><body>history</body></html>"}
    r = reg(world, world["good"], 0, "first", plots=plots, validation_report={"success": True, "failed": []}, input_example=world["X_test"].head(5))

    assert r["alias"] == "champion" and r["version"] == 1 and r["reused"] is False
    assert r["model_uri"] == "models:/first/1"
    assert r["previous_champion_version"] is None and r["previous_champion_test_value"] is None
    assert r["test_value"] == pytest.approx(evaluator(world)(world["good"]["model_ubj"]))

    booster = register.load_registered_booster("models:/first@champion", world["tracking_uri"])
    manifest = register.load_registered_manifest("models:/first@champion", world["tracking_uri"])
    assert manifest == world["manifest"]
    proba = register.predict_frame(booster, world["X_test"], manifest)
    assert proba.shape == (len(world["y_test"]),)
    assert np.all((proba > 0) & (proba < 1)) and proba.std() > 0.01
    assert auc(world["y_test"], proba) == pytest.approx(r["test_value"], abs=1e-6)
    assert evaluator(world)(bytes(booster.save_raw("ubj"))) == pytest.approx(r["test_value"])

    # Same predictions from raw strings, and from the registered pyfunc model on raw rows.
    raw = world["X_test"].astype({c: "object" for c in ("region", "plan", "device")})
    np.testing.assert_array_equal(register.predict_frame(booster, raw, manifest), proba)
    pyfunc = mlflow.pyfunc.load_model("models:/first@champion")
    np.testing.assert_allclose(pyfunc.predict(raw), proba, rtol=1e-6)

    c = client(world)
    run = c.get_run(r["run_id"])
    assert run.data.params["max_depth"] == "4"
    assert run.data.metrics["test_auc"] == pytest.approx(r["test_value"])
    assert run.data.metrics["valid_auc"] == pytest.approx(world["good"]["value"])
    assert run.data.tags["tuneflow.data_fingerprint"] == world["manifest"]["fingerprint"]
    assert run.data.tags["tuneflow.trial_number"] == "0" and run.data.tags["tuneflow.study"] == "study-1"
    artifacts = {a.path for d in ("dataset", "validation", "plots") for a in c.list_artifacts(r["run_id"], d)}
    assert artifacts == {"dataset/manifest.json", "validation/report.json", "plots/optimization_history.html"}
    model_dir = Path(mlflow.artifacts.download_artifacts("models:/first/1", tracking_uri=world["tracking_uri"], registry_uri=world["tracking_uri"]))
    names = {p.relative_to(model_dir).as_posix() for p in model_dir.rglob("*") if p.is_file()}
    assert {"artifacts/model.ubj", "artifacts/manifest.json", "pyfunc_model.py"} <= names  # booster, manifest, code
    assert not any(n.endswith((".pkl", ".pickle")) for n in names)
    version = c.get_model_version("first", "1")
    assert version.tags["tuneflow.trial_key"] == register.trial_key("study-1", 0, world["manifest"]["fingerprint"])
    assert version.tags["tuneflow.data_fingerprint"] == world["manifest"]["fingerprint"]
    assert float(version.tags["test_auc"]) == pytest.approx(r["test_value"])


def test_same_trial_registered_twice_is_one_version(world):
    first = reg(world, world["good"], 3, "twice")
    again = reg(world, world["good"], 3, "twice")

    assert again == {**first, "reused": True}
    c = client(world)
    assert [int(v.version) for v in c.search_model_versions("name='twice'")] == [1]
    key = register.trial_key("study-1", 3, world["manifest"]["fingerprint"])
    experiment = c.get_experiment_by_name("tuneflow")
    assert len(c.search_runs([experiment.experiment_id], f"tags.`tuneflow.trial_key` = '{key}'")) == 1


@pytest.mark.parametrize(("metric", "direction"), [("auc", "maximize"), ("logloss", "minimize")])
def test_worse_model_becomes_challenger_and_champion_stays(world, metric, direction):
    name = f"worse-{metric}"
    good = reg(world, world["good"], 0, name, metric=metric, direction=direction)
    bad = reg(world, world["bad"], 1, name, metric=metric, direction=direction)

    assert register.is_better(good["test_value"], bad["test_value"], direction)  # real scores, real gap
    assert (good["alias"], bad["alias"]) == ("champion", "challenger")
    assert bad["previous_champion_version"] == good["version"] == 1
    assert bad["previous_champion_test_value"] == pytest.approx(good["test_value"])
    c = client(world)
    assert int(c.get_model_version_by_alias(name, "champion").version) == 1
    assert int(c.get_model_version_by_alias(name, "challenger").version) == 2


def test_better_model_takes_champion(world):
    bad = reg(world, world["bad"], 0, "better")
    good = reg(world, world["good"], 1, "better")

    assert good["test_value"] > bad["test_value"] + 0.02
    assert (bad["alias"], good["alias"]) == ("champion", "champion")
    assert good["previous_champion_version"] == 1 and good["version"] == 2
    assert good["previous_champion_test_value"] == pytest.approx(bad["test_value"])
    assert int(client(world).get_model_version_by_alias("better", "champion").version) == 2
    # Re-registering the demoted trial changes nothing and reports it is no longer champion.
    assert reg(world, world["bad"], 0, "better")["alias"] == "challenger"
    assert int(client(world).get_model_version_by_alias("better", "champion").version) == 2


def test_champion_is_rescored_on_the_current_test_split(world):
    # The old champion's recorded score (0.99) came from other data; only a re-score is comparable.
    old = reg(world, world["bad"], 0, "rescore", evaluate=lambda _: 0.99)
    new = reg(world, world["good"], 1, "rescore")

    assert old["test_value"] == 0.99
    assert new["previous_champion_test_value"] == pytest.approx(evaluator(world)(world["bad"]["model_ubj"]))
    assert new["alias"] == "champion"


def test_interrupted_registration_is_completed_not_duplicated(world):
    first = reg(world, world["good"], 0, "interrupted")
    c = client(world)
    # As if the process died after creating the version, before the alias decision.
    c.delete_registered_model_alias("interrupted", "champion")
    for tag in (register.TAG_PREVIOUS_CHAMPION, register.TAG_PREVIOUS_CHAMPION_VALUE):
        c.delete_model_version_tag("interrupted", "1", tag)

    again = reg(world, world["good"], 0, "interrupted")
    assert again["reused"] is True and again["version"] == first["version"] and again["alias"] == "champion"
    assert [int(v.version) for v in c.search_model_versions("name='interrupted'")] == [1]


def test_encoding_matches_training_and_rejects_bad_input(world):
    manifest, X = world["manifest"], world["X_test"].head(50)
    matrix = to_matrix(X, manifest["features"])
    encoded = register.encoded_features(X, manifest)
    np.testing.assert_array_equal(encoded.to_numpy(), matrix)
    np.testing.assert_array_equal(register.encoded_features(encoded, manifest).to_numpy(), matrix)  # idempotent
    unknown = X.astype({"region": "object"}).assign(region="atlantis")
    assert np.isnan(register.encoded_features(unknown, manifest)["region"]).all()
    with pytest.raises(TuneflowError, match="lacks feature columns"):
        register.encoded_features(X.drop(columns=["plan"]), manifest)
    with pytest.raises(TuneflowError, match="direction"):
        reg(world, world["good"], 0, "nope", direction="up")


def test_champion_on_other_features_is_not_replaced_silently(world):
    """A champion trained on another feature set cannot be scored on this split: no crash, challenger."""
    reg(world, world["bad"], 0, "schema-change")
    real = evaluator(world)
    champion_bytes = world["bad"]["model_ubj"]

    def evaluate(model: bytes) -> float:
        if model == champion_bytes:  # what XGBoost says when the features differ
            raise ValueError("feature_names mismatch: training data did not have the following fields: customer_id")
        return real(model)

    new = reg(world, world["good"], 1, "schema-change", evaluate=evaluate)
    assert new["alias"] == "challenger" and new["version"] == 2
    assert int(client(world).get_model_version_by_alias("schema-change", "champion").version) == 1


def test_a_fresh_process_loads_the_registered_model(world, tmp_path):
    """As the README shows it: a new Python process, nothing set but the arguments."""
    reg(world, world["good"], 0, "fresh")
    code = (
        "import sys; from tasks.register import load_registered_booster as load; "
        "b = load('models:/fresh@champion', sys.argv[1]); print(b.num_boosted_rounds())"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    proc = subprocess.run([sys.executable, "-c", code, world["tracking_uri"]], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert int(proc.stdout.split()[-1]) > 0
    assert not (tmp_path / "mlflow.db").exists()  # nothing written where the process happened to run
