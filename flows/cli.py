"""`tuneflow run ...`: the flow from a terminal, with a live display of the trials."""

from __future__ import annotations

import enum
import os
import sys
from typing import Optional, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from tasks.contracts import (
    DEFAULT_EARLY_STOPPING_ROUNDS, DEFAULT_FIDELITY, DEFAULT_MAX_ROUNDS, DEFAULT_N_TRIALS, DEFAULT_PARALLELISM, DEFAULT_POPULATION, DEFAULT_PRUNER,
    DEFAULT_SAMPLER, Device, Placement, Sampler, Schedule, Strategy, Task, WarmStart,
)

# Prefect's temporary server phones home on a timer and logs a traceback when SQLite is busy.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
if not os.environ.get("PREFECT_API_URL"):
    # A first start migrates a new database, which can pass Prefect's 20 s default on a busy machine.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    # The run's own temporary server records this run and nothing else: its schedulers and
    # housekeeping loops would only take CPU from the trials on a small machine.
    for service in ("SCHEDULER", "LATE_RUNS", "FOREMAN", "PAUSE_EXPIRATIONS", "CANCELLATION_CLEANUP", "REPOSSESSOR", "DB_VACUUM", "CLEANUP_RECONCILER", "TRIGGERS"):
        os.environ.setdefault(f"PREFECT_SERVER_SERVICES_{service}_ENABLED", "false")

class _OneErrorLine(typer.core.TyperGroup):
    """A bad option (a number that is not one, an unknown or a missing option) is bad input like any
    other: one `error:` line and exit code 2, not click's usage box (which has no `error:` line)."""

    def invoke(self, ctx):  # the subcommand parses its options in here
        try:
            from typer import _click as click  # typer's own copy of click, whose errors it raises
        except ImportError:
            import click

        try:
            return super().invoke(ctx)
        except click.exceptions.UsageError as exc:
            if isinstance(exc, getattr(click.exceptions, "NoArgsIsHelpError", ())):
                raise
            from tasks.errors import TuneflowError

            problem = " ".join(exc.format_message().split()).rstrip(".") + "."
            command = exc.ctx.command_path if exc.ctx is not None else "tuneflow"
            _fail(TuneflowError(problem, f"see {command} --help for the options and their values."))


app = typer.Typer(cls=_OneErrorLine, add_completion=False, no_args_is_help=True, help="Distributed XGBoost hyperparameter tuning: validate, shard, tune, register.")
console = Console(stderr=True)
E = TypeVar("E", bound=enum.Enum)


@app.callback()
def main() -> None:
    """tuneflow: validate -> shard -> tune -> register, as one Prefect flow."""


