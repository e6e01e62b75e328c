"""Register the best trial's model in MLflow and move the `champion` alias only when it wins.

MLflow 3 API only: model versions with aliases (`champion`, `challenger`), no stages; nothing is
pickled.

The registered model takes RAW rows. It is a pyfunc model logged from code (tasks/pyfunc_model.py,
MLflow "models from code") with two artifacts: the booster in XGBoost's native UBJSON and the
dataset manifest; its `predict` encodes the raw columns with the manifest (the training rule) and
returns `Booster.predict`: binary -> probability of the positive class, multiclass -> class
probabilities (n, k) in manifest["classes"] order, regression -> values. Its signature is the raw
feature columns: strings for categoricals, doubles for numerics, missing values allowed (an
unknown category scores as missing). So, in-process, in `mlflow models serve` and over REST:

    mlflow.pyfunc.load_model("models:/churn@champion").predict(raw_df)
    # or with the booster itself:
    booster = load_registered_booster("models:/churn@champion", tracking_uri)
    manifest = load_registered_manifest("models:/churn@champion", tracking_uri)
    proba = predict_frame(booster, raw_df, manifest)

Versions registered before this (the xgboost flavor, encoded-feature input) still load with
`load_registered_booster`.
"""

from __future__ import annotations

import hashlib
import logging
import json
import math
import os
import posixpath
import re
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Set before mlflow is imported: GitPython warns at import time when no git binary is found,
# and tqdm progress bars on artifact downloads only clutter flow logs.
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

import mlflow  # noqa: E402
import mlflow.pyfunc  # noqa: E402
import mlflow.xgboost  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import xgboost as xgb  # noqa: E402
from mlflow.entities.model_registry import ModelVersion  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402
from mlflow.models import Model, ModelSignature  # noqa: E402
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402
from mlflow.types.schema import ColSpec, Schema, TensorSpec  # noqa: E402

from tasks.errors import TuneflowError  # noqa: E402
from tasks.redact import redact, redact_mapping  # noqa: E402
from tasks.contracts import DatasetManifest, RegisteredModel  # noqa: E402
from tasks.engine.encoding import encode_features, feature_names  # noqa: E402
from tasks.engine.resident import predict_matrix  # noqa: E402

CHAMPION = "champion"
CHALLENGER = "challenger"
MODEL_ARTIFACT = "model"
# The pyfunc model's code (models from code). Not imported here: it calls mlflow.models.set_model.
MODEL_CODE = str(Path(__file__).resolve().with_name("pyfunc_model.py"))
BOOSTER_KEY, MANIFEST_KEY = "booster", "manifest"  # its artifact keys: pyfunc_model.BOOSTER_ARTIFACT, MANIFEST_ARTIFACT
BOOSTER_FILE = "model.ubj"  # the booster inside the model's artifacts/ (XGBoost's native UBJSON)
MANIFEST_ARTIFACT = "dataset/manifest.json"
VALIDATION_ARTIFACT = "validation/report.json"
PLOTS_DIR = "plots"
SCHEDULE_ARTIFACT = "training/schedule.json"
TAG_SCHEDULE = "tuneflow.schedule"

TAG_TRIAL_KEY = "tuneflow.trial_key"
TAG_FINGERPRINT = "tuneflow.data_fingerprint"
TAG_DATASET = "tuneflow.dataset"
TAG_STUDY = "tuneflow.study"
TAG_TRIAL = "tuneflow.trial_number"
TAG_METRIC = "tuneflow.metric"
TAG_DIRECTION = "tuneflow.direction"
TAG_TEST_VALUE = "tuneflow.test_value"
# Written once the alias decision is made: a version without it was interrupted mid-registration.
TAG_PREVIOUS_CHAMPION = "tuneflow.previous_champion_version"
TAG_PREVIOUS_CHAMPION_VALUE = "tuneflow.previous_champion_test_value"


logger = logging.getLogger(__name__)


