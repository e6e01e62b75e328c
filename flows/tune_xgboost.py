"""The tune-xgboost flow: validate -> shard -> tune -> register, as the pipeline reads.

Each step is a Prefect task in flows/steps.py over a plain function in tasks/; the artifacts it
shows are in flows/artifacts.py; where things live is resolved by tasks.settings.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.task_runners import ThreadPoolTaskRunner

from flows import artifacts, steps, strategies
from tasks import objectstore
from tasks.contracts import (
    DEFAULT_EARLY_STOPPING_ROUNDS, DEFAULT_FIDELITY, DEFAULT_MAX_ROUNDS, DEFAULT_N_TRIALS, DEFAULT_PARALLELISM, DEFAULT_POPULATION,
    DEFAULT_SAMPLER, Device, Fidelity, Placement, Pruner, RunResult, Sampler, Schedule, Strategy, Task, WarmStart, trial_request,
)
from tasks.data import shard, subset
from tasks.data.shard import DEFAULT_FRACTIONS, MANIFEST
from tasks.engine.cluster import dask_client, trial_threads
from tasks.engine.placement import choose_placement, open_trainer, worker_memory
from tasks.engine.resident import release_data
from tasks.plan import plan_run
from tasks.policy import check_flow_inputs
from tasks.problem import objective_params
from tasks.redact import redact
from tasks.settings import resolve_locations
from tasks.tuning.choices import SearchChoices, check_placement, plan_tuning, search_choices
from tasks.tuning.objectives import pareto_front
from tasks.tuning.results import best_of_study
from tasks.tuning.rungs import make_pruner
from tasks.tuning.samplers import build_sampler
from tasks.tuning.studies import default_study_name, enqueue_configs, open_storage, open_study
from tasks.tuning.warm_start import check_warm_start, seed_new_study, stamp, study_identity
from tasks.validation import report_markdown


TRAIN_FRACTION = DEFAULT_FRACTIONS["train"]


@flow(name="tune-xgboost", task_runner=ThreadPoolTaskRunner(max_workers=16), log_prints=True)
def tune_xgboost(
    data: str,
    target: str,
    task: Task = Task.BINARY,
    metric: str | None = None,
    n_trials: int | None = DEFAULT_N_TRIALS,
    timeout: float | None = None,
    parallelism: int = DEFAULT_PARALLELISM,
    space: str | None = None,
    expectations: str | None = None,
    storage: str | None = None,
    store: str | None = None,
    dask_address: str | None = None,
    device: Device = Device.AUTO,
    placement: Placement = Placement.AUTO,
    enqueue: str | None = None,
    seed: int = 0,
    row_key: str | None = None,
    study_name: str | None = None,
    model_name: str | None = None,
    max_rounds: int = DEFAULT_MAX_ROUNDS,
    early_stopping_rounds: int = DEFAULT_EARLY_STOPPING_ROUNDS,
    trial_timeout: float | None = None,
    strategy: Strategy = Strategy.SEARCH,
    pruner: Pruner | None = None,
    fidelity: Fidelity = DEFAULT_FIDELITY,
    schedule: Schedule = Schedule.ASYNC,
    population: int = DEFAULT_POPULATION,
    sampler: Sampler = DEFAULT_SAMPLER,
    objectives: str | None = None,
    within: str | None = None,
    stop_at: float | None = None,
    patience: int | None = None,
    min_delta: float = 0.0,
    max_cost: float | None = None,
    warm_start: str = WarmStart.AUTO,
    sample: str | None = None,
    dataset_name: str | None = None,
) -> RunResult:
    """Validate, shard, tune and register an XGBoost model for `target` in `data`."""
    log = get_run_logger()
    # the input policy (tasks/policy.py): parameters may come from a deployment or an event
    check_flow_inputs(data=data, space=space, expectations=expectations, enqueue=enqueue, store=store, storage=storage,
                      study_name=study_name, model_name=model_name, dataset_name=dataset_name, warm_start=warm_start)
    choices = search_choices(strategy, pruner, fidelity, schedule, population, max_rounds, multi_objective=bool(objectives and "," in objectives), early_stopping_rounds=early_stopping_rounds)
    plan = plan_run(data, target, task, metric, space, expectations, seed, row_key, n_trials, timeout, parallelism, enqueue, sample=sample, dataset_name=dataset_name)
    tuning = plan_tuning(
        plan, choices, n_trials=n_trials, sampler=sampler, objectives=objectives, within=within, stop_at=stop_at,
        patience=patience, min_delta=min_delta, max_cost=max_cost, warm_start=warm_start,
    )
    where = resolve_locations(store, storage, dask_address)
    # its first use of the store, so its write probe fails an unwritable store before the cluster starts
    cached = {"result_storage": artifacts.results_storage(where.store, where.store_options)}
    name = study_name or default_study_name(plan.name, plan.fingerprint, plan.task, plan.metric, plan.space, tuning.objectives.costs)
    if choices.strategy == Strategy.PBT and not study_name:
        name += "-pbt"  # a population is not a search: its own study
    identity = study_identity(plan, tuning)
    check_warm_start(where.study_storage, tuning.warm_start, identity)  # a named parent: checked before anything is written
    log.info("dataset %s: %d file(s), %.1f MB, fingerprint %s%s", plan.name, len(plan.files), sum(f["size"] for f in plan.files) / 1e6, plan.fingerprint,
             f", sample {plan.sample}" if plan.sample else "")

    with dask_client(where.dask_address, parallelism, device) as client:
        artifacts.publish_dashboard_link(client.dashboard_link, plan.name)
        # validation reads every row, sample or not, so a smoke run and the full run share its cached report
        full_fp = shard.fingerprint(plan.files, plan.schema, seed=seed, fractions=shard.DEFAULT_FRACTIONS, row_key=row_key)
        report = steps.validate_task.with_options(**cached)(plan.files, plan.schema, plan.expectations, plan.data_options, full_fp, plan.name)
        artifacts.publish_validation_report(report_markdown(report), plan.name, full_fp)
        log.info("validation passed: %d rows, %d expectations", report["rows"], len(report["results"]))
        workers = len(client.scheduler_info()["workers"])
        # before sharding, so a fidelity these rows cannot serve leaves no dataset version behind
        check_placement(choices, Placement.DATA if placement == Placement.DATA else Placement.TRIAL, int(subset.sampled_rows(plan.sample, report["rows"]) * TRAIN_FRACTION), workers)
        manifest = steps.shard_task.with_options(**cached)(
            plan.files, plan.schema, report["profile"], where.store, plan.name, plan.fingerprint, seed, row_key, {**plan.data_options, **where.store_options},
            sample=plan.sample, rows=report["rows"],
        )
        log.info("dataset version %s: %s", plan.fingerprint, {s: v["rows"] for s, v in manifest["splits"].items()})

        chosen = choose_placement(manifest, worker_memory(client), placement)
        check_placement(choices, chosen, manifest["splits"]["train"]["rows"], workers)
        in_flight = 1 if chosen == Placement.DATA else parallelism  # a data-parallel trial already uses every worker
        log.info("placement: %s-parallel, %d trial(s) in flight; %s", chosen.value, in_flight, describe(choices))
        the_study = open_study(
            where.study_storage, name, tuning.objectives.directions, seed, make_pruner(choices.pruner, list(choices.rungs)),
            sampler=lambda s: build_sampler(tuning.sampler, plan.space, s),
        )
        log.info("sampler %s (%s); objectives %s; stopping: %s", tuning.sampler.name.value, tuning.sampler.reason,
                 tuning.objectives.describe(), tuning.rules.describe())
        warm = seed_new_study(the_study, open_storage(where.study_storage), tuning.warm_start, identity)
        if warm:
            log.info("warm start from study %s: %d trials %s", warm["from"], warm["trials"], warm["mode"])
            # past the seeded trials, as a resumed study is: with the parent's seed the sampler's
            # random start-up draws would repeat the parent's first configurations
            the_study.sampler = build_sampler(tuning.sampler, plan.space, seed + len(the_study.get_trials(deepcopy=False)))
        stamp(the_study, identity)
        enqueue_configs(the_study, plan.enqueue)
        template = trial_request(
            manifest, {**objective_params(plan.task, len(manifest["classes"] or []), plan.metric), "seed": seed},
            storage_options=where.store_options, placement=chosen, device=Device(device), nthread=trial_threads(client, where.dask_address),
            num_boost_round=max_rounds, early_stopping_rounds=early_stopping_rounds, measure_latency=tuning.objectives.measures_latency,
        )
        leaderboard = artifacts.Leaderboard(plan.direction, costs=tuning.objectives.costs, dataset=plan.name)
        with open_trainer(client, chosen, manifest, where.store_options) as trainer:
            outcome = strategies.tune(
                the_study, plan.space, choices, tuning, template, trainer, store=where.store, n_trials=tuning.n_trials, timeout=timeout,
                parallelism=in_flight, trial_timeout=trial_timeout, seed=seed, on_event=leaderboard,
            )
        leaderboard.publish(f"final: {outcome.completed} completed this run, best {outcome.best_value}")
        if where.dask_address:  # a shared cluster: free worker (and GPU) memory for the next study
            client.run(release_data)
        log.info("tuning stopped by %s", outcome.stopped_by)
        front = pareto_front(the_study, tuning.objectives)
        best = best_of_study(the_study, plan.space, outcome, tuning.objectives)
        best["metrics"] = {
            **{f"trial_{k}": v for k, v in best.pop("resources").items()},
            "study_cpu_hours": outcome.cpu_seconds / 3600, "study_core_hours_held": outcome.cost_hours, "study_gpu_hours": outcome.gpu_seconds / 3600,
        }
        default_model = f"tuneflow-{plan.name}" + ("-sample" if plan.sample else "")  # a smoke run never competes with real models
        registered = steps.register_task(
            best, manifest, plan.metric, plan.direction, model_name or default_model, report, artifacts.study_plots(the_study), where,
        )
        log.info("tuning: %d completed, %d pruned, %d failed in %.1f s; slots busy %s of the time",
                 outcome.completed, outcome.pruned, outcome.failed, outcome.seconds, outcome.slot_utilisation)

    result = RunResult(
        dataset=plan.name, fingerprint=plan.fingerprint, manifest_uri=objectstore.join(manifest["uri"], MANIFEST),
        rows={s: v["rows"] for s, v in manifest["splits"].items()}, study_name=the_study.study_name, storage=redact(where.study_storage),
        metric=plan.metric, direction=plan.direction, trials_this_run=outcome.completed + outcome.failed + outcome.pruned,
        failed_this_run=outcome.failed, pruned_this_run=outcome.pruned, strategy=choices.strategy.value, pruner=choices.pruner.value,
        fidelity=choices.fidelity.value, schedule=choices.schedule.value, sampler=tuning.sampler.name.value, sampler_reason=tuning.sampler.reason,
        objectives=tuning.objectives.names, pareto_front=front, stopped_by=outcome.stopped_by, cost_hours=outcome.cost_hours,
        cpu_hours=round(outcome.cpu_seconds / 3600, 6), gpu_hours=round(outcome.gpu_seconds / 3600, 6),
        warm_start=warm, sample=plan.sample, slot_utilisation=outcome.slot_utilisation, recovered_trials=outcome.recovered, placement=chosen.value, best_trial=best["number"],
        best_value=best["value"], best_params=best["params"], registered=registered, tune_seconds=round(outcome.seconds, 2),
        report_uri=objectstore.join(where.store, "reports", f"{the_study.study_name}.json"),
        report_html_uri=objectstore.join(where.store, "reports", f"{the_study.study_name}.html"),
    )
    # the study report next to the JSON one, and in the registered MLflow run with the best trials' learning curves
    result["report_html_uri"] = steps.report_task(the_study, result, where)
    if result["report_html_uri"]:
        artifacts.publish_study_report(result["report_html_uri"], plan.name)
    objectstore.write_json_atomic(result["report_uri"], result, where.store_options)
    artifacts.publish_summary(result)
    return result


def describe(choices: SearchChoices) -> str:
    """One log phrase for the strategy, e.g. 'search, pruner sha over rounds (rungs 55/166/500), async'."""
    if choices.strategy == Strategy.PBT:
        return f"population-based training: {choices.population} members, {choices.segments} segments"
    rungs = "/".join(f"{r.rounds}r@{r.fraction:.2g}" if r.fraction < 1 else f"{r.rounds}" for r in choices.rungs)
    return f"search, pruner {choices.pruner.value} over {choices.fidelity.value} (rungs {rungs}), {choices.schedule.value}"
