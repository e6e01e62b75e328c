"""Time to quality: best-so-far validation score against wall time, per tool (issue 8 item 5).

    .venv/bin/python benchmarks/time_to_quality.py                      # 1M rows, synth28 + churn, 3 seeds, every tool (hours)
    .venv/bin/python benchmarks/time_to_quality.py --render             # rewrite the .md and .png from the .json
    .venv/bin/python benchmarks/time_to_quality.py --rows 20000 --datasets synth28 --seeds 0 --wall 20 --trials 6 \\
        --max-rounds 30 --tools default,random,optuna --name ttq-tiny  # a few minutes

It measures, per dataset, seed and tool, (1) the best validation AUC at equal wall time (`--wall`
seconds per tool run) and (2) the time to reach the *target*: the best validation AUC of a
`--trials`-trial (40) random search on the same data and seed. tuneflow's goal: its default reaches
the target in at most 1/3 of the random search's wall time.

Tools (`--tools`, each run in its own child process, one after the other):
  tuneflow, the real flow `flows.tune_xgboost.tune_xgboost(timeout=WALL, n_trials=None)`:
    default     the flow's defaults (no pruner/fidelity/strategy argument given)
    none        pruner none (on a flow without the `pruner` parameter: the flow as it is, which does not prune)
    sha-rounds  pruner sha, fidelity rounds          sha-data   pruner sha, fidelity data
    sha-both    pruner sha, fidelity both            hyperband  pruner hyperband, fidelity rounds
    pbt         strategy pbt
  optuna   Optuna as its XGBoost pruning example writes it: a DMatrix per trial in the objective,
           xgb.train with optuna_integration.XGBoostPruningCallback(trial, "valid-auc"), TPESampler,
           HyperbandPruner(min_resource=1, max_resource=max_rounds, reduction_factor=3),
           study.optimize(objective, n_jobs=PARALLELISM, timeout=WALL).
  ray      Ray Tune as its XGBoost guide writes it: a function trainable (tune.with_parameters),
           xgb.train with TuneReportCheckpointCallback, ASHAScheduler(max_t=max_rounds,
           grace_period=1, reduction_factor=2), TuneConfig(time_budget_s=WALL,
           max_concurrent_trials=PARALLELISM, num_samples=-1), 1 CPU per trial. Skipped, with a
           note, when `import ray` fails (it is in the `bench` extra).
  random   Optuna RandomSampler, no pruner, the same objective as `optuna`. One run serves twice:
           it runs until `--trials` trials have finished AND WALL has passed; trials 0..TRIALS-1
           (the ones a `--trials`-trial run asks, with the same PARALLELISM slots busy) define the
           target and the target run's wall time (when the last of them finished), and the trials
           finished by WALL give random search's best at equal wall time.

Same everything else: the same train/valid Parquet shards (tuneflow's shard step, run once per
dataset; every tool reads them), tuneflow's default search space (tasks.tuning.search_space.
DEFAULT_SPACE, mapped to each tool), hist, max_bin 256, AUC on the valid split, at most
`--max-rounds` rounds with early stopping after `--early-stopping-rounds`, PARALLELISM trials at a
time with nthread=1 each, categorical columns as XGBoost categories (as tuneflow trains them).
Seeds: the sampler's seed (Optuna's TPE/Random, Ray's BasicVariantGenerator, tuneflow's study
sampler). tuneflow's own `seed` argument also seeds the train/valid/test split, so the flow runs
with seed 0 (the shards' split) and the benchmark's seed is handed to the study's sampler by
wrapping the flow's `open_study`.

Best-so-far: the best validation score of any trial the tool finished with a model it returns,
stamped with the wall time it finished, measured from the tool's tune start:
  tuneflow  COMPLETE trials of the study (read back from its journal), at `datetime_complete`;
            PBT: each segment of a member's lineage (user attribute `tuneflow:pbt`: "t", "value"),
            at "t" (fallback `datetime_complete`). Pruned trials do not count. Tune start: when
            the flow calls its tune step (`strategies.tune`; `run_study` in an older flow; fallback:
            the first trial's `datetime_start`). The benchmark's seed also goes to that step (PBT's draws).
  optuna, random  COMPLETE trials (pruned ones do not count), value = the booster's best_score,
            at `datetime_complete`. Tune start: before reading the shards.
  ray       trials whose xgb.train ended by itself (early stopping: a checkpoint at end was
            reported; or all max_rounds rounds were trained); trials stopped by ASHA before max_t
            or cut by the time budget do not count. Value: the best `valid-auc` the trial
            reported (= best_score, as for the others), at the time of its last report (a
            `t_unix` stamp added to each report by the callback's results_postprocessing_fn).
            Tune start: after ray.init, before reading the shards.
Runs that stop asking at WALL finish the trials in flight; those finishing after WALL count for
the time to target, not for the best at equal wall time.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import statistics
import subprocess
import sys
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

# tuneflow variants: the flow arguments each one passes (only those; nothing else is given)
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "none": {"pruner": "none"},
    "sha-rounds": {"pruner": "sha", "fidelity": "rounds"},
    "sha-data": {"pruner": "sha", "fidelity": "data"},
    "sha-both": {"pruner": "sha", "fidelity": "both"},
    "hyperband": {"pruner": "hyperband", "fidelity": "rounds"},
    "pbt": {"strategy": "pbt"},
}
# Variants a flow without these parameters can still run as they mean: `none` is the flow that does not prune.
FALLBACK_WITHOUT_NEW_PARAMS = {"none"}
PEERS = ("optuna", "ray", "random")
TOOLS = (*VARIANTS, *PEERS)
DATASETS: dict[str, dict[str, Any]] = {
    "synth28": {"target": common.TARGET, "row_key": None},
    "churn": {"target": "churned", "row_key": "customer_id"},
}
DEFAULT_TOOLS = "default,none,sha-rounds,sha-data,sha-both,hyperband,pbt,optuna,ray,random"
GOAL_FRACTION = 1 / 3  # tuneflow's default reaches the target in <= 1/3 of the random search's wall time
ASHA = {"grace_period": 1, "reduction_factor": 2}  # Ray's XGBoost guide; max_t = max_rounds
HYPERBAND = {"min_resource": 1, "reduction_factor": 3}  # Optuna's HyperbandPruner docs; max_resource = max_rounds


def flow_parameters() -> set[str]:
    """The parameters of the flow function as it is in this checkout."""
    import flows.tune_xgboost as flow_module

    fn = getattr(flow_module.tune_xgboost, "fn", flow_module.tune_xgboost)
    return set(inspect.signature(fn).parameters)


def variant_kwargs(tool: str, params: set[str]) -> tuple[dict[str, Any] | None, str | None]:
    """(kwargs to pass, note): kwargs None when this flow cannot run the variant."""
    kw = VARIANTS[tool]
    missing = sorted(set(kw) - params)
    if not missing:
        return dict(kw), None
    if tool in FALLBACK_WITHOUT_NEW_PARAMS:
        return {k: v for k, v in kw.items() if k in params}, f"flow has no {missing} parameter(s): run as the flow is (it does not prune)"
    return None, f"needs the flow's new parameter(s) {missing}, which this checkout's flow does not have"


# ---------------------------------------------------------------- data


def churn_csv(rows: int, work: Path, seed: int = 7) -> Path:
    """tasks.data.sample.make_churn as one CSV (cached, with a done-marker like common.write_csv)."""
    label = f"{rows / 1e6:g}M" if rows >= 1_000_000 else f"{rows // 1000}k"
    path = work / "data" / f"churn-{label}-s{seed}" / "churn.csv"
    done = path.with_suffix(".csv.done")
    if path.exists() and done.exists():
        return path
    from tasks.data.sample import make_churn

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    make_churn(rows, seed=seed).to_csv(tmp, index=False)
    tmp.replace(path)
    done.write_text(str(rows))
    return path


def dataset_csv(name: str, rows: int, work: Path) -> Path:
    return common.dataset_csv(rows, work=work) if name == "synth28" else churn_csv(rows, work)


def shard_like_flow(csv: Path, target: str, row_key: str | None, store: str) -> tuple[dict[str, Any], float]:
    """The flow's validate + shard bodies (validate_task, shard_task) on the default Dask client:
    the validation profile carries the categories, so the manifest is the one the flow writes and
    the flow runs later reuse it. An existing manifest is reused (0 s)."""
    from tasks import objectstore
    from tasks.data import inputs, shard
    from tasks.plan import plan_run
    from tasks.validation.report import raise_if_failed
    from tasks.validation.run import validate_dataset

    plan = plan_run(str(csv), target, "binary", None, None, None, common.SHARD_SEED, row_key, 1, None, 1)
    uri = objectstore.join(shard.version_uri(store, plan.name, plan.fingerprint), shard.MANIFEST)
    if objectstore.exists(uri):
        return objectstore.read_json(uri), 0.0
    started = time.perf_counter()
    report = validate_dataset(None, plan.files, plan.schema, plan.expectations, plan.data_options)
    raise_if_failed(report)
    ddf = inputs.read_dataset(plan.files, plan.schema, plan.data_options)
    manifest = shard.shard_dataset(
        ddf, plan.files, plan.schema, report["profile"], store=store, name=plan.name, fp=plan.fingerprint, seed=common.SHARD_SEED,
        fractions=shard.DEFAULT_FRACTIONS, row_key=row_key, storage_options=plan.data_options,
    )
    return manifest, time.perf_counter() - started


def prepare_dataset(name: str, a: argparse.Namespace, store: str) -> dict[str, Any]:
    """CSV + shards once per dataset; returns the dataset's record (with the manifest path)."""
    from tasks.contracts import Device
    from tasks.engine.cluster import dask_client

    csv = dataset_csv(name, a.rows, a.work.parent)
    spec = DATASETS[name]
    if name == "synth28":
        manifest, shard_s = common.existing_manifest(csv, store), 0.0
        if manifest is None:
            with dask_client(None, a.parallelism, Device.CPU):
                manifest, shard_s = common.shard_step(csv, store)
    else:
        with dask_client(None, a.parallelism, Device.CPU):
            manifest, shard_s = shard_like_flow(csv, spec["target"], spec["row_key"], store)
    manifest_path = a.work / f"manifest-{name}-{a.rows}.json"
    manifest_path.write_text(json.dumps(manifest))
    return {
        "name": name, "csv": str(csv), "csv_bytes": csv.stat().st_size, "rows": a.rows, "target": spec["target"], "row_key": spec["row_key"],
        "fingerprint": manifest["fingerprint"], "train_rows": manifest["splits"]["train"]["rows"], "valid_rows": manifest["splits"]["valid"]["rows"],
        "features": len(manifest["features"]), "categorical_features": sum(f["kind"] == "categorical" for f in manifest["features"]),
        "shard_s": round(shard_s, 2), "manifest_path": str(manifest_path),
    }


