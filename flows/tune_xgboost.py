"""The tune-xgboost flow: validate -> shard -> tune -> register. Thin: the steps live in tasks/."""

from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Any, Literal

import distributed
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NONE as NO_CACHE
from prefect.runtime import task_run as task_run_runtime
from prefect.filesystems import LocalFileSystem, RemoteFileSystem
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.tasks import exponential_backoff

from tasks import dataset, progress, register, search_space, shard, study, validate
from tasks import storage as objstore
from tasks.cluster import dask_client
from tasks.data_parallel import PersistedSplits, choose_placement, run_data_parallel_trial, worker_memory
from tasks.errors import TuneflowError, is_transient
from tasks.plan import plan_run
from tasks.problem import objective_params
from tasks.settings import get_settings
from tasks.trial_engine import evaluate_model, release_data, run_trial

def retry_transient(task_: Any, task_run: Any, state: Any) -> bool:
    """Retry lost workers, timeouts and storage hiccups; never a deterministic failure."""
    exc = state.data if isinstance(state.data, BaseException) else None
    return exc is not None and is_transient(exc)


def _key(prefix: str, *parts: Any) -> str:
    return prefix + "-" + hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


RETRY = dict(retries=3, retry_delay_seconds=exponential_backoff(1.0), retry_jitter_factor=0.5, retry_condition_fn=retry_transient)


@task(
    name="validate",
    cache_key_fn=lambda ctx, p: _key("validate", p["fp"], p["expectations"]),
    persist_result=True,
    result_serializer="json",
    **RETRY,
)
def validate_task(files: list[dict], schema: dict, expectations: dict, storage_options: dict, fp: str) -> dict:
    """Run the suite per partition on Dask; publish the report; stop the flow if it failed."""
    report = validate.validate_dataset(None, files, schema, expectations, storage_options)
    create_markdown_artifact(validate.report_markdown(report), key="validation-report", description=f"Validation of {fp}")
    validate.raise_if_failed(report)
    return report


@task(
    name="shard",
    cache_key_fn=lambda ctx, p: _key("shard", p["store"], p["name"], p["fp"]),
    persist_result=True,
    result_serializer="json",
    **RETRY,
)
def shard_task(files: list[dict], schema: dict, profile: dict, store: str, name: str, fp: str, seed: int, row_key: str | None, storage_options: dict) -> dict:
    ddf = dataset.read_dataset(files, schema, storage_options)
    return shard.shard_dataset(
        ddf, files, schema, profile, store=store, name=name, fp=fp, seed=seed,
        fractions=shard.DEFAULT_FRACTIONS, row_key=row_key, storage_options=storage_options,
    )


_PERSISTED: dict[str, PersistedSplits] = {}  # data-parallel collections, by dataset fingerprint


@task(name="trial", task_run_name="trial-{number}", cache_policy=NO_CACHE, **RETRY)
def trial_task(number: int, params: dict, spec: dict, model_uri: str, timeout_s: float | None) -> dict:
    """Run one trial on the cluster and keep its model; returns the score and timings."""
    client = distributed.default_client()
    spec = {**spec, "params": {**spec["params"], **params}}
    if spec["placement"] == "data":
        fp = spec["manifest"]["fingerprint"]
        if _PERSISTED[fp].workers != frozenset(client.scheduler_info()["workers"]):
            # a worker left or was replaced (new address): the slices pinned to it can never be
            # recomputed, so spread the splits again over the workers there are now
            _PERSISTED[fp] = PersistedSplits(client, spec["manifest"], spec["storage_options"])
        result = run_data_parallel_trial(client, _PERSISTED[fp], spec)
    else:  # trial-parallel: one worker, which keeps the data resident across trials
        future = client.submit(run_trial, spec, pure=False, key=f"trial-{number}-{os.urandom(4).hex()}")
        result = future.result(timeout=timeout_s)
    objstore.write_bytes_atomic(model_uri, result.pop("model_ubj"), spec["storage_options"])
    return {**result, "model_uri": model_uri, "attempt": task_run_runtime.run_count, "placement": spec["placement"]}


@task(name="register", cache_policy=NO_CACHE, **RETRY)
def register_task(outcome: dict, manifest: dict, metric: str, direction: str, model_name: str, report: dict, plots: dict, storage_options: dict) -> dict:
    settings = get_settings()
    client = distributed.default_client()
    fs, path = objstore.filesystem(outcome["model_uri"], storage_options)
    model_ubj = fs.cat_file(path)

    def evaluate(model: bytes) -> float:
        return client.submit(evaluate_model, model, manifest, metric, storage_options, pure=False).result()

    return register.register_best_model(
        model_ubj=model_ubj, manifest=manifest, metric=metric, direction=direction, evaluate=evaluate,
        params=outcome["best_params"], valid_value=outcome["best_value"], study_name=outcome["study_name"],
        trial_number=outcome["best_number"], model_name=model_name,
        tracking_uri=settings.resolved_tracking_uri(), artifact_root=settings.resolved_artifact_root(),
        validation_report=report, plots=plots,
    )