def trial_key(study_name: str, trial_number: int, fingerprint: str) -> str:
    """Stable id of one trial on one dataset version (a hash: safe inside MLflow filter strings)."""
    payload = json.dumps([study_name, int(trial_number), fingerprint])
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def ensure_sqlite_tracking_db(tracking_uri: str) -> None:
    """Create an embedded SQLite tracking database atomically.

    MLflow creates its tables on first use with 300+ migration statements that SQLite commits one
    by one; a process killed in the middle leaves a database no later run can open ("table ...
    already exists"). So the first use runs the migrations in a temporary file and renames it.
    """
    if not tracking_uri.startswith("sqlite:///"):
        return
    path = Path(tracking_uri[len("sqlite:///"):])
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.init-*"):  # left by a run killed while creating it
        if time.time() - stale.stat().st_mtime > 600:
            stale.unlink(missing_ok=True)
    tmp = path.with_name(f".{path.name}.init-{uuid.uuid4().hex[:12]}")
    try:
        uri = f"sqlite:///{tmp}"
        MlflowClient(tracking_uri=uri, registry_uri=uri).search_registered_models(max_results=1)
        os.replace(tmp, path)  # another run may have created it meanwhile: both are complete, either wins
    finally:
        tmp.unlink(missing_ok=True)


def is_better(new: float, old: float, direction: str) -> bool:
    """True when `new` strictly beats `old` in `direction`; NaN never wins."""
    if math.isnan(new):
        return False
    if math.isnan(old):
        return True
    return new > old if direction == "maximize" else new < old


def encoded_features(df: pd.DataFrame, manifest: DatasetManifest) -> pd.DataFrame:
    """The model's input frame: float32 columns, categoricals as codes in the manifest's order."""
    return pd.DataFrame(_encode(df, manifest), columns=feature_names(manifest["features"]), index=df.index)


def predict_frame(booster: xgb.Booster, df: pd.DataFrame, manifest: DatasetManifest) -> np.ndarray:
    """Predictions (probabilities for classification) for a raw-feature or encoded frame."""
    return predict_matrix(booster, _encode(df, manifest), manifest)


def load_registered_booster(model_uri: str, tracking_uri: str) -> xgb.Booster:
    """The Booster behind a registered model URI ('models:/<name>@<alias>' or 'models:/<name>/<v>').

    Reads the booster artifact of the raw-row pyfunc model, or the model of a version logged
    earlier with the xgboost flavor."""
    # Resolved through an explicit client: MLflow 3.17 resolves a models:/ URI with the process-wide
    # registry URI and ignores the one passed in (a fresh process would look in ./mlflow.db).
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    version = _resolve_model_uri(client, model_uri)
    source = client.get_model_version_download_uri(version.name, version.version)
    with tempfile.TemporaryDirectory(prefix="tuneflow-model-") as tmp:
        local = mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=tmp, tracking_uri=tracking_uri)
        flavors = Model.load(local).flavors
        if "xgboost" in flavors:  # registered before the raw-row pyfunc model
            model = mlflow.xgboost.load_model(local)
            return model if isinstance(model, xgb.Booster) else model.get_booster()
        artifacts = flavors.get("python_function", {}).get("artifacts", {})
        if BOOSTER_KEY not in artifacts:
            raise TuneflowError(f"{model_uri} holds no XGBoost booster.", "register it with tuneflow (tasks.register).")
        booster = xgb.Booster()
        booster.load_model(os.path.join(local, artifacts[BOOSTER_KEY]["path"]))
        return booster


def load_registered_manifest(model_uri: str, tracking_uri: str) -> dict[str, Any]:
    """The dataset manifest logged with a registered model version (it defines the encoding)."""
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    version = _resolve_model_uri(client, model_uri)
    with tempfile.TemporaryDirectory(prefix="tuneflow-manifest-") as tmp:
        path = client.download_artifacts(version.run_id, MANIFEST_ARTIFACT, tmp)
        with open(path, encoding="utf-8") as f:
            return json.load(f)