def load_matrices(manifest: dict[str, Any]) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
    """(X, y, Xv, yv, DMatrix keywords): the shards encoded as tuneflow's trials read them."""
    from tasks.engine.encoding import feature_names, feature_types
    from tasks.engine.shards import load_split

    X, y = load_split(manifest, "train", {})
    Xv, yv = load_split(manifest, "valid", {})
    kw = {"feature_names": feature_names(manifest["features"]), "feature_types": feature_types(manifest["features"]), "enable_categorical": True}
    return X, y, Xv, yv, kw


# ---------------------------------------------------------------- tuneflow


def run_tuneflow(a: argparse.Namespace, tool: str, ds: dict[str, Any], seed: int, store: str) -> dict[str, Any]:
    home = common.fresh_home(a.work / f"home-{uuid.uuid4().hex[:8]}")
    import flows.tune_xgboost as flow_module
    from tasks.contracts import Device

    kwargs, note = variant_kwargs(tool, flow_parameters())
    if kwargs is None:
        return {"tool": tool, "skipped": note}
    marks: dict[str, Any] = {}
    restore: list[tuple[Any, str, Any]] = []

    def patch(owner: Any, attr: str, wrapper: Any) -> None:
        restore.append((owner, attr, getattr(owner, attr)))
        setattr(owner, attr, wrapper)

    # The tune phase: the flow's strategies.tune (search or PBT), or run_study in a flow before strategies.
    # Its `seed` (PBT's draws and exploit choices) is the benchmark's seed too.
    strategies = getattr(flow_module, "strategies", None)
    owner, attr = (strategies, "tune") if strategies is not None and hasattr(strategies, "tune") else (flow_module, "run_study")
    if hasattr(owner, attr):
        tune_fn = getattr(owner, attr)

        def timed_tune(*args: Any, **kw: Any) -> Any:
            marks.setdefault("tune_start", time.time())
            if "seed" in kw:
                kw["seed"] = seed
            try:
                return tune_fn(*args, **kw)
            finally:
                marks["tune_end"] = time.time()

        patch(owner, attr, timed_tune)
        marks["tune_fn"] = f"{getattr(owner, '__name__', owner)}.{attr}"
    if hasattr(flow_module, "open_study"):  # the benchmark's seed to the study's sampler; the flow's seed keeps the split
        opener = flow_module.open_study

        def seeded_open_study(*args: Any, **kw: Any) -> Any:
            args_ = list(args)
            if len(args_) > 3:
                args_[3] = seed
            else:
                kw["seed"] = seed
            marks["sampler_seed"] = seed
            return opener(*args_, **kw)

        patch(flow_module, "open_study", seeded_open_study)
    study_name = f"ttq-{tool}-{ds['name']}-s{seed}-{uuid.uuid4().hex[:6]}"
    storage = str(home / "optuna.journal")
    with common.TreeMonitor(interval=0.5) as mon:
        started = time.time()
        result = flow_module.tune_xgboost(
            data=ds["csv"], target=ds["target"], task="binary", n_trials=None, timeout=a.wall, parallelism=a.parallelism,
            store=store, storage=storage, study_name=study_name, model_name=study_name, max_rounds=a.max_rounds,
            early_stopping_rounds=a.early_stopping_rounds, device=Device.CPU, seed=common.SHARD_SEED, row_key=ds["row_key"], **kwargs,
        )
        total = time.time() - started
    for owner, attr, fn in reversed(restore):
        setattr(owner, attr, fn)
    # read back with Optuna itself (the journal file the flow wrote), not through the flow's opener
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    study = optuna.load_study(study_name=study_name, storage=JournalStorage(JournalFileBackend(storage)))
    trials = study.get_trials(deepcopy=False)
    started_at = [t.datetime_start.timestamp() for t in trials if t.datetime_start]
    t0 = marks.get("tune_start") or min(started_at, default=started)
    from tasks.tuning import records

    pbt_attr = getattr(records, "PBT_ATTR", "tuneflow:pbt")
    points, states = [], {}
    for t in trials:
        states[t.state.name] = states.get(t.state.name, 0) + 1
        lineage = t.user_attrs.get(pbt_attr)
        if lineage:  # PBT: every segment that finished with a checkpoint and a value
            for seg in lineage:
                if seg.get("value") is None:
                    continue
                when = seg.get("t") or (t.datetime_complete.timestamp() if t.datetime_complete else None)
                if when is not None:
                    points.append({"t": round(when - t0, 3), "value": float(seg["value"]), "trial": t.number, "segment": seg.get("segment")})
        elif t.state.name == "COMPLETE" and t.value is not None:
            points.append({"t": round(t.datetime_complete.timestamp() - t0, 3), "value": float(t.value), "trial": t.number})
    points.sort(key=lambda p: p["t"])
    return {
        "tool": tool, "family": "tuneflow", "how": f"tune_xgboost(timeout={a.wall}, n_trials=None, parallelism={a.parallelism}" + "".join(f", {k}={v!r}" for k, v in kwargs.items()) + ")",
        "note": note, "flow_kwargs": kwargs, "points": points, "trials": len(trials), "states": states,
        "pruned": result.get("pruned_this_run", states.get("PRUNED", 0)), "tune_start": f"{marks['tune_fn']} call" if "tune_start" in marks else "first trial start",
        "sampler_seed_applied": marks.get("sampler_seed") == seed, "tune_s": result.get("tune_seconds"), "total_s": round(total, 2),
        "startup_s": round(t0 - started, 2), "run_s": round((marks.get("tune_end") or t0) - t0, 2), "best_value_reported": result.get("best_value"),
        "flow_result": {k: result.get(k) for k in ("placement", "rows", "best_trial", "trials_this_run", "failed_this_run", "pruned_this_run")},
        "monitor": mon.report(),
    }