@app.command()
def run(
    data: str = typer.Option(..., "--data", help="CSV/Parquet file, glob or folder/prefix (local, file:// or s3://)."),
    target: str = typer.Option(..., "--target", help="The column to predict."),
    task: str = typer.Option(Task.BINARY.value, "--task", help="binary | multiclass | regression."),
    metric: Optional[str] = typer.Option(None, "--metric", help="XGBoost eval metric (default: auc / mlogloss / rmse)."),
    n_trials: Optional[int] = typer.Option(DEFAULT_N_TRIALS, "--n-trials", help="Trials to reach in the study (resumed studies count what they have)."),
    timeout: Optional[float] = typer.Option(None, "--timeout", help="Stop starting trials after this many seconds."),
    parallelism: int = typer.Option(DEFAULT_PARALLELISM, "--parallelism", help="Trials in flight at once."),
    space: Optional[str] = typer.Option(None, "--space", help="Search-space YAML/JSON (default: tuneflow's XGBoost space)."),
    expectations: Optional[str] = typer.Option(None, "--expectations", help="Expectations YAML/JSON for validation."),
    storage: Optional[str] = typer.Option(None, "--storage", help="Optuna study storage: journal file, sqlite:///FILE or postgresql://..."),
    store: Optional[str] = typer.Option(None, "--store", help="Object store root for shards and models (folder or s3://bucket/prefix)."),
    dask_address: Optional[str] = typer.Option(None, "--dask-address", help="Dask scheduler (tcp://HOST:8786); default: a LocalCluster."),
    device: str = typer.Option(Device.AUTO.value, "--device", help="auto | cpu | cuda."),
    placement: str = typer.Option(Placement.AUTO.value, "--placement", help="auto | trial (data resident per worker) | data (xgboost.dask over all workers)."),
    enqueue: Optional[str] = typer.Option(None, "--enqueue", help="YAML/JSON list of configurations to try first."),
    seed: int = typer.Option(0, "--seed", help="Seeds the split and the sampler."),
    row_key: Optional[str] = typer.Option(None, "--row-key", help="ID column: split by its hash and leave it out of the features."),
    study_name: Optional[str] = typer.Option(None, "--study-name", help="Continue or name a study (default: from data, task, metric, space)."),
    model_name: Optional[str] = typer.Option(None, "--model-name", help="MLflow registered model name (default: tuneflow-<dataset>)."),
    max_rounds: int = typer.Option(DEFAULT_MAX_ROUNDS, "--max-rounds", help="Boosting rounds at most per trial."),
    early_stopping_rounds: int = typer.Option(DEFAULT_EARLY_STOPPING_ROUNDS, "--early-stopping-rounds"),
    strategy: str = typer.Option(Strategy.SEARCH.value, "--strategy", help="search (sampler + pruner) | pbt (population-based training)."),
    pruner: Optional[str] = typer.Option(None, "--pruner", help=f"none | median | percentile | sha | hyperband (default: {DEFAULT_PRUNER.value}; none with pbt)."),
    fidelity: str = typer.Option(DEFAULT_FIDELITY.value, "--fidelity", help="What a pruner's rungs grow: rounds | data (train-row fractions 1/9, 1/3, 1) | both."),
    schedule: str = typer.Option(Schedule.ASYNC.value, "--schedule", help="async (a trial starts when a slot frees) | sync (batches of --parallelism)."),
    population: int = typer.Option(DEFAULT_POPULATION, "--population", help="PBT: members trained together."),
    sampler: str = typer.Option(DEFAULT_SAMPLER.value, "--sampler", help="auto (picked from the space and budget, reason logged) | " + " | ".join(m.value for m in Sampler if m != Sampler.AUTO) + "."),
    objectives: Optional[str] = typer.Option(None, "--objectives", help="The metric, then costs to minimise: e.g. auc,size_mb,latency_ms,train_s (Pareto front)."),
    within: Optional[str] = typer.Option(None, "--within", help="Multi-objective: register the best metric within limits, e.g. size_mb=2,latency_ms=5."),
    stop_at: Optional[float] = typer.Option(None, "--stop-at", help="Stop starting trials once the metric reaches this value."),
    patience: Optional[int] = typer.Option(None, "--patience", help="Stop after N finished trials without improving the best."),
    min_delta: float = typer.Option(0.0, "--min-delta", help="With --patience: the smallest improvement that counts."),
    max_cost: Optional[float] = typer.Option(None, "--max-cost", help="Stop once the trials used this many core-hours (GPU-hours on CUDA)."),
    warm_start: str = typer.Option(WarmStart.AUTO.value, "--warm-start", help="auto (seed a new study from the latest earlier one on this dataset) | off | STUDY_NAME."),
    sample: Optional[str] = typer.Option(None, "--sample", help="Smoke run on a deterministic subset: a fraction (0.1, 10%) or a row count (50000)."),
    dataset_name: Optional[str] = typer.Option(None, "--dataset-name", help="Name the dataset (its model is tuneflow-NAME) instead of the data path's last part."),
) -> None:
    """Tune XGBoost on DATA for TARGET and register the best model."""
    from tasks.errors import TuneflowError
    from tasks.plan import plan_run
    from tasks.policy import check_cli_inputs
    from tasks.settings import resolve_locations
    from tasks.tuning.choices import plan_tuning, search_choices
    from tasks.tuning.warm_start import check_warm_start, study_identity

    try:
        chosen_device, chosen_placement = _choice(Device, device, "--device"), _choice(Placement, placement, "--placement")
        chosen_sampler = _choice(Sampler, sampler, "--sampler")
        choices = search_choices(strategy, pruner, fidelity, schedule, population, max_rounds, multi_objective=bool(objectives and "," in objectives), early_stopping_rounds=early_stopping_rounds)
        # the input policy (tasks/policy.py); a password in --storage stays in this process, out of the flow's parameters
        storage = check_cli_inputs(warn=lambda m: console.print(escape(f"warning: {m}")), data=data, space=space, expectations=expectations, enqueue=enqueue,
                                   store=store, storage=storage, study_name=study_name, model_name=model_name, dataset_name=dataset_name, warm_start=warm_start)
        # Checked here, before the temporary Prefect server starts; the flow reuses this plan.
        plan = plan_run(data, target, task, metric, space, expectations, seed, row_key, n_trials, timeout, parallelism, enqueue, sample=sample, dataset_name=dataset_name)
        tuning = plan_tuning(
            plan, choices, n_trials=n_trials, sampler=chosen_sampler, objectives=objectives, within=within, stop_at=stop_at,
            patience=patience, min_delta=min_delta, max_cost=max_cost, warm_start=warm_start,
        )
        where = resolve_locations(store, storage, dask_address)
        check_warm_start(where.study_storage, tuning.warm_start, study_identity(plan, tuning))
        from tasks.engine.cluster import check_tls

        check_tls(where.dask_address or "")  # tls:// without a client certificate: before the temporary Prefect server starts
        from tasks import objectstore

        objectstore.check_writable(where.store, where.store_options)  # a probe object written and deleted: not after validation
    except TuneflowError as exc:
        _fail(exc)

    from flows import progress as progress_events
    from flows.tune_xgboost import tune_xgboost
    from tasks.settings import get_settings

    display = Progress(
        SpinnerColumn(), TextColumn("[bold]trials"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
        console=console, transient=False,
    )
    bar = display.add_task("starting: validate and shard", total=population if choices.strategy == Strategy.PBT else tuning.n_trials)

    def on_event(event) -> None:
        best = f"{event.best_value:.5f} (#{event.best_number})" if event.best_value is not None else "-"
        display.update(bar, completed=event.done, description=f"failed {event.failed} pruned {event.pruned} running {event.running} best {best}")

    try:
        _start_temporary_prefect_server()
    except TuneflowError as exc:
        _fail(exc)
    unsubscribe = progress_events.subscribe(on_event)
    try:
        with display:
            result = tune_xgboost(
                data=data, target=target, task=task, metric=metric, n_trials=n_trials, timeout=timeout,
                parallelism=parallelism, space=space, expectations=expectations, storage=storage, store=store,
                dask_address=dask_address, device=chosen_device, placement=chosen_placement, enqueue=enqueue, seed=seed, row_key=row_key,
                study_name=study_name, model_name=model_name, max_rounds=max_rounds, early_stopping_rounds=early_stopping_rounds,
                strategy=choices.strategy, pruner=None if pruner is None else choices.pruner, fidelity=choices.fidelity,
                schedule=choices.schedule, population=population, sampler=chosen_sampler, objectives=objectives, within=within,
                stop_at=stop_at, patience=patience, min_delta=min_delta, max_cost=max_cost, warm_start=warm_start, sample=sample,
                dataset_name=dataset_name,
            )
    except TuneflowError as exc:  # DataValidationError included
        _fail(exc)
    finally:
        unsubscribe()

    from tasks.redact import redact

    reg, settings = result["registered"], get_settings()
    out = Console(soft_wrap=True)
    tuned = f"{result['trials_this_run']} trials this run ({result['pruned_this_run']} pruned, {result['failed_this_run']} failed)"
    out.print(f"\n[bold green]Done.[/] {tuned}; best {result['metric']} (valid) = [bold]{result['best_value']:.6f}[/] (trial {result['best_trial']}), test = {reg['test_value']:.6f}")
    out.print(escape(f"sampler: {result['sampler']} ({result['sampler_reason']}); stopped by {result['stopped_by']}; "
                     f"{result['cost_hours']:.4f} core-hours held, {result['cpu_hours']:.4f} CPU-hours used"))
    if result["warm_start"]:
        warm = result["warm_start"]
        out.print(f"warm start: {warm['trials']} trials {warm['mode']} from study {warm['from']}")
    if result["pareto_front"]:
        names = result["objectives"]
        out.print(f"Pareto front ({len(result['pareto_front'])} trials; registered: trial {result['best_trial']}):")
        for row in result["pareto_front"][:10]:
            out.print("  trial {:>4}  ".format(row["number"]) + "  ".join(f"{n} {row[n]:.5g}" for n in names) + ("" if row["within_limits"] else "  (outside --within)"))
    out.print("best parameters:")
    for key, value in result["best_params"].items():
        out.print(f"  {key} = {value}")
    out.print(f"model: [bold]{reg['model_name']}[/] version {reg['version']} (alias {reg['alias']}), {reg['model_uri']}")
    out.print(f"study: {result['study_name']} in {result['storage']}")
    out.print(f"data:  {result['manifest_uri']}  rows {result['rows']}")
    out.print(f"report: {result['report_uri']}")
    if result.get("report_html_uri"):
        out.print(f"study report: {result['report_html_uri']}  (best so far, curves, importances, resources; also in the MLflow run)")
    out.print(f"MLflow UI:  mlflow ui --backend-store-uri {redact(settings.resolved_tracking_uri())}")
    out.print("Prefect UI: prefect server start   (then open http://127.0.0.1:4200)")
    if result["sample"]:
        out.print(f"[bold]This was a smoke run on a sample ({result['sample']}).[/] Run the full data with the same command without --sample;"
                  " its study warm-starts from this one.")


@app.command()
def watch(
    zones: str = typer.Option(..., "--zones", help="Landing zones YAML (name, uri, target, marker, settle_seconds, parameters)."),
    interval: float = typer.Option(30.0, "--interval", help="Seconds between looks."),
    once: bool = typer.Option(False, "--once", help="Look once and exit (for cron, or a scheduled deployment's job)."),
    store: Optional[str] = typer.Option(None, "--store", help="Where the sensor keeps what it has emitted (default: the run store)."),
) -> None:
    """Watch landing zones and emit tuneflow.data.landed once per complete arrival (needs PREFECT_API_URL)."""
    import time

    from flows.landing import look_once
    from tasks.arrival.zones import load_zones
    from tasks.errors import TuneflowError

    import logging

    # Prefect's events worker warns "Still processing items" while it sends the last event at exit
    logging.getLogger("EventsWorker").setLevel(logging.ERROR)
    try:
        the_zones = load_zones(zones)
        _require_prefect_api()
        if interval <= 0:
            raise TuneflowError(f"Bad --interval {interval}.", "give a number of seconds > 0.")
        while True:
            for zone, check in look_once(the_zones, os.path.abspath(zones), store):
                console.print(escape(f"{time.strftime('%H:%M:%S')} zone {zone.name}: {check.status}"
                                     + (f" -> event {check.arrival.event_id}" if check.arrival else "")), soft_wrap=True)
            if once:
                return
            time.sleep(interval)
    except TuneflowError as exc:
        _fail(exc)
    except KeyboardInterrupt:
        console.print("stopped")


@app.command()
def relay(
    zones: str = typer.Option(..., "--zones", help="Landing zones YAML, as for `tuneflow watch`."),
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8790, "--port"),
    store: Optional[str] = typer.Option(None, "--store", help="Where the sensor keeps what it has emitted (default: the run store)."),
) -> None:
    """Receive S3/MinIO bucket notifications over HTTP and emit landed events for the zones they touch."""
    from flows.relay import Relay, serve, token_from_env
    from tasks.arrival.zones import load_zones
    from tasks.errors import TuneflowError

    try:
        the_zones = load_zones(zones)
        _require_prefect_api()
        server = serve(Relay(the_zones, os.path.abspath(zones), store, log=lambda m: console.print(escape(m), soft_wrap=True)), host, port, token_from_env())
    except TuneflowError as exc:
        _fail(exc)
    except OSError as exc:
        _fail(TuneflowError(f"Cannot listen on {host}:{port}: {exc.strerror}.", "pick a free --port."))
    console.print(f"relay listening on http://{host}:{port}/ for {len(the_zones)} zone(s)" + (" (token required)" if token_from_env() else ""))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        console.print("stopped")