class Leaderboard:
    """Keeps a Prefect table artifact of the best trials current while the study runs."""

    def __init__(self, key: str, direction: str, every_s: float = 5.0) -> None:
        self.key, self.direction, self.every_s = key, direction, every_s
        self.rows: list[dict[str, Any]] = []
        self.last = 0.0

    def __call__(self, event: study.TrialEvent) -> None:
        progress.publish(event)
        value = f"{event.value:.6f}" if event.value is not None else event.info.get("error", "")
        get_run_logger().info(
            "trial %d %s %s (%s s) | done %d, failed %d, best %s (trial %s)",
            event.number, event.state, value, event.info.get("seconds", "?"), event.done, event.failed, event.best_value, event.best_number,
        )
        if event.state == "COMPLETE":
            self.rows.append({"trial": event.number, "value": round(event.value, 6), **{k: _round(v) for k, v in event.params.items()}})
        if time.time() - self.last >= self.every_s:
            self.publish(f"{event.done} trials done, {event.failed} failed, best {event.best_value}")

    def publish(self, description: str) -> None:
        self.last = time.time()
        rows = sorted(self.rows, key=lambda r: r["value"], reverse=self.direction == "maximize")[:20]
        if rows:
            create_table_artifact(rows, key=self.key, description=description)


def _round(v: Any) -> Any:
    return round(v, 5) if isinstance(v, float) else v