# ---------------------------------------------------------------- Optuna (TPE + Hyperband) and random search


def optuna_objective(a: argparse.Namespace, data: tuple, S: dict[str, Any]) -> Any:
    """The objective of Optuna's XGBoost pruning example: DMatrix per trial, xgb.train with the pruning callback."""
    import optuna_integration
    import xgboost as xgb

    X, y, Xv, yv, kw = data
    fixed = {**common.fixed_params(), "nthread": 1}

    def objective(trial: Any) -> float:
        dtrain = xgb.DMatrix(X, label=y, **kw)
        dvalid = xgb.DMatrix(Xv, label=yv, **kw)
        param = dict(fixed)
        for name, spec in S.items():
            if not isinstance(spec, dict):
                continue
            if spec["type"] == "int":
                param[name] = trial.suggest_int(name, spec["low"], spec["high"])
            elif spec["type"] == "float":
                param[name] = trial.suggest_float(name, spec["low"], spec["high"], log=bool(spec.get("log")))
            else:
                param[name] = trial.suggest_categorical(name, spec["choices"])
        pruning_callback = optuna_integration.XGBoostPruningCallback(trial, "valid-auc")
        bst = xgb.train(param, dtrain, num_boost_round=a.max_rounds, evals=[(dvalid, "valid")],
                        early_stopping_rounds=a.early_stopping_rounds, verbose_eval=False, callbacks=[pruning_callback])
        return float(bst.best_score)

    return objective