@app.command()
def dashboard(
    storage: Optional[str] = typer.Option(None, "--storage", help="Study storage (default: the one `tuneflow run` uses)."),
    port: int = typer.Option(8080, "--port"),
    host: str = typer.Option("127.0.0.1", "--host"),
) -> None:
    """Open optuna-dashboard on the study storage (pip install 'tuneflow[dashboard]')."""
    import shutil

    from tasks.errors import TuneflowError
    from tasks.redact import redact
    from tasks.settings import get_settings

    url = storage or get_settings().resolved_storage()
    exe = shutil.which("optuna-dashboard") or (os.path.join(os.path.dirname(sys.executable), "optuna-dashboard"))
    if not os.path.exists(exe):
        _fail(TuneflowError("optuna-dashboard is not installed.", "pip install 'tuneflow[dashboard]' (or: pip install optuna-dashboard)."))
    console.print(f"optuna-dashboard on {redact(url)}: http://{host}:{port}  (Ctrl-C stops it)")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(exe, [exe, url, "--host", host, "--port", str(port)])  # becomes the dashboard: a signal to this process stops it


@app.command()
def predict(
    model: str = typer.Option(..., "--model", help="models:/NAME@ALIAS, models:/NAME/VERSION or runs:/RUN_ID/model."),
    data: str = typer.Option(..., "--data", help="CSV/Parquet file, glob or folder/prefix to score (local, file:// or s3://)."),
    out: str = typer.Option(..., "--out", help="Folder/prefix for Parquet part files, or one CSV file when it ends with .csv."),
    dask_address: Optional[str] = typer.Option(None, "--dask-address", help="Dask scheduler (tcp://HOST:8786); default: a LocalCluster."),
    blocksize: str = typer.Option("64MB", "--blocksize", help="Input bytes per partition (bounds each worker's memory)."),
    keep: Optional[str] = typer.Option(None, "--keep", help="Comma-separated columns to copy to the output (default: the model's row key, if present)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out."),
) -> None:
    """Score DATA with a registered model, partition by partition on Dask, into OUT."""
    from tasks.errors import TuneflowError

    try:
        from tasks import predict as scoring
        from tasks.engine.cluster import dask_client
        from tasks.settings import get_settings

        settings = get_settings()
        scoring.parse_blocksize(blocksize)
        scoring.check_out(out, overwrite)
        scoring_model = scoring.load_scoring_model(model, settings.resolved_tracking_uri())
        job = scoring.prepare(
            scoring_model, data, out, blocksize=blocksize, keep=[c.strip() for c in keep.split(",") if c.strip()] if keep else None, overwrite=overwrite,
        )
        address = dask_address or settings.dask_address
        display = Progress(TextColumn("[bold]scoring partitions"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console)
        bar = display.add_task("", total=None)
        with dask_client(address, os.cpu_count() or 1, "cpu") as client, display:
            if not address:
                scoring.quiet_cluster_logs()
                client.run(scoring.quiet_cluster_logs)
            result = scoring.score(
                job, client=client, nthread=scoring.local_nthread(client, address),
                on_progress=lambda done, total: display.update(bar, completed=done, total=total),
            )
    except TuneflowError as exc:
        _fail(exc)
    Console(soft_wrap=True).print(escape(
        f"Scored {result.rows} rows with {result.model} in {result.seconds:.1f} s: {result.parts} partition{'s' if result.parts != 1 else ''} -> {result.out} "
        f"(columns: {', '.join(result.columns)})"
    ))


@app.command()
def report(
    study: str = typer.Option(..., "--study", help="The study's name (`tuneflow run` prints it)."),
    out: Optional[str] = typer.Option(None, "--out", help="HTML file to write (default: <store>/reports/<study>.html)."),
    storage: Optional[str] = typer.Option(None, "--storage", help="Study storage (default: the one `tuneflow run` uses)."),
    store: Optional[str] = typer.Option(None, "--store", help="Object store root whose reports/<study>.json fills the header (default: tuneflow run's)."),
) -> None:
    """Draw the study's static HTML report again (best so far, curves, rungs, importances, resources)."""
    from tasks import objectstore
    from tasks.errors import TuneflowError
    from tasks.reporting.study_report import render_study_report
    from tasks.settings import resolve_locations

    try:
        where = resolve_locations(store, storage)
        the_study = _load_study(study, where.study_storage)
        json_uri = objectstore.join(where.store, "reports", f"{study}.json")
        result = objectstore.read_json(json_uri, where.store_options) if objectstore.exists(json_uri, where.store_options) else None
        target = out or objectstore.join(where.store, "reports", f"{study}.html")
        objectstore.write_bytes_atomic(target, render_study_report(the_study, result).encode("utf-8"), objectstore.storage_options_for(target))
    except TuneflowError as exc:
        _fail(exc)
    Console(soft_wrap=True).print(f"study report: {target}")


@app.command()
def tensorboard(
    study: str = typer.Option(..., "--study", help="The study's name (`tuneflow run` prints it)."),
    out: str = typer.Option(..., "--out", help="Folder for the event files, one sub-folder per trial (then: tensorboard --logdir OUT)."),
    storage: Optional[str] = typer.Option(None, "--storage", help="Study storage (default: the one `tuneflow run` uses)."),
    top: Optional[int] = typer.Option(None, "--top", help="Only the best N trials (default: every complete trial that kept a curve)."),
) -> None:
    """Write the study's per-round learning curves and hyperparameters as TensorBoard event files."""
    from tasks.errors import TuneflowError
    from tasks.reporting.exports import write_tensorboard
    from tasks.settings import resolve_locations

    try:
        folders = write_tensorboard(_load_study(study, resolve_locations(None, storage).study_storage), out, top_k=top)
    except TuneflowError as exc:
        _fail(exc)
    if not folders:
        _fail(TuneflowError(f"No complete trial of study {study} kept a learning curve.", "run the study with this version of tuneflow (PBT members keep none)."))
    Console(soft_wrap=True).print(f"{len(folders)} trial(s) written to {out}; open them with: tensorboard --logdir {out}")


def _load_study(name: str, storage_url: str):
    """An existing study, or one clear error (a journal file that is not there is not created)."""
    from pathlib import Path

    import optuna

    from tasks.errors import TuneflowError
    from tasks.tuning.studies import is_journal, journal_path, open_storage

    if is_journal(storage_url) and not Path(journal_path(storage_url)).exists():
        raise TuneflowError(f"No study storage at {storage_url}.", "pass --storage with the URL `tuneflow run` printed.")
    try:
        return optuna.load_study(study_name=name, storage=open_storage(storage_url))
    except KeyError:
        raise TuneflowError(f"No study named {name!r} in {storage_url}.", "pass --study with the name `tuneflow run` printed (study: ...).") from None


def _require_prefect_api() -> None:
    """watch and relay emit events: without a server to send them to, refuse at once."""
    from tasks.errors import TuneflowError

    if not os.environ.get("PREFECT_API_URL"):
        raise TuneflowError("PREFECT_API_URL is not set, so the landed events would go nowhere.",
                            "point it at your Prefect server, e.g. export PREFECT_API_URL=http://127.0.0.1:4200/api.")


def _choice(kind: type[E], value: str, option: str) -> E:
    """`value` as a member of `kind`, or one clear error naming the choices."""
    from tasks.errors import TuneflowError

    try:
        return kind(value)
    except ValueError:
        raise TuneflowError(f"Bad {option} {value!r}.", f"use {option} {'|'.join(m.value for m in kind)}.") from None


_LINE_BREAKS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"  # what str.splitlines() splits on


def error_line(message: str) -> str:
    """`error: MESSAGE` on one line: a line break in a quoted name (a --target, a column) is escaped."""
    return "error: " + "".join(repr(ch)[1:-1] if ch in _LINE_BREAKS else ch for ch in message)


def _fail(exc: Exception) -> None:
    from tasks.redact import redact

    typer.secho(error_line(redact(str(exc))), err=True, fg=typer.colors.RED)  # one unwrapped line, greppable; no password
    raise typer.Exit(code=getattr(exc, "exit_code", 2))  # 2: bad input; 3: a service that did not come up (tasks.errors.ServiceError)


PREFECT_START_TRIES = 3


def _start_temporary_prefect_server() -> None:
    """Start the run's temporary Prefect server here (the flow call would start it itself and die
    with a traceback when it is slow), retrying a start that times out; then one ServiceError.
    Nothing to do with PREFECT_API_URL set (a Prefect server of one's own) or ephemeral mode off."""
    import prefect.settings as prefect_settings

    from tasks.errors import ServiceError

    if prefect_settings.PREFECT_API_URL.value() or not prefect_settings.PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        return
    import httpx
    from prefect.server.api.server import SubprocessASGIServer

    timeout = prefect_settings.PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()
    last = ""
    for attempt in range(1, PREFECT_START_TRIES + 1):
        server = SubprocessASGIServer()  # the instance the flow's Prefect client then finds running
        try:
            server.start()
            return
        except (RuntimeError, httpx.HTTPError, OSError) as exc:
            last = str(exc).split(" stdout:")[0].strip().rstrip(".")
            server.stop()  # Prefect leaves a timed-out server process running; the next try starts afresh
            if attempt < PREFECT_START_TRIES:
                console.print(escape(f"warning: the temporary Prefect server did not start (try {attempt} of {PREFECT_START_TRIES}): {last}; retrying"), soft_wrap=True)
    raise ServiceError(
        f"The temporary Prefect server did not start in {timeout} s, {PREFECT_START_TRIES} tries ({last}).",
        "on a busy machine, give it longer (export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=300), or run a Prefect server "
        "(prefect server start) and export PREFECT_API_URL=http://127.0.0.1:4200/api.",
    )


if __name__ == "__main__":
    sys.exit(app())
