"""What a run shows in Prefect: the validation report, the live leaderboard, the summary, and
where Prefect keeps cached results. Every artifact key is written here and nowhere else; every
artifact's text passes tasks.redact.redact (no password of a URL reaches the Prefect server)."""

from __future__ import annotations

import hashlib
import re
import time
import warnings
from typing import Any

from prefect import get_run_logger
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.filesystems import LocalFileSystem, RemoteFileSystem

from flows import progress
from tasks import objectstore
from tasks.contracts import RunResult
from tasks.redact import redact, redact_mapping
from tasks.tuning.loop import TrialEvent
from tasks.tuning.objectives import cost_value

VALIDATION_KEY = "validation-report"
LEADERBOARD_KEY = "trial-leaderboard"
SUMMARY_KEY = "tuneflow-summary"


def key_for(base: str, dataset: str) -> str:
    """An artifact key per dataset (`tuneflow-summary-churn`): runs on other datasets keep their own history."""
    return f"{base}-{re.sub(r'[^a-z0-9-]+', '-', dataset.lower()).strip('-') or 'dataset'}"[:100]


DASHBOARD_KEY = "dask-dashboard"
STUDY_REPORT_KEY = "study-report"


def publish_dashboard_link(link: str | None, dataset: str) -> None:
    """Log the Dask dashboard's address and show it as a link artifact (it is on a random port)."""
    if not link:
        return
    get_run_logger().info("Dask dashboard: %s", link)
    create_link_artifact(redact(link), link_text="Dask dashboard (live while the run lasts)", key=key_for(DASHBOARD_KEY, dataset))


def publish_study_report(uri: str, dataset: str) -> None:
    """A link to the study's HTML report (a file:// link for a local store)."""
    import os
    from pathlib import Path

    link = uri if "://" in uri else Path(os.path.abspath(uri)).as_uri()
    create_link_artifact(redact(link), link_text="Study report (HTML)", key=key_for(STUDY_REPORT_KEY, dataset))


def publish_validation_report(markdown: str, dataset: str, fingerprint: str) -> None:
    create_markdown_artifact(redact(markdown), key=key_for(VALIDATION_KEY, dataset), description=f"Validation of {dataset} ({fingerprint})")


class Leaderboard:
    """Logs each trial and keeps a Prefect table of the best trials current while the study runs."""

    def __init__(self, direction: str, every_s: float = 5.0, costs: tuple[str, ...] = (), dataset: str = "dataset") -> None:
        self.direction, self.every_s, self.costs = direction, every_s, costs
        self.key = key_for(LEADERBOARD_KEY, dataset)
        self.rows: list[dict[str, Any]] = []
        self.last = 0.0

    def __call__(self, event: TrialEvent) -> None:
        progress.publish(event)
        value = f"{event.value:.6f}" if event.value is not None else event.info.get("error", "")
        get_run_logger().info(
            "trial %d %s %s (%s s) | done %d, failed %d, pruned %d, best %s (trial %s)",
            event.number, event.state, value, event.info.get("seconds", "?"), event.done, event.failed, event.pruned, event.best_value, event.best_number,
        )
        if event.state in ("COMPLETE", "PRUNED") and event.value is not None:
            state = event.state if event.state == "COMPLETE" else f"PRUNED at rung {event.info.get('rung', '?')}"
            costs = {c: _round(cost_value(c, event.info)) for c in self.costs}
            used = {"cpu_s": _round(event.info.get("cpu_seconds")), "peak_mb": _round(event.info.get("peak_rss_mb"))}
            if event.info.get("gpu_mem_peak_mb") is not None:
                used |= {"gpu_util_pct": event.info.get("gpu_util_pct"), "gpu_mem_mb": _round(event.info.get("gpu_mem_peak_mb"))}
            self.rows.append({"trial": event.number, "state": state, "value": round(event.value, 6), **costs, **used, **{k: _round(v) for k, v in event.params.items()}})
        if time.time() - self.last >= self.every_s:
            self.publish(f"{event.done} trials done, {event.failed} failed, {event.pruned} pruned, best {event.best_value}")

    def publish(self, description: str) -> None:
        self.last = time.time()
        sign = -1 if self.direction == "maximize" else 1  # complete trials first, then pruned ones, best first
        rows = sorted(self.rows, key=lambda r: (r["state"] != "COMPLETE", sign * r["value"]))[:20]
        if rows:
            create_table_artifact([redact_mapping(r) for r in rows], key=self.key, description=redact(description))