def optuna_points(study: Any, t0: float) -> list[dict[str, Any]]:
    pts = [{"t": round(t.datetime_complete.timestamp() - t0, 3), "value": float(t.value), "trial": t.number}
           for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE" and t.value is not None]
    return sorted(pts, key=lambda p: p["t"])


def run_optuna(a: argparse.Namespace, tool: str, ds: dict[str, Any], seed: int, store: str) -> dict[str, Any]:
    import optuna

    from tasks.tuning.search_space import DEFAULT_SPACE

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    manifest = json.loads(Path(ds["manifest_path"]).read_text())
    random = tool == "random"
    with common.TreeMonitor(interval=0.5) as mon:
        t0 = time.time()
        objective = optuna_objective(a, load_matrices(manifest), DEFAULT_SPACE)
        if random:
            study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=seed), pruner=optuna.pruners.NopPruner())

            def enough(study: Any, trial: Any) -> None:  # the TRIALS-trial target run and WALL, whichever ends later
                done = sum(t.state.is_finished() for t in study.get_trials(deepcopy=False))
                if done >= a.trials and time.time() - t0 >= a.wall:
                    study.stop()

            study.optimize(objective, n_jobs=a.parallelism, callbacks=[enough])
        else:
            pruner = optuna.pruners.HyperbandPruner(min_resource=HYPERBAND["min_resource"], max_resource=a.max_rounds, reduction_factor=HYPERBAND["reduction_factor"])
            study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed), pruner=pruner)
            study.optimize(objective, n_jobs=a.parallelism, timeout=a.wall)
        t1 = time.time()
    trials = study.get_trials(deepcopy=False)
    states: dict[str, int] = {}
    for t in trials:
        states[t.state.name] = states.get(t.state.name, 0) + 1
    row = {
        "tool": tool, "family": "optuna", "points": optuna_points(study, t0), "trials": len(trials), "states": states,
        "pruned": states.get("PRUNED", 0), "run_s": round(t1 - t0, 2), "total_s": round(t1 - t0, 2), "monitor": mon.report(),
    }
    if random:
        first = [t for t in trials if t.number < a.trials]
        values = [t.value for t in first if t.state.name == "COMPLETE" and t.value is not None]
        row["how"] = (f"RandomSampler(seed={seed}), no pruner, study.optimize(n_jobs={a.parallelism}) until {a.trials} trials finished and "
                      f"{a.wall} s passed; trials 0..{a.trials - 1} = the target run")
        row["target"] = {
            "value": max(values) if values else None, "trials": len(first), "complete": len(values),
            "wall_s": round(max(t.datetime_complete.timestamp() for t in first if t.datetime_complete) - t0, 3) if first else None,
        }
    else:
        row["how"] = (f"TPESampler(seed={seed}) + HyperbandPruner(min_resource={HYPERBAND['min_resource']}, max_resource={a.max_rounds}, "
                      f"reduction_factor={HYPERBAND['reduction_factor']}), XGBoostPruningCallback(trial, 'valid-auc'), "
                      f"study.optimize(n_jobs={a.parallelism}, timeout={a.wall})")
    return row


# ---------------------------------------------------------------- Ray Tune (ASHA)