def register_best_model(
    *,
    model_ubj: bytes,
    manifest: dict[str, Any],
    metric: str,
    direction: str,
    evaluate: Callable[[bytes], float],
    params: dict[str, Any],
    valid_value: float,
    study_name: str,
    trial_number: int,
    model_name: str,
    tracking_uri: str,
    artifact_root: str | None,
    validation_report: dict[str, Any] | None = None,
    plots: dict[str, str] | None = None,
    input_example: pd.DataFrame | None = None,
    experiment_name: str = "tuneflow",
    schedule: list[dict[str, Any]] | None = None,
    run_tags: dict[str, str] | None = None,
    run_metrics: dict[str, float] | None = None,
) -> RegisteredModel:
    """Log and register the best trial's model; make it champion only if it beats the current one.
    `run_tags` are added to the MLflow run (the Prefect flow run that made it)."""
    if direction not in ("maximize", "minimize"):
        raise TuneflowError(f"Unknown optimisation direction '{direction}'.", "use 'maximize' or 'minimize'.")
    # The fluent API (start_run, log_model, register_model) only reads the process-wide URIs.
    ensure_sqlite_tracking_db(tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    key = trial_key(study_name, trial_number, manifest["fingerprint"])

    existing = _find_version(client, model_name, key)
    if existing is not None and TAG_PREVIOUS_CHAMPION in existing.tags:
        return _reused_result(client, existing, model_name)

    test_value = float(evaluate(model_ubj))
    if existing is None:
        version = _log_and_register(
            client,
            model_ubj=model_ubj,
            manifest=manifest,
            metric=metric,
            direction=direction,
            test_value=test_value,
            params=params,
            valid_value=valid_value,
            study_name=study_name,
            trial_number=trial_number,
            key=key,
            model_name=model_name,
            artifact_root=artifact_root,
            validation_report=validation_report,
            plots=plots,
            input_example=input_example,
            experiment_name=experiment_name,
            schedule=schedule,
            run_tags=run_tags,
            run_metrics=run_metrics,
        )
    else:
        version = existing  # registered before but interrupted before the alias decision

    alias, previous, previous_value = _decide_alias(client, tracking_uri, model_name, version, test_value, direction, evaluate)
    return {
        "model_name": model_name,
        "version": int(version.version),
        "alias": alias,
        "run_id": version.run_id,
        "model_uri": f"models:/{model_name}/{version.version}",
        "test_value": test_value,
        "previous_champion_version": previous,
        "previous_champion_test_value": previous_value,
        "reused": existing is not None,
    }


def _encode(df: pd.DataFrame, manifest: DatasetManifest) -> np.ndarray:
    """Raw (strings/categories) or already-encoded (numeric codes) columns -> the training encoding."""
    missing = [f["name"] for f in manifest["features"] if f["name"] not in df.columns]
    if missing:
        raise TuneflowError(f"The frame lacks feature columns {missing}.", "pass every feature column the model was trained on.")
    return encode_features(df, manifest["features"])


def raw_example(df: pd.DataFrame, manifest: DatasetManifest) -> pd.DataFrame:
    """Feature columns as the registered model takes them: categoricals as strings (None when
    missing), numerics as float64 (NaN when missing); what MLflow stores as the input example."""
    cols = {}
    for feat in manifest["features"]:
        col = df[feat["name"]]
        if feat["kind"] == "categorical":
            if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):  # codes
                codes = col.to_numpy(dtype=np.float64, na_value=np.nan)
                cats = feat["categories"]
                col = pd.Series([cats[int(c)] if 0 <= c < len(cats) else None for c in codes], index=df.index, dtype=object)
            else:
                col = col.astype("string").astype(object).where(col.notna(), None)
        else:
            col = pd.Series(col.to_numpy(dtype=np.float64, na_value=np.nan), index=df.index)
        cols[feat["name"]] = col
    return pd.DataFrame(cols, index=df.index)


def _missing_row(manifest: DatasetManifest) -> pd.DataFrame:
    return pd.DataFrame({f["name"]: pd.Series([None], dtype=object if f["kind"] == "categorical" else np.float64) for f in manifest["features"]})


def _signature(booster: xgb.Booster, manifest: dict[str, Any], example: pd.DataFrame | None) -> ModelSignature:
    """Raw columns (string categoricals, double numerics, all optional) and the booster's output."""
    features = manifest["features"]
    inputs = Schema([ColSpec("string" if f["kind"] == "categorical" else "double", f["name"], required=False) for f in features])
    out = predict_frame(booster, example if example is not None else _missing_row(manifest), manifest)
    return ModelSignature(inputs=inputs, outputs=Schema([TensorSpec(out.dtype, (-1, *out.shape[1:]))]))


def _pip_requirements() -> list[str]:
    """What the model's code imports, pinned to the versions that logged it."""
    from importlib.metadata import version

    return [f"{pkg}=={version(pkg)}" for pkg in ("mlflow", "xgboost", "pandas", "numpy")]


def _metric_key(prefix: str, metric: str) -> str:
    # XGBoost metric names may hold '@' (e.g. 'ndcg@5', 'error@0.7'); MLflow keys may not.
    return f"{prefix}_{re.sub(r'[^0-9A-Za-z_./ -]', '_', metric)}"


def _experiment_id(client: MlflowClient, name: str, artifact_root: str | None) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_root)
    except MlflowException as exc:  # another flow created it between our two calls
        if exc.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
            raise
        return client.get_experiment_by_name(name).experiment_id


