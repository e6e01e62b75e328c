"""The whole flow end to end under a Prefect test harness: real Dask, XGBoost, MLflow, S3, PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import boto3
import optuna
import pytest
from optuna.trial import TrialState

from flows.tune_xgboost import tune_xgboost
from tasks import objectstore as storage
from tasks import register
from tasks.engine.shards import load_split_frame
from tasks.settings import get_settings
from tasks.tuning.records import result_of

pytestmark = pytest.mark.usefixtures("prefect_harness")


def cached_task_runs(flow_run_name_or_id) -> dict[str, str]:
    """Task name -> state name for the task runs of the latest flow run."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        run = client.read_flow_runs(sort=FlowRunSort.START_TIME_DESC, limit=1)[0]
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
        return {tr.name.rsplit("-", 1)[0]: tr.state.name for tr in runs if not tr.name.startswith("trial")}


def run_flow(data: str, **kw) -> dict:
    args = dict(target="churned", row_key="customer_id", n_trials=4, parallelism=2, max_rounds=40, early_stopping_rounds=10, seed=3)
    return tune_xgboost(data=data, **{**args, **kw})


def test_local_end_to_end_then_cached_rerun(churn_csv: Path, tuneflow_home: Path, dask_cluster) -> None:
    result = run_flow(str(churn_csv), dask_address=dask_cluster.scheduler_address, expectations="data/expectations.yaml")

    manifest = storage.read_json(result["manifest_uri"])
    assert manifest["total_rows"] == 6000 and sum(result["rows"].values()) == 6000
    assert {f["name"] for f in manifest["features"]} >= {"tenure_months", "plan", "region"}

    storage_url = get_settings().resolved_storage()
    study = optuna.load_study(study_name=result["study_name"], storage=optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(storage_url)))
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]  # the default successive halving
    assert complete and len(complete) + len(pruned) == 4 and {t.number for t in study.trials} == {0, 1, 2, 3}
    assert result["pruned_this_run"] == len(pruned)
    assert result["best_value"] == pytest.approx(max(t.value for t in complete))
    assert all(storage.exists(result_of(t)["model_uri"]) for t in complete)

    reg = result["registered"]
    assert reg["version"] == 1 and reg["alias"] == "champion"
    booster = register.load_registered_booster(f"models:/{reg['model_name']}@champion", get_settings().resolved_tracking_uri())
    X, y = load_split_frame(manifest, "test", {})
    proba = register.predict_frame(booster, X, manifest)
    assert proba.shape == (len(X),) and 0 <= proba.min() and proba.max() <= 1
    assert reg["test_value"] > 0.6  # AUC on a learnable task
    assert storage.read_json(result["report_uri"])["best_trial"] == result["best_trial"]
    assert result["report_html_uri"] == result["report_uri"][:-len(".json")] + ".html" and storage.exists(result["report_html_uri"])

    # Same data again: validate and shard come from Prefect's cache, the study grows to 6.
    again = run_flow(str(churn_csv), dask_address=dask_cluster.scheduler_address, expectations="data/expectations.yaml", n_trials=6)
    states = cached_task_runs(None)
    assert states["validate"] == "Cached" and states["shard"] == "Cached"
    assert again["fingerprint"] == result["fingerprint"] and again["trials_this_run"] == 2
    assert storage.read_json(again["manifest_uri"])["created_at"] == manifest["created_at"]
    # ... and still shows its validation report, under keys of its own dataset
    keys = latest_flow_run_artifact_keys()
    assert {"validation-report-churn", "tuneflow-summary-churn", "trial-leaderboard-churn", "dask-dashboard-churn", "study-report-churn"} <= keys, keys

    from mlflow import MlflowClient

    run = MlflowClient(tracking_uri=get_settings().resolved_tracking_uri()).get_run(reg["run_id"])
    assert run.data.tags["prefect.flow_run_id"] and run.data.tags["prefect.flow_run_name"]  # the flow run that made it
    # the study report and the best trial's per-round curve (step = boosting round) in the registered run
    client = MlflowClient(tracking_uri=get_settings().resolved_tracking_uri())
    assert "report/study_report.html" in {a.path for a in client.list_artifacts(reg["run_id"], "report")}
    curve = client.get_metric_history(reg["run_id"], f"curve/trial_{result['best_trial']}/valid_auc")
    assert len(curve) >= 10 and sorted(m.step for m in curve) == list(range(len(curve)))
    assert max(m.value for m in curve) == pytest.approx(result["best_value"], abs=1e-6)


def latest_flow_run_artifact_keys() -> set[str]:
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        run = client.read_flow_runs(sort=FlowRunSort.START_TIME_DESC, limit=1)[0]
        return {a.key for a in client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id])))}


@pytest.mark.services
def test_s3_data_and_store_with_postgres_study(churn_csv: Path, tuneflow_home: Path, s3_bucket: str, s3_endpoint: str, pg_database: str, dask_cluster) -> None:
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    s3.upload_file(str(churn_csv), s3_bucket, "landing/2026-11/churn.csv")
    result = run_flow(
        f"s3://{s3_bucket}/landing/2026-11/", store=f"s3://{s3_bucket}/tuneflow", storage=pg_database,
        dask_address=dask_cluster.scheduler_address,
    )
    assert result["manifest_uri"].startswith(f"s3://{s3_bucket}/tuneflow/datasets/2026-11/")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket, Prefix="tuneflow/datasets/")["Contents"]]
    assert any(k.endswith("_manifest.json") for k in keys) and sum(k.endswith(".parquet") for k in keys) == 3
    cache_keys = [o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket, Prefix="tuneflow/prefect-results/")["Contents"]]
    assert {k.split("/")[-1].split("-")[0] for k in cache_keys} == {"validate", "shard"}  # Prefect's cache lives in the store
    manifest = storage.read_json(result["manifest_uri"])
    assert manifest["total_rows"] == 6000

    study = optuna.load_study(study_name=result["study_name"], storage=pg_database)
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials) == 4
    assert all(result_of(t)["model_uri"].startswith(f"s3://{s3_bucket}/") for t in study.trials)
    assert result["registered"]["alias"] == "champion"


def test_data_parallel_placement_with_enqueued_configs(churn_csv: Path, tuneflow_home: Path, tmp_path: Path, dask_cluster) -> None:
    configs = tmp_path / "configs.yaml"
    configs.write_text("- {max_depth: 3, learning_rate: 0.2}\n- {max_depth: 5, learning_rate: 0.1}\n")
    result = run_flow(str(churn_csv), dask_address=dask_cluster.scheduler_address, placement="data", enqueue=str(configs), n_trials=3)
    assert result["placement"] == "data"
    study = optuna.load_study(study_name=result["study_name"], storage=optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(get_settings().resolved_storage())))
    trials = sorted(study.trials, key=lambda t: t.number)
    assert trials[0].state == TrialState.COMPLETE and all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    assert (trials[0].params["max_depth"], trials[0].params["learning_rate"]) == (3, 0.2)
    assert (trials[1].params["max_depth"], trials[1].params["learning_rate"]) == (5, 0.1)
    assert all(result_of(t)["placement"] == "data" for t in trials)
    assert result["registered"]["test_value"] > 0.6