def run_ray(a: argparse.Namespace, tool: str, ds: dict[str, Any], seed: int, store: str) -> dict[str, Any]:
    try:
        import ray
        from ray import tune
        from ray.tune.schedulers import ASHAScheduler
        from ray.tune.search.basic_variant import BasicVariantGenerator
    except ImportError as exc:
        return {"tool": tool, "skipped": f"import ray failed ({exc}); install the bench extra: pip install -e '.[bench]'"}

    from tasks.tuning.search_space import DEFAULT_SPACE

    manifest = json.loads(Path(ds["manifest_path"]).read_text())
    with common.TreeMonitor(interval=0.5) as mon:
        s0 = time.time()
        ray.init(num_cpus=a.parallelism, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        t0 = time.time()
        X, y, Xv, yv, kw = load_matrices(manifest)

        def train_xgb(config: dict, X=None, y=None, Xv=None, yv=None, kw=None, max_rounds=500, esr=30) -> None:
            import time as _time

            import xgboost as xgb
            from ray.tune.integration.xgboost import TuneReportCheckpointCallback

            dtrain = xgb.DMatrix(X, label=y, **kw)
            dvalid = xgb.DMatrix(Xv, label=yv, **kw)
            xgb.train(
                config, dtrain, num_boost_round=max_rounds, evals=[(dvalid, "valid")], early_stopping_rounds=esr, verbose_eval=False,
                callbacks=[TuneReportCheckpointCallback(metrics={"valid-auc": "valid-auc"}, results_postprocessing_fn=lambda d: {**d, "t_unix": _time.time()})],
            )

        space = common.ray_space(tune, DEFAULT_SPACE)
        tuner = tune.Tuner(
            tune.with_resources(
                tune.with_parameters(train_xgb, X=X, y=y, Xv=Xv, yv=yv, kw=kw, max_rounds=a.max_rounds, esr=a.early_stopping_rounds),
                resources={"cpu": 1},
            ),
            tune_config=tune.TuneConfig(
                metric="valid-auc", mode="max", scheduler=ASHAScheduler(max_t=a.max_rounds, **ASHA), num_samples=-1,
                time_budget_s=a.wall, max_concurrent_trials=a.parallelism, search_alg=BasicVariantGenerator(random_state=seed),
            ),
            run_config=tune.RunConfig(name=f"ttq-{uuid.uuid4().hex[:6]}", storage_path=str(a.work / "ray_results"), verbose=0),
            param_space=space,
        )
        results = tuner.fit()
        t1 = time.time()
        ray.shutdown()
    points, counts = [], {"trials": 0, "errors": 0, "ended_by_itself": 0, "stopped_or_cut": 0, "never_started": 0}
    for r in results:  # num_samples=-1: trials generated ahead that never ran are left out
        df = r.metrics_dataframe
        if r.error:
            counts["errors"] += 1
            counts["trials"] += 1
            continue
        if df is None or df.empty or "valid-auc" not in df:
            counts["never_started"] += 1
            continue
        counts["trials"] += 1
        if r.checkpoint is None and df["training_iteration"].max() < a.max_rounds:
            counts["stopped_or_cut"] += 1  # ASHA stopped it before max_t, or the time budget cut it
            continue
        counts["ended_by_itself"] += 1
        when = df["t_unix"].max() if "t_unix" in df else df["timestamp"].max()
        points.append({"t": round(float(when) - t0, 3), "value": float(df["valid-auc"].max()), "trial": r.path.rsplit("/", 1)[-1][:40]})
    points.sort(key=lambda p: p["t"])
    return {
        "tool": tool, "family": "ray", "points": points, "trials": counts["trials"], "states": counts, "pruned": counts["stopped_or_cut"],
        "how": (f"Tuner(with_resources(with_parameters(fn), cpu=1)), ASHAScheduler(max_t={a.max_rounds}, grace_period={ASHA['grace_period']}, "
                f"reduction_factor={ASHA['reduction_factor']}), BasicVariantGenerator(random_state={seed}), time_budget_s={a.wall}, "
                f"max_concurrent_trials={a.parallelism}, TuneReportCheckpointCallback"),
        "startup_s": round(t0 - s0, 2), "run_s": round(t1 - t0, 2), "total_s": round(t1 - s0, 2), "monitor": mon.report(),
    }


# ---------------------------------------------------------------- summary


def best_by(points: list[dict[str, Any]], t: float) -> float | None:
    vals = [p["value"] for p in points if p["t"] <= t]
    return max(vals) if vals else None


def time_to(points: list[dict[str, Any]], target: float | None) -> float | None:
    if target is None:
        return None
    for p in sorted(points, key=lambda p: p["t"]):
        if p["value"] >= target - 1e-12:
            return p["t"]
    return None


def curve(points: list[dict[str, Any]]) -> list[list[float]]:
    """Best-so-far as steps: [t, best] at each improvement."""
    out: list[list[float]] = []
    for p in sorted(points, key=lambda p: p["t"]):
        if not out or p["value"] > out[-1][1]:
            out.append([p["t"], p["value"]])
    return out


def spread(values: list[float | None]) -> dict[str, Any]:
    """Median, min, max over seeds; None (not reached) counts as +inf, so a median is only given
    when at least half of the seeds have a value."""
    vals = [math.inf if v is None else float(v) for v in values]
    if not vals:
        return {"median": None, "min": None, "max": None, "n": 0, "with_value": 0}
    fin = lambda x: None if math.isinf(x) else round(x, 6)  # noqa: E731
    return {"median": fin(statistics.median(vals)), "min": fin(min(vals)), "max": fin(max(vals)), "n": len(vals),
            "with_value": sum(v is not None for v in values)}


def ratio(x: float | None, y: float | None) -> float | None:
    return round(x / y, 4) if x is not None and y else None


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    """Per dataset: the targets per seed, and per tool the per-seed figures and their spread."""
    wall = result["params"]["wall"]
    out: dict[str, Any] = {}
    for ds in result["params"]["datasets"]:
        runs = [r for r in result["runs"] if r["dataset"] == ds and not r.get("skipped")]
        targets = {r["seed"]: r["target"] for r in runs if r["tool"] == "random" and r.get("target")}
        per_seed: dict[str, dict[int, dict[str, Any]]] = {}
        for r in runs:
            tgt = targets.get(r["seed"], {})
            per_seed.setdefault(r["tool"], {})[r["seed"]] = {
                "best_at_wall": best_by(r["points"], wall), "time_to_target_s": time_to(r["points"], tgt.get("value")),
                "trials": r.get("trials"), "pruned": r.get("pruned"), "finished_with_model": len(r["points"]),
            }
        for tool, seeds in per_seed.items():
            for seed, rec in seeds.items():
                ttt, tgt = rec["time_to_target_s"], targets.get(seed, {})
                rec["over_target_wall"] = ratio(ttt, tgt.get("wall_s"))
                for peer in ("optuna", "ray"):
                    rec[f"over_{peer}"] = ratio(ttt, per_seed.get(peer, {}).get(seed, {}).get("time_to_target_s"))
        tools = {}
        for tool, seeds in per_seed.items():
            recs = [seeds[s] for s in sorted(seeds)]
            tools[tool] = {
                "seeds": sorted(seeds), "best_at_wall": spread([r["best_at_wall"] for r in recs]),
                "time_to_target_s": spread([r["time_to_target_s"] for r in recs]),
                "over_target_wall": spread([r["over_target_wall"] for r in recs]),
                "over_optuna": spread([r["over_optuna"] for r in recs]), "over_ray": spread([r["over_ray"] for r in recs]),
                "trials": spread([r["trials"] for r in recs]), "pruned": spread([r["pruned"] for r in recs]),
                "per_seed": {str(s): seeds[s] for s in sorted(seeds)},
            }
        entry: dict[str, Any] = {"targets": {str(k): v for k, v in sorted(targets.items())}, "tools": tools}
        d = tools.get("default")
        if d and targets:
            ratios = [d["per_seed"].get(str(s), {}).get("over_target_wall") for s in sorted(targets)]
            entry["goal"] = {
                "what": f"tuneflow default reaches the target in <= {GOAL_FRACTION:.3g} of the {result['params']['trials']}-trial random search's wall time",
                "per_seed": ratios, "median": spread(ratios)["median"],
                "met": bool(ratios and all(x is not None and x <= GOAL_FRACTION for x in ratios)),
            }
        out[ds] = entry
    return out


# ---------------------------------------------------------------- output


def fmt_spread(s: dict[str, Any], digits: int = 4, unit: str = "", none: str = "not reached") -> str:
    """'median [min, max] (k/n)'; `none` where a seed has no value (the target not reached, no trial finished)."""
    if not s or not s.get("n"):
        return ""
    f = lambda v: none if v is None else f"{v:.{digits}g}{unit}"  # noqa: E731
    if s["n"] == 1:
        return f(s["median"])
    text = f"{f(s['median'])} [{f(s['min'])}, {f(s['max'])}]"
    return text + (f" ({s['with_value']}/{s['n']})" if s["with_value"] < s["n"] else "")


def markdown(result: dict[str, Any], png: str | None) -> str:
    p = result["params"]
    text = common.header("Time to quality: best-so-far validation AUC against wall time", result["command"], result)
    text += (
        f"{p['parallelism']} trials at a time (nthread=1 each); `--wall {p['wall']:g}` s per tool run from its tune start; target: the best "
        f"valid AUC of a {p['trials']}-trial random search (same seed); at most {p['max_rounds']} rounds, early stopping {p['early_stopping_rounds']}; "
        f"tuneflow's default search space for every tool; seeds {', '.join(map(str, p['seeds']))}. "
        "Cells: median [min, max] over seeds; (k/n): seeds where the tool reached the target (a median needs half of them).\n\n"
    )
    if png:
        text += f"![best-so-far validation AUC against wall time]({png})\n\n"
    skipped = [r for r in result["runs"] if r.get("skipped")]
    for ds in p["datasets"]:
        s = result["summary"].get(ds)
        d = result["datasets"].get(ds)
        if not s or not d:
            continue
        text += (
            f"### {ds}\n\n{d['rows']:,} rows (train {d['train_rows']:,} / valid {d['valid_rows']:,}), {d['features']} features "
            f"({d['categorical_features']} categorical), target `{d['target']}`.\n\n"
        )
        trows = [{"seed": k, "target AUC": round(v["value"], 5) if v.get("value") is not None else None, f"{p['trials']}-trial random search s": v.get("wall_s")}
                 for k, v in s["targets"].items()]
        text += common.md_table(trows) + "\n"
        rows = []
        for tool in p["tools"]:
            t = s["tools"].get(tool)
            if not t:
                continue
            rows.append({
                "tool": tool, f"best AUC at {p['wall']:g} s": fmt_spread(t["best_at_wall"], 5, none="none finished"), "time to target": fmt_spread(t["time_to_target_s"], 4, " s"),
                "/ random-search wall": fmt_spread(t["over_target_wall"], 3), "/ optuna": fmt_spread(t["over_optuna"], 3),
                "/ ray": fmt_spread(t["over_ray"], 3), "trials": fmt_spread(t["trials"], 4), "pruned": fmt_spread(t["pruned"], 4),
            })
        text += common.md_table(rows)
        if "goal" in s:
            g = s["goal"]
            text += f"\nGoal ({g['what']}): per seed {g['per_seed']}, median {g['median']}: **{'met' if g['met'] else 'NOT met'}**.\n"
        text += "\n"
    if skipped:
        text += "Skipped: " + "; ".join(sorted({f"{r['tool']}: {r['skipped']}" for r in skipped})) + ".\n\n"
    text += (
        "Best-so-far counts trials finished with a model the tool returns (tuneflow, Optuna, random: COMPLETE trials, PBT: each "
        "lineage segment; Ray: trials whose xgb.train ended by itself), at the wall time each finished, from the tool's tune start "
        "(tuneflow: the flow's tune step, `strategies.tune`, which includes the workers' first data load; Optuna/random: before reading the shards; "
        "Ray: after `ray.init`). The random search runs once per seed: until the target's trials have finished and the wall has passed.\n"
    )
    return text


COLORS = {"default": "#d62728", "none": "#ff9896", "sha-rounds": "#1f77b4", "sha-data": "#aec7e8", "sha-both": "#17becf", "hyperband": "#9467bd",
          "pbt": "#8c564b", "optuna": "#2ca02c", "ray": "#ff7f0e", "random": "#7f7f7f"}


def plot(result: dict[str, Any], path: Path) -> Path | None:
    """One panel per dataset: per tool the median best-so-far over seeds (band: min..max), the
    target (dashed) and the random search's wall time (dotted)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    p = result["params"]
    datasets = [d for d in p["datasets"] if any(r["dataset"] == d and not r.get("skipped") for r in result["runs"])]
    if not datasets:
        return None
    fig, axes = plt.subplots(1, len(datasets), figsize=(6.5 * len(datasets) + 2.4, 4.8), squeeze=False)
    for ax, ds in zip(axes[0], datasets):
        runs = [r for r in result["runs"] if r["dataset"] == ds and not r.get("skipped")]
        tmax = max([p["wall"] * 1.05] + [q["t"] for r in runs for q in r["points"]])
        grid = np.linspace(0, tmax, 600)
        lows = []
        for tool in p["tools"]:
            rs = [r for r in runs if r["tool"] == tool and r["points"]]
            if not rs:
                continue
            ys = np.array([[best_by(r["points"], g) if best_by(r["points"], g) is not None else np.nan for g in grid] for r in rs], dtype=float)
            have = (~np.isnan(ys)).sum(0) * 2 >= len(rs)
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # all-NaN columns before a tool's first finished trial
                med, lo, hi = np.nanmedian(ys, 0), np.nanmin(ys, 0), np.nanmax(ys, 0)
            med[~have] = np.nan
            ax.step(grid, med, where="post", color=COLORS.get(tool), lw=2.4 if tool == "default" else 1.4, label=tool)
            if len(rs) > 1:
                ax.fill_between(grid, lo, hi, step="post", color=COLORS.get(tool), alpha=0.12, lw=0)
            lows.append(np.nanpercentile(ys, 25) if np.isfinite(ys).any() else np.nan)
        s = result["summary"].get(ds, {})
        tv = [v["value"] for v in s.get("targets", {}).values() if v.get("value") is not None]
        tw = [v["wall_s"] for v in s.get("targets", {}).values() if v.get("wall_s") is not None]
        if tv:
            ax.axhline(statistics.median(tv), color="k", ls="--", lw=1, label=f"target ({p['trials']}-trial random search)")
        if tw:
            ax.axvline(statistics.median(tw), color="k", ls=":", lw=1, label="random search wall time")
            ax.axvline(statistics.median(tw) * GOAL_FRACTION, color="#d62728", ls=":", lw=1, label="goal: 1/3 of it")
        ax.axvline(p["wall"], color="#bbbbbb", lw=1)
        top = np.nanmax([q["value"] for r in runs for q in r["points"]] or [1.0])
        low = np.nanmin([x for x in lows if np.isfinite(x)] or [top - 0.01])
        if tv:
            low = min(low, statistics.median(tv))  # the target line stays in view
        ax.set_ylim(low - 0.1 * (top - low + 1e-4), top + 0.05 * (top - low + 1e-4))
        ax.set_xlim(0, tmax)
        ax.set_title(f"{ds} ({result['datasets'][ds]['rows']:,} rows)")
        ax.set_xlabel("wall time from tune start (s)")
        ax.set_ylabel("best-so-far validation AUC")
        ax.grid(alpha=0.3)
    return common.save_figure(fig, list(axes[0]), path, legend_inches=2.4, dpi=120)


def write(result: dict[str, Any], a: argparse.Namespace) -> tuple[Path, Path, Path | None]:
    result["summary"] = summarize(result)
    png = plot(result, a.out_dir / f"{a.name}.png") if result["runs"] else None
    if png is None:
        (a.out_dir / f"{a.name}.png").unlink(missing_ok=True)
    js, md = common.write_results(a.name, result, markdown(result, png.name if png else None), a.out_dir)
    return js, md, png


# ---------------------------------------------------------------- driver


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000, help="rows of each dataset's CSV (80%% train, 10%% valid)")
    p.add_argument("--datasets", default="synth28,churn", help=f"comma-separated, some of {','.join(DATASETS)}")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated sampler seeds; every tool runs once per seed")
    p.add_argument("--parallelism", type=int, default=2, help="trials at a time, every tool")
    p.add_argument("--wall", type=float, default=240, help="seconds per tool run (the random search runs at least this long)")
    p.add_argument("--trials", type=int, default=40, help="trials of the random search that defines the target")
    p.add_argument("--tools", default=DEFAULT_TOOLS, help=f"comma-separated, some of {','.join(TOOLS)}")
    p.add_argument("--max-rounds", type=int, default=500)
    p.add_argument("--early-stopping-rounds", type=int, default=30)
    p.add_argument("--out-dir", type=Path, default=common.RESULTS)
    p.add_argument("--name", default="time-to-quality", help="results name: <out-dir>/<name>.json, .md, .png")
    p.add_argument("--work", type=Path, default=common.WORK / "time-to-quality", help="runs' scratch; the CSVs go to its parent's data/")
    p.add_argument("--render", action="store_true", help="rewrite <name>.md and <name>.png from <name>.json and stop")
    p.add_argument("--child", help=argparse.SUPPRESS)  # internal: run one tool on one dataset and seed, write its row to --child-out
    p.add_argument("--child-dataset", help=argparse.SUPPRESS)
    p.add_argument("--child-seed", type=int, help=argparse.SUPPRESS)
    p.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    a.work = a.work.resolve()
    if a.render:
        result = json.loads((a.out_dir / f"{a.name}.json").read_text())
        paths = write(result, a)
        print(f"[ttq] wrote {', '.join(str(x) for x in paths if x)}", flush=True)
        return result
    a.work.mkdir(parents=True, exist_ok=True)
    store = str(a.work / "store")

    if a.child:
        ds = json.loads((a.work / f"dataset-{a.child_dataset}-{a.rows}.json").read_text())
        run = run_tuneflow if a.child in VARIANTS else {"optuna": run_optuna, "random": run_optuna, "ray": run_ray}[a.child]
        row = run(a, a.child, ds, a.child_seed, store)
        a.child_out.write_text(json.dumps(row, default=str))
        return row

    tools = [t for t in a.tools.split(",") if t]
    datasets = [d for d in a.datasets.split(",") if d]
    seeds = [int(s) for s in a.seeds.split(",") if s.strip()]
    bad = [t for t in tools if t not in TOOLS] + [d for d in datasets if d not in DATASETS]
    if bad or not tools or not datasets or not seeds:
        raise SystemExit(f"unknown or missing tool(s)/dataset(s) {bad}; tools: {TOOLS}, datasets: {tuple(DATASETS)}")
    if "random" not in tools:
        print("[ttq] note: without the random tool there is no target: only the best at equal wall time is reported", flush=True)
    args = argv if argv is not None else sys.argv[1:]
    result: dict[str, Any] = {
        "benchmark": "time_to_quality", "machine": common.machine(), "command": ("python benchmarks/time_to_quality.py " + " ".join(args)).strip(),
        "params": {"rows": a.rows, "datasets": datasets, "seeds": seeds, "tools": tools, "parallelism": a.parallelism, "wall": a.wall,
                   "trials": a.trials, "max_rounds": a.max_rounds, "early_stopping_rounds": a.early_stopping_rounds,
                   "asha": {**ASHA, "max_t": a.max_rounds}, "optuna_hyperband": {**HYPERBAND, "max_resource": a.max_rounds},
                   "variants": {t: VARIANTS[t] for t in tools if t in VARIANTS}},
        "versions": common.versions("tuneflow", "prefect", "optuna", "optuna-integration", "xgboost", "dask", "distributed", "ray"),
        "datasets": {}, "runs": [],
    }
    params = flow_parameters() if any(t in VARIANTS for t in tools) else set()
    result["params"]["flow_has_new_parameters"] = {"pruner", "fidelity", "strategy"} <= params
    a.out_dir.mkdir(parents=True, exist_ok=True)
    for ds_name in datasets:
        print(f"[ttq] {ds_name}: {a.rows:,} rows: CSV + shards ...", flush=True)
        ds = prepare_dataset(ds_name, a, store)
        (a.work / f"dataset-{ds_name}-{a.rows}.json").write_text(json.dumps(ds))
        result["datasets"][ds_name] = ds
        print(f"[ttq] {ds_name}: train {ds['train_rows']:,} / valid {ds['valid_rows']:,} rows, shard {ds['shard_s']} s", flush=True)
        for seed in seeds:
            for tool in tools:
                base = {"tool": tool, "dataset": ds_name, "seed": seed}
                if tool in VARIANTS and variant_kwargs(tool, params)[0] is None:
                    note = variant_kwargs(tool, params)[1]
                    print(f"[ttq] {ds_name} seed {seed} {tool}: skipped ({note})", flush=True)
                    result["runs"].append({**base, "skipped": note})
                    continue
                out = a.work / f"row-{ds_name}-{seed}-{tool}.json"
                out.unlink(missing_ok=True)
                log = a.work / f"{ds_name}-{seed}-{tool}.log"
                cmd = [sys.executable, __file__, *args, "--child", tool, "--child-dataset", ds_name, "--child-seed", str(seed), "--child-out", str(out)]
                print(f"[ttq] {ds_name} seed {seed} {tool} ... (log {log})", flush=True)
                with open(log, "w") as fh:
                    rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=common.REPO).returncode
                if rc != 0 or not out.exists():
                    raise SystemExit(f"[ttq] {tool} on {ds_name} seed {seed} failed (exit {rc}); see {log}:\n" + log.read_text()[-3000:])
                row = {**json.loads(out.read_text()), **base}
                result["runs"].append(row)
                if row.get("skipped"):
                    print(f"[ttq] {ds_name} seed {seed} {tool}: skipped ({row['skipped']})", flush=True)
                else:
                    best = best_by(row["points"], a.wall)
                    extra = f"; target {row['target']['value']:.5f} after {row['target']['wall_s']} s" if row.get("target", {}).get("value") is not None else ""
                    print(f"[ttq] {ds_name} seed {seed} {tool}: {row['trials']} trials ({len(row['points'])} with a model, {row.get('pruned')} pruned/stopped), "
                          f"best at {a.wall:g} s {best if best is None else round(best, 5)}, run {row.get('run_s')} s{extra}", flush=True)
                write(result, a)  # after every run: a cut-off benchmark still reports what it measured
    js, md, png = write(result, a)
    for ds_name, s in result["summary"].items():
        for tool, t in s["tools"].items():
            print(f"[ttq] {ds_name} {tool}: best at wall {fmt_spread(t['best_at_wall'], 5, none='none finished')}; time to target {fmt_spread(t['time_to_target_s'], 4, ' s')}; "
                  f"/ random-search wall {fmt_spread(t['over_target_wall'], 3)}", flush=True)
        if "goal" in s:
            print(f"[ttq] {ds_name} goal: {'met' if s['goal']['met'] else 'NOT met'} (default / random-search wall per seed {s['goal']['per_seed']})", flush=True)
    print(f"[ttq] wrote {js}, {md}" + (f" and {png}" if png else ""), flush=True)
    return result


if __name__ == "__main__":
    main()
