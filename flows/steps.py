"""The flow's Prefect tasks: thin wrappers that add retries, caching and artifacts to the plain
step functions in tasks/. Every Prefect task definition lives here."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from prefect import task
from prefect.cache_policies import NONE as NO_CACHE
from prefect.runtime import task_run as task_run_runtime
from prefect.tasks import exponential_backoff

from flows import artifacts, user_errors
from tasks import objectstore, register
from tasks.contracts import DatasetManifest, TrialRequest
from tasks.data import inputs, shard
from tasks.engine.placement import Trainer
from tasks.engine.resident import evaluate_model
from tasks.errors import is_transient
from tasks.settings import RunLocations
from tasks.validation import validate_dataset, report_markdown, raise_if_failed


def retry_transient(task_: Any, task_run: Any, state: Any) -> bool:
    """Retry lost workers, timeouts and storage hiccups; never a deterministic failure."""
    exc = state.data if isinstance(state.data, BaseException) else None
    return exc is not None and is_transient(exc)


def _key(prefix: str, *parts: Any) -> str:
    return prefix + "-" + hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


user_errors.install()  # a failed validation (any TuneflowError) logs no traceback: the CLI prints it as one line
RETRY = dict(retries=3, retry_delay_seconds=exponential_backoff(1.0), retry_jitter_factor=0.5, retry_condition_fn=retry_transient)


@task(
    name="validate",
    cache_key_fn=lambda ctx, p: _key("validate", p["fp"], p["expectations"]),
    persist_result=True,
    result_serializer="json",
    **RETRY,
)
def validate_task(files: list[dict], schema: dict, expectations: dict, storage_options: dict, fp: str, dataset: str = "dataset") -> dict:
    """Run the suite per partition on Dask; stop the flow if it failed, publishing the failed report
    (a passed one is published by the flow, so a cached validation shows it too)."""
    report = validate_dataset(None, files, schema, expectations, storage_options)
    try:
        raise_if_failed(report)
    except Exception:
        artifacts.publish_validation_report(report_markdown(report), dataset, fp)
        raise
    return report


@task(
    name="shard",
    cache_key_fn=lambda ctx, p: _key("shard", p["store"], p["name"], p["fp"]),
    persist_result=True,
    result_serializer="json",
    **RETRY,
)
def shard_task(
    files: list[dict], schema: dict, profile: dict, store: str, name: str, fp: str, seed: int, row_key: str | None, storage_options: dict,
    sample: str | None = None, rows: int | None = None,
) -> DatasetManifest:
    ddf = inputs.read_dataset(files, schema, storage_options)
    return shard.shard_dataset(
        ddf, files, schema, profile, store=store, name=name, fp=fp, seed=seed,
        fractions=shard.DEFAULT_FRACTIONS, row_key=row_key, storage_options=storage_options, sample=sample, rows=rows,
    )


@task(name="trial", task_run_name="trial-{number}", cache_policy=NO_CACHE, **RETRY)
def trial_task(number: int, request: TrialRequest, trainer: Trainer, model_uri: str, timeout_s: float | None) -> dict[str, Any]:
    """Run one trial on the cluster and keep its model; returns the score and timings."""
    result = trainer.run(request, timeout_s)
    if request.checkpoint_uri and result.checkpoint_ubj is not None:  # the next rung or segment continues from it
        objectstore.write_bytes_atomic(request.checkpoint_uri, result.checkpoint_ubj, request.storage_options)
    objectstore.write_bytes_atomic(model_uri, result.model_ubj, request.storage_options)
    return {"value": result.value, **result.summary(), "model_uri": model_uri, "checkpoint_uri": request.checkpoint_uri, "attempt": task_run_runtime.run_count,
            "history": list(result.history)}  # the per-round valid metric: the trial's learning curve (tasks/tuning/curves.py)


@task(name="register", cache_policy=NO_CACHE, **RETRY)
def register_task(best: dict[str, Any], manifest: DatasetManifest, metric: str, direction: str, model_name: str, report: dict, plots: dict, where: RunLocations) -> dict:
    import distributed

    client = distributed.default_client()
    fs, path = objectstore.filesystem(best["model_uri"], where.store_options)

    def evaluate(model: bytes) -> float:
        return client.submit(evaluate_model, model, manifest, metric, where.store_options, pure=False).result()

    return register.register_best_model(
        model_ubj=fs.cat_file(path), manifest=manifest, metric=metric, direction=direction, evaluate=evaluate,
        params=best["params"], valid_value=best["value"], study_name=best["study_name"], trial_number=best["number"],
        model_name=model_name, tracking_uri=where.tracking_uri, artifact_root=where.artifact_root,
        validation_report=report, plots=plots, schedule=best.get("schedule"), run_tags=flow_run_tags(), run_metrics=best.get("metrics"),
    )


@task(name="report", cache_policy=NO_CACHE, **RETRY)
def report_task(study: Any, result: dict, where: RunLocations) -> str | None:
    """Write the study's HTML report to `result["report_html_uri"]` and log it, with the best trials'
    per-round curves as step metrics, to the registered model's MLflow run. A report that cannot be
    drawn is a warning, not a failed run: the model is registered by now."""
    from prefect import get_run_logger

    from tasks.reporting import exports, study_report

    log = get_run_logger()
    try:
        html = study_report.render_study_report(study, result)
    except Exception as exc:
        log.warning("study report not drawn: %s: %s", type(exc).__name__, str(exc)[:300])
        return None
    uri = result["report_html_uri"]
    objectstore.write_bytes_atomic(uri, html.encode("utf-8"), where.store_options)
    logged = exports.log_to_mlflow(where.tracking_uri, result["registered"]["run_id"], html, study, result["metric"], include=result["best_trial"])
    log.info("study report: %s (%.1f MB); learning curves in MLflow: %s", uri, len(html) / 1e6, ", ".join(logged) or "already there")
    return uri


def flow_run_tags() -> dict[str, str]:
    """The Prefect flow run an MLflow run came from (id, name, and its UI link where a UI is set)."""
    from prefect.runtime import flow_run

    tags = {"prefect.flow_run_id": str(flow_run.id or ""), "prefect.flow_run_name": str(flow_run.name or "")}
    if getattr(flow_run, "ui_url", None):
        tags["prefect.flow_run_url"] = str(flow_run.ui_url)
    return {k: v for k, v in tags.items() if v}