def _find_version(client: MlflowClient, model_name: str, key: str) -> ModelVersion | None:
    """The version of `model_name` registered for this trial key, if any (the oldest one)."""
    found = client.search_model_versions(f"tags.`{TAG_TRIAL_KEY}` = '{key}'")
    # Filter the name here rather than in the filter string, which has no quote escaping.
    mine = sorted((v for v in found if v.name == model_name), key=lambda v: int(v.version))
    return mine[0] if mine else None


def _log_and_register(
    client: MlflowClient,
    *,
    model_ubj: bytes,
    manifest: dict[str, Any],
    metric: str,
    direction: str,
    test_value: float,
    params: dict[str, Any],
    valid_value: float,
    study_name: str,
    trial_number: int,
    key: str,
    model_name: str,
    artifact_root: str | None,
    validation_report: dict[str, Any] | None,
    plots: dict[str, str] | None,
    input_example: pd.DataFrame | None,
    experiment_name: str,
    schedule: list[dict[str, Any]] | None = None,
    run_tags: dict[str, str] | None = None,
    run_metrics: dict[str, float] | None = None,
) -> ModelVersion:
    """One MLflow run holding params, metrics, data lineage, plots and the model; one new version."""
    booster = xgb.Booster(model_file=bytearray(model_ubj))
    # Raw rows; without any, one row with every feature missing (still a valid request to show).
    example = raw_example(input_example.head(5) if input_example is not None else _missing_row(manifest), manifest)
    tags = {
        TAG_TRIAL_KEY: key,
        TAG_FINGERPRINT: manifest["fingerprint"],
        TAG_DATASET: manifest.get("name", ""),
        TAG_STUDY: study_name,
        TAG_TRIAL: str(trial_number),
        TAG_METRIC: metric,
        TAG_DIRECTION: direction,
        **(run_tags or {}),
    }
    tags = {k: redact(str(v)) for k, v in tags.items()}  # no URL password in MLflow (tasks/redact.py)
    with mlflow.start_run(
        experiment_id=_experiment_id(client, experiment_name, artifact_root),
        run_name=f"{study_name}-trial-{trial_number}",
        tags=tags,
    ):
        mlflow.log_params(redact_mapping(params))
        mlflow.log_metrics({_metric_key("test", metric): test_value, _metric_key("valid", metric): float(valid_value)})
        if run_metrics:  # what the trial and the study used (resources)
            mlflow.log_metrics({k: float(v) for k, v in run_metrics.items() if v is not None})
        mlflow.log_dict(manifest, MANIFEST_ARTIFACT)
        if validation_report is not None:
            mlflow.log_dict(validation_report, VALIDATION_ARTIFACT)
        if schedule:  # PBT: the parameters the booster was trained with, segment by segment
            mlflow.log_dict({"segments": schedule}, SCHEDULE_ARTIFACT)
            mlflow.set_tag(TAG_SCHEDULE, f"pbt, {len(schedule)} segments")
        for file_name, html in (plots or {}).items():
            base = posixpath.basename(file_name.replace("\\", "/"))  # no writing outside plots/
            mlflow.log_text(html, f"{PLOTS_DIR}/{base if base.endswith('.html') else base + '.html'}")
        with tempfile.TemporaryDirectory(prefix="tuneflow-log-") as tmp:
            booster_path = os.path.join(tmp, BOOSTER_FILE)
            with open(booster_path, "wb") as f:
                f.write(model_ubj)
            manifest_path = os.path.join(tmp, "manifest.json")
            with open(manifest_path, "w", encoding="utf-8") as f:
                json.dump(manifest, f)
            info = mlflow.pyfunc.log_model(
                name=MODEL_ARTIFACT,
                python_model=MODEL_CODE,  # models from code: the file is copied, nothing pickled
                artifacts={BOOSTER_KEY: booster_path, MANIFEST_KEY: manifest_path},
                signature=_signature(booster, manifest, example),
                input_example=example,
                # Pinned explicitly: inferring requirements reloads the model in a subprocess (seconds).
                pip_requirements=_pip_requirements(),
                metadata={
                    "tuneflow_input": "raw feature rows: categorical columns as strings, numerics as numbers, missing allowed",
                    "tuneflow_features": manifest["features"],
                    "tuneflow_data_fingerprint": manifest["fingerprint"],
                },
            )
        # register_model (not log_model's registered_model_name) so the trial-key tag lands in the
        # same transaction as the version: a retry can always find what an earlier try created.
        version = mlflow.register_model(
            info.model_uri,
            model_name,
            tags={
                TAG_TRIAL_KEY: key,
                TAG_FINGERPRINT: manifest["fingerprint"],
                TAG_STUDY: redact(study_name),
                TAG_TRIAL: str(trial_number),
                TAG_METRIC: metric,
                TAG_TEST_VALUE: repr(test_value),
                _metric_key("test", metric): repr(test_value),
            },
        )
    return client.get_model_version(model_name, version.version)