@flow(name="tune-xgboost", task_runner=ThreadPoolTaskRunner(max_workers=16), log_prints=True)
def tune_xgboost(
    data: str,
    target: str,
    task: Literal["binary", "multiclass", "regression"] = "binary",
    metric: str | None = None,
    n_trials: int | None = 20,
    timeout: float | None = None,
    parallelism: int = 2,
    space: str | None = None,
    expectations: str | None = None,
    storage: str | None = None,
    store: str | None = None,
    dask_address: str | None = None,
    device: Literal["auto", "cpu", "cuda"] = "auto",
    placement: Literal["auto", "trial", "data"] = "auto",
    enqueue: str | None = None,
    seed: int = 0,
    row_key: str | None = None,
    study_name: str | None = None,
    model_name: str | None = None,
    max_rounds: int = 500,
    early_stopping_rounds: int = 30,
    trial_timeout: float | None = None,
) -> dict[str, Any]:
    """Validate, shard, tune and register an XGBoost model for `target` in `data`."""
    log = get_run_logger()
    settings = get_settings()
    plan = plan_run(data, target, task, metric, space, expectations, seed, row_key, n_trials, timeout, parallelism, enqueue)
    metric, direction, files, schema, name, fp = plan.metric, plan.direction, plan.files, plan.schema, plan.name, plan.fingerprint
    store_uri = store or settings.resolved_store()
    storage_url = storage or settings.resolved_storage()
    data_options, store_options = plan.data_options, objstore.storage_options_for(store_uri)
    log.info("dataset %s: %d file(s), %.1f MB, fingerprint %s", name, len(files), sum(f["size"] for f in files) / 1e6, fp)

    with dask_client(dask_address or settings.dask_address, parallelism, device) as client:
        nthread = None if (dask_address or settings.dask_address) else max(1, (os.cpu_count() or 1) // len(client.scheduler_info()["workers"]))
        cached = {"result_storage": results_storage(store_uri, store_options)}
        report = validate_task.with_options(**cached)(files, schema, plan.expectations, data_options, fp)
        log.info("validation passed: %d rows, %d expectations", report["rows"], len(report["results"]))
        manifest = shard_task.with_options(**cached)(files, schema, report["profile"], store_uri, name, fp, seed, row_key, {**data_options, **store_options})
        log.info("dataset version %s: %s", fp, {s: v["rows"] for s, v in manifest["splits"].items()})

        placement = choose_placement(manifest, worker_memory(client), placement)
        if placement == "data":
            _PERSISTED[fp] = PersistedSplits(client, manifest, store_options)
            parallelism = 1  # each trial already uses every worker
        log.info("placement: %s-parallel, %d trial(s) in flight", placement, parallelism)

        the_study = study.open_study(storage_url, study_name or study.default_study_name(name, fp, task, metric, plan.space), direction, seed)
        n_classes = len(manifest["classes"] or [])
        spec = {
            "manifest": manifest, "storage_options": store_options, "device": device, "nthread": nthread, "placement": placement,
            "params": {**objective_params(task, n_classes, metric), "seed": seed},
            "num_boost_round": max_rounds, "early_stopping_rounds": early_stopping_rounds,
        }
        study.enqueue_configs(the_study, plan.enqueue)
        models = objstore.join(store_uri, "studies", the_study.study_name, "models")
        leaderboard = Leaderboard("trial-leaderboard", direction)
        outcome = study.run_study(
            the_study, plan.space, n_trials=n_trials, timeout=timeout, parallelism=parallelism,
            submit=lambda number, params: trial_task.submit(number, params, spec, objstore.join(models, f"trial-{number:05d}.ubj"), trial_timeout),
            on_event=leaderboard,
        )
        leaderboard.publish(f"final: {outcome.completed} completed this run, best {outcome.best_value}")
        _PERSISTED.pop(fp, None)
        if dask_address or settings.dask_address:  # a shared cluster: free worker (and GPU) memory for the next study
            client.run(release_data)
        if outcome.best_number is None:
            raise TuneflowError(
                f"No trial completed in study '{the_study.study_name}' ({outcome.failed} failed).",
                "look at the trials' errors in the log; check the search space and the data.",
            )
        best = the_study.best_trial
        summary = {
            "study_name": the_study.study_name, "best_number": best.number, "best_value": best.value,
            "best_params": search_space.with_fixed(plan.space, best.params), "model_uri": best.user_attrs["model_uri"],
        }
        registered = register_task(summary, manifest, metric, direction, model_name or f"tuneflow-{name}", report, study_plots(the_study), store_options)

    result = {
        "dataset": name, "fingerprint": fp, "manifest_uri": objstore.join(manifest["uri"], shard.MANIFEST),
        "rows": {s: v["rows"] for s, v in manifest["splits"].items()},
        "study_name": the_study.study_name, "storage": storage_url, "metric": metric, "direction": direction,
        "trials_this_run": outcome.completed + outcome.failed, "failed_this_run": outcome.failed,
        "recovered_trials": outcome.recovered, "placement": placement, "best_trial": best.number, "best_value": best.value,
        "best_params": summary["best_params"], "registered": registered, "tune_seconds": round(outcome.seconds, 2),
    }
    result["report_uri"] = objstore.join(store_uri, "reports", f"{the_study.study_name}.json")
    objstore.write_json_atomic(result["report_uri"], result, store_options)
    create_markdown_artifact(summary_markdown(result), key="tuneflow-summary", description="tuneflow result")
    return result


def results_storage(store_uri: str, options: dict[str, Any]) -> LocalFileSystem | RemoteFileSystem:
    """Prefect's cached results (and so its cache keys) live in the store, shared by every run."""
    base = objstore.join(store_uri, "prefect-results")
    block = RemoteFileSystem(basepath=base, settings=options) if "://" in store_uri else LocalFileSystem(basepath=base)
    # Prefect only accepts saved blocks as result storage; one block per store.
    block.save(f"tuneflow-results-{hashlib.sha256(base.encode()).hexdigest()[:12]}", overwrite=True)
    return block


def study_plots(the_study: Any) -> dict[str, str]:
    """Optuna's plots as standalone HTML (best effort: a plot needing more trials is skipped)."""
    import optuna.visualization as vis

    plots = {}
    for name, make in [("optimization_history", vis.plot_optimization_history), ("param_importances", vis.plot_param_importances), ("parallel_coordinate", vis.plot_parallel_coordinate)]:
        try:
            plots[f"{name}.html"] = make(the_study).to_html(full_html=True, include_plotlyjs="cdn")
        except Exception:  # e.g. importances need two or more complete trials
            continue
    return plots


def summary_markdown(result: dict[str, Any]) -> str:
    reg = result["registered"]
    lines = [
        f"# tuneflow: {result['dataset']}",
        f"- best {result['metric']} (valid): **{result['best_value']:.6f}** (trial {result['best_trial']})",
        f"- test {result['metric']}: {reg['test_value']:.6f}",
        f"- model: `{reg['model_uri']}` alias **{reg['alias']}**",
        f"- study: `{result['study_name']}` in `{result['storage']}`",
        f"- data: `{result['manifest_uri']}` rows {result['rows']}",
        "",
        "| parameter | value |",
        "| --- | --- |",
        *[f"| {k} | {v} |" for k, v in result["best_params"].items()],
    ]
    return "\n".join(lines)