def _round(v: Any) -> Any:
    return round(v, 5) if isinstance(v, float) else v


def publish_summary(result: RunResult) -> None:
    create_markdown_artifact(redact(summary_markdown(result)), key=key_for(SUMMARY_KEY, result["dataset"]), description=f"tuneflow result for {result['dataset']}")


def summary_markdown(result: RunResult) -> str:
    reg = result["registered"]
    lines = [
        f"# tuneflow: {result['dataset']}",
        f"- best {result['metric']} (valid): **{result['best_value']:.6f}** (trial {result['best_trial']})",
        f"- test {result['metric']}: {reg['test_value']:.6f}",
        f"- model: `{reg['model_uri']}` alias **{reg['alias']}**; MLflow run `{reg['run_id']}`",
        f"- study: `{result['study_name']}` in `{result['storage']}`; browse it with `optuna-dashboard {result['storage']}`"
        " or `tuneflow dashboard` (`pip install 'tuneflow[dashboard]'`)",
        f"- data: `{result['manifest_uri']}` rows {result['rows']}" + (f" (smoke run on sample {result['sample']})" if result["sample"] else ""),
        f"- sampler: {result['sampler']} ({result['sampler_reason']}); stopped by {result['stopped_by']}; {result['cost_hours']:.4f} core-hours held, {result['cpu_hours']:.4f} CPU-hours used"
        + (f", {result['gpu_hours']:.4f} GPU-hours" if result["gpu_hours"] else ""),
        *([f"- warm start: {w['trials']} trials {w['mode']} from `{w['from']}`"] if (w := result["warm_start"]) else []),
        *([f"- study report: `{u}` (also the MLflow run's `report/study_report.html`)"] if (u := result.get("report_html_uri")) else []),
        "",
        "| parameter | value |",
        "| --- | --- |",
        *[f"| {k} | {v} |" for k, v in result["best_params"].items()],
    ]
    if result["pareto_front"]:
        names = result["objectives"]
        lines += ["", f"## Pareto front ({', '.join(names)})", "", "| trial | " + " | ".join(names) + " | within limits |", "|---" * (len(names) + 2) + "|"]
        lines += [f"| {r['number']} | " + " | ".join(f"{r[n]:.5g}" for n in names) + f" | {'yes' if r['within_limits'] else 'no'} |" for r in result["pareto_front"]]
    return "\n".join(lines)


def study_plots(the_study: Any) -> dict[str, str]:
    """Optuna's plots as standalone HTML (best effort: a plot needing more trials is skipped)."""
    import optuna.visualization as vis

    plots = {}
    multi = len(the_study.directions) > 1
    metric = {"target": lambda t: t.values[0], "target_name": "metric"} if multi else {}
    makers = [("optimization_history", vis.plot_optimization_history, metric), ("param_importances", vis.plot_param_importances, metric),
              ("parallel_coordinate", vis.plot_parallel_coordinate, metric)]
    if multi:
        makers.append(("pareto_front", vis.plot_pareto_front, {}))
    for name, make, options in makers:
        try:
            with warnings.catch_warnings():  # Optuna's notes on few trials per regime or evaluators are not the user's concern
                warnings.simplefilter("ignore")
                plots[f"{name}.html"] = make(the_study, **options).to_html(full_html=True, include_plotlyjs="cdn")
        except Exception:  # e.g. importances need two or more complete trials
            continue
    return plots


def results_storage(store_uri: str, options: dict[str, Any]) -> LocalFileSystem | RemoteFileSystem:
    """Prefect's cached results (and so its cache keys) live in the store, shared by every run.

    The store is probed first (a small object written and deleted): an unwritable store fails the
    flow here, before validation, with one TuneflowError (the CLI probes it before Prefect starts)."""
    objectstore.check_writable(store_uri, options)
    base = objectstore.join(store_uri, "prefect-results")
    block = RemoteFileSystem(basepath=base, settings=options) if "://" in store_uri else LocalFileSystem(basepath=base)
    # Prefect only accepts saved blocks as result storage; one block per store.
    block.save(f"tuneflow-results-{hashlib.sha256(base.encode()).hexdigest()[:12]}", overwrite=True)
    return block