def _champion(client: MlflowClient, model_name: str) -> ModelVersion | None:
    try:
        return client.get_model_version_by_alias(model_name, CHAMPION)
    except MlflowException:  # no such alias (or model) yet
        return None


def _version_ubj(model_name: str, version: str, tracking_uri: str) -> bytes:
    booster = load_registered_booster(f"models:/{model_name}/{version}", tracking_uri)
    return bytes(booster.save_raw(raw_format="ubj"))


def _decide_alias(
    client: MlflowClient,
    tracking_uri: str,
    model_name: str,
    version: ModelVersion,
    test_value: float,
    direction: str,
    evaluate: Callable[[bytes], float],
) -> tuple[str, int | None, float | None]:
    """Move `champion` to `version` if it beats the champion on today's test split, else `challenger`."""
    champion = _champion(client, model_name)
    previous: int | None = None
    previous_value: float | None = None
    if champion is None or int(champion.version) == int(version.version):
        alias = CHAMPION
    else:
        previous = int(champion.version)
        # Re-scored, not read from its tags: the champion may have been tested on other data.
        try:
            previous_value = float(evaluate(_version_ubj(model_name, champion.version, tracking_uri)))
        except (ValueError, xgb.core.XGBoostError) as exc:
            # The champion was trained on other features (a schema change between dataset
            # versions): it cannot be scored on this test split, so nothing proves the new model
            # better. It stays challenger; promote it by hand if the new features are intended.
            logger.warning("champion v%s cannot be scored on this data (%s): new version is challenger", champion.version, str(exc).splitlines()[0][:200])
            previous_value = math.nan
        alias = CHAMPION if not math.isnan(previous_value) and is_better(test_value, previous_value, direction) else CHALLENGER
    # The alias before the decision tags: the tags mark the decision as applied (a retry that finds
    # them reuses it), so a crash between the two must leave no tags, and a retry decides again.
    client.set_registered_model_alias(model_name, alias, version.version)
    client.set_model_version_tag(model_name, version.version, TAG_PREVIOUS_CHAMPION_VALUE, "" if previous_value is None else repr(previous_value))
    client.set_model_version_tag(model_name, version.version, TAG_PREVIOUS_CHAMPION, "" if previous is None else str(previous))
    return alias, previous, previous_value


def _reused_result(client: MlflowClient, version: ModelVersion, model_name: str) -> RegisteredModel:
    """The answer for an already registered trial; `alias` is 'champion' only if it still holds it."""
    champion = _champion(client, model_name)
    previous = version.tags.get(TAG_PREVIOUS_CHAMPION, "")
    previous_value = version.tags.get(TAG_PREVIOUS_CHAMPION_VALUE, "")
    return {
        "model_name": model_name,
        "version": int(version.version),
        "alias": CHAMPION if champion is not None and int(champion.version) == int(version.version) else CHALLENGER,
        "run_id": version.run_id,
        "model_uri": f"models:/{model_name}/{version.version}",
        "test_value": float(version.tags[TAG_TEST_VALUE]),
        "previous_champion_version": int(previous) if previous else None,
        "previous_champion_test_value": float(previous_value) if previous_value else None,
        "reused": True,
    }


def _resolve_model_uri(client: MlflowClient, model_uri: str) -> ModelVersion:
    """'models:/<name>@<alias>' or 'models:/<name>/<version>' -> that ModelVersion."""
    if not model_uri.startswith("models:/"):
        raise TuneflowError(f"Not a registered model URI: {model_uri}.", "use models:/<name>@<alias> or models:/<name>/<version>.")
    rest = model_uri[len("models:/") :].rstrip("/")
    if "@" in rest:
        name, alias = rest.rsplit("@", 1)
        return client.get_model_version_by_alias(name, alias)
    name, _, version = rest.rpartition("/")
    if not name or not version.isdigit():
        raise TuneflowError(f"Not a registered model URI: {model_uri}.", "use models:/<name>@<alias> or models:/<name>/<version>.")
    return client.get_model_version(name, version)
