"""vs peers, CPU: the same fixed list of configurations run by tuneflow, Ray Tune, Optuna and
Hyperopt, and by a plain pool of processes on a resident QuantileDMatrix (the limit).

    .venv/bin/python benchmarks/peers.py                     # large trials: 1M rows, 40 configurations, all tools
    .venv/bin/python benchmarks/peers.py --regime small      # small trials: 500k train rows, 20 configurations, pool/tuneflow/optuna
    .venv/bin/python benchmarks/peers.py --rows 20000 --trials 4 --max-rounds 20 --tools tuneflow,optuna

Two regimes (--regime sets the defaults; any flag given overrides them):
  large  1M rows (800k train), 40 configurations, at most 500 rounds, early stopping 30;
         tools tuneflow, ray, optuna, hyperopt. Results: peers.json/.md.
  small  625k rows (500k train), 20 configurations, at most 200 rounds, early stopping 20;
         tools pool, tuneflow, optuna (issue 7 item 5). Results: peers-small.json/.md.

Same data for every tool: the seeded synth28 CSV (28 float32 features, binary; see common.py)
sharded once by tuneflow's shard step; every tool reads the same train/valid Parquet shards.
Same configurations: a seeded random draw from tuneflow's default space, written to a JSON file
and fed as `enqueue` (tuneflow), `points_to_evaluate` (Ray Tune, Hyperopt), `enqueue_trial`
(Optuna) and the task list (pool). Same training: hist, max_bin 256, AUC on the valid split,
early stopping, 2 trials at a time with nthread=1 each (Hyperopt's fmin is sequential: one trial
at a time with nthread=2).

- tuneflow: the real flow, tune_xgboost(enqueue=..., pruner="none"), in its own process (the orchestrator).
- pool: the limit. A multiprocessing pool of `parallelism` processes; each loads the shards and
  builds one QuantileDMatrix pair at its first trial and keeps them; every trial is a plain
  xgb.train on them. No study, no scheduler: what two trials at a time cost at best.
- Ray Tune, Optuna, Hyperopt: as their docs write them (a DMatrix per trial).

Each tool runs in its own child process, one after the other. Timings: "tune" is the tuning phase
(reading the shards + all trials; for tuneflow the flow's `tune_seconds`, which includes the
workers' first-trial data load; for the pool from the first task to the last result, first-trial
loads included), "total" adds the tool's own start-up (the flow's LocalCluster, validation, shard
lookup and MLflow registration; ray.init; the pool's process start). For tuneflow the CPU seconds
of the flow process (the orchestrator: ask/tell loop, Prefect task threads, Dask client and
scheduler, heartbeat, artifacts), of Prefect's temporary server and of the Dask workers are read
over the tune phase.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

TOOLS = ("tuneflow", "pool", "ray", "optuna", "hyperopt")
PEERS = ("ray", "optuna", "hyperopt")  # the pool is the limit, not a peer
REGIMES: dict[str, dict[str, Any]] = {
    "large": {"rows": 1_000_000, "trials": 40, "max_rounds": 500, "early_stopping_rounds": 30, "tools": "tuneflow,ray,optuna,hyperopt", "name": "peers"},
    "small": {"rows": 625_000, "trials": 20, "max_rounds": 200, "early_stopping_rounds": 20, "tools": "pool,tuneflow,optuna", "name": "peers-small"},
}


# ---------------------------------------------------------------- tuneflow


def run_tuneflow(a: argparse.Namespace, csv: Path, store: str, configs_path: Path, work: Path) -> dict[str, Any]:
    """The real flow: validate -> shard (reused) -> tune -> register."""
    home = common.fresh_home(work / f"home-{uuid.uuid4().hex[:8]}")
    import flows.strategies as strategies_module
    import flows.tune_xgboost as flow_module
    from tasks.contracts import Device
    from tasks.tuning.records import result_of
    from tasks.tuning.studies import open_study

    # Clocks only: the CPU of every process of the tree is read when the flow's tune phase starts and ends.
    tune_phase: dict[str, Any] = {}
    run_study = strategies_module.run_study  # the loop the flow's tuning step runs

    def timed_run_study(*args: Any, **kw: Any) -> Any:
        before, t0 = common.tree_cpu(), time.perf_counter()
        try:
            return run_study(*args, **kw)
        finally:
            tune_phase.update(wall_s=round(time.perf_counter() - t0, 3), cpu_s=common.cpu_between(before, common.tree_cpu()))

    strategies_module.run_study = timed_run_study
    study_name = f"bench-peers-{uuid.uuid4().hex[:8]}"
    with common.TreeMonitor(interval=0.5) as mon:
        started = time.perf_counter()
        result = flow_module.tune_xgboost(
            data=str(csv), target=common.TARGET, task="binary", n_trials=a.trials, parallelism=a.parallelism,
            enqueue=str(configs_path), store=store, storage=str(home / "optuna.journal"), study_name=study_name,
            model_name=study_name, max_rounds=a.max_rounds, early_stopping_rounds=a.early_stopping_rounds,
            device=Device.CPU, seed=common.SHARD_SEED,
            pruner="none",  # the same fixed configurations trained in full by every tool: no pruning
        )
        total = time.perf_counter() - started
    strategies_module.run_study = run_study
    study = open_study(str(home / "optuna.journal"), study_name, "maximize", 0)
    trials = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    per_trial = []
    for t in sorted(trials, key=lambda t: t.number):
        u = result_of(t)
        per_trial.append({
            "number": t.number, "value": t.value, "rounds": u.get("rounds"),
            "train_s": u.get("train_seconds"), "setup_s": u.get("setup_seconds"), "load_s": u.get("load_seconds"),
            "worker_s": u.get("seconds"), "latency_s": (t.datetime_complete - t.datetime_start).total_seconds(),
            "start": t.datetime_start.timestamp(), "end": t.datetime_complete.timestamp(), "pid": u.get("pid"),
        })
    return {
        "tool": "tuneflow", "how": f"flow tune_xgboost(enqueue=..., parallelism={a.parallelism}); placement {result['placement']}",
        "concurrency": a.parallelism, "nthread": 1, "tune_s": result["tune_seconds"], "total_s": round(total, 2),
        "best_value": result["best_value"], "trials": len(trials), "per_trial": per_trial, "monitor": mon.report(),
        "tune_phase": {**tune_phase, "orchestrator_cpu_s_per_trial": round(tune_phase["cpu_s"].get("this process", 0.0) / max(1, len(trials)), 4)},
        "flow_result": {k: result[k] for k in ("placement", "rows", "best_trial", "trials_this_run", "failed_this_run")},
    }


# ---------------------------------------------------------------- the pool (the limit)

_RESIDENT: dict[str, Any] = {}  # in a pool process: the manifest's QuantileDMatrix pair, built at its first trial


def _pool_init(ready: Any) -> None:
    """A pool process starts: import what a trial needs, then wait until every process has."""
    import pyarrow.parquet  # noqa: F401
    import xgboost  # noqa: F401

    import tasks.engine.shards  # noqa: F401

    ready.wait()


def _pool_trial(job: tuple[dict[str, Any], dict[str, Any], int, int]) -> dict[str, Any]:
    """One trial in a pool process: plain xgb.train on the resident QuantileDMatrix."""
    import xgboost as xgb

    manifest, params, max_rounds, esr = job
    start = time.time()
    s = time.perf_counter()
    setup = 0.0
    if _RESIDENT.get("fingerprint") != manifest["fingerprint"]:
        X, y = common.load_xy(manifest, "train")
        Xv, yv = common.load_xy(manifest, "valid")
        dtrain = xgb.QuantileDMatrix(X, label=y, max_bin=params["max_bin"])
        _RESIDENT.update(fingerprint=manifest["fingerprint"], dtrain=dtrain, dvalid=xgb.QuantileDMatrix(Xv, label=yv, ref=dtrain, max_bin=params["max_bin"]))
        setup = time.perf_counter() - s
    b = time.perf_counter()
    bst = xgb.train(params, _RESIDENT["dtrain"], num_boost_round=max_rounds, evals=[(_RESIDENT["dvalid"], "valid")],
                    early_stopping_rounds=esr, verbose_eval=False)
    e = time.perf_counter()
    return {"setup_s": round(setup, 4), "train_s": round(e - b, 4), "rounds": bst.num_boosted_rounds(), "value": float(bst.best_score),
            "pid": os.getpid(), "start": start, "end": time.time()}


def run_pool(a: argparse.Namespace, manifest: dict[str, Any], configs: list[dict[str, Any]], work: Path) -> dict[str, Any]:
    """`parallelism` processes, each with its own resident QuantileDMatrix, xgb.train per configuration."""
    import multiprocessing as mp

    fixed = {**common.fixed_params(), "nthread": 1}
    jobs = [(manifest, {**fixed, **c}, a.max_rounds, a.early_stopping_rounds) for c in configs]
    with common.TreeMonitor(interval=0.5) as mon:
        t0 = time.perf_counter()
        ctx = mp.get_context("spawn")
        ready = ctx.Barrier(a.parallelism + 1)
        with ctx.Pool(a.parallelism, initializer=_pool_init, initargs=(ready,)) as pool:
            ready.wait()  # every process started, its imports done
            t1 = time.perf_counter()
            before = common.tree_cpu()
            recs = list(pool.imap_unordered(_pool_trial, jobs, chunksize=1))
            t2 = time.perf_counter()
            cpu = common.cpu_between(before, common.tree_cpu())
    return {
        "tool": "pool", "how": f"multiprocessing Pool({a.parallelism}): xgb.train on a QuantileDMatrix each process builds once (the limit)",
        "concurrency": a.parallelism, "nthread": 1, "tune_s": round(t2 - t1, 2), "total_s": round(t2 - t0, 2), "startup_s": round(t1 - t0, 2),
        "best_value": max(r["value"] for r in recs), "trials": len(recs), "per_trial": recs, "monitor": mon.report(),
        "tune_phase": {"wall_s": round(t2 - t1, 3), "cpu_s": cpu, "orchestrator_cpu_s_per_trial": round(cpu.get("this process", 0.0) / max(1, len(recs)), 4)},
    }


# ---------------------------------------------------------------- Ray Tune


def run_ray(a: argparse.Namespace, manifest: dict[str, Any], configs: list[dict[str, Any]], work: Path) -> dict[str, Any]:
    """Ray Tune as its XGBoost docs show: tune.with_parameters, a function trainable per trial,
    TuneReportCheckpointCallback, points_to_evaluate, 1 CPU per trial on a 2-CPU Ray."""
    import ray
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from tasks.tuning.search_space import DEFAULT_SPACE

    times_dir = work / f"ray-times-{uuid.uuid4().hex[:8]}"
    times_dir.mkdir(parents=True)
    with common.TreeMonitor(interval=0.5) as mon:
        t0 = time.perf_counter()
        ray.init(num_cpus=a.parallelism, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        t1 = time.perf_counter()
        X, y = common.load_xy(manifest, "train")
        Xv, yv = common.load_xy(manifest, "valid")

        def train_xgb(config: dict, X=None, y=None, Xv=None, yv=None, times_dir=None, max_rounds=500, esr=30) -> None:
            import json as _json
            import time as _time

            import xgboost as xgb
            from ray.tune.integration.xgboost import TuneReportCheckpointCallback

            s = _time.perf_counter()
            dtrain = xgb.DMatrix(X, label=y)
            dvalid = xgb.DMatrix(Xv, label=yv)
            b = _time.perf_counter()
            booster = xgb.train(
                config, dtrain, num_boost_round=max_rounds, evals=[(dvalid, "valid")], early_stopping_rounds=esr,
                verbose_eval=False, callbacks=[TuneReportCheckpointCallback(metrics={"valid-auc": "valid-auc"}, frequency=0)],
            )
            e = _time.perf_counter()
            rec = {"build_s": b - s, "train_s": e - b, "rounds": booster.num_boosted_rounds(), "best_score": booster.best_score}
            with open(f"{times_dir}/{tune.get_context().get_trial_id()}.json", "w") as f:
                _json.dump(rec, f)

        space = common.ray_space(tune, DEFAULT_SPACE)
        tuner = tune.Tuner(
            tune.with_resources(
                tune.with_parameters(train_xgb, X=X, y=y, Xv=Xv, yv=yv, times_dir=str(times_dir), max_rounds=a.max_rounds, esr=a.early_stopping_rounds),
                resources={"cpu": 1},
            ),
            tune_config=tune.TuneConfig(
                metric="valid-auc", mode="max", num_samples=len(configs),
                search_alg=BasicVariantGenerator(points_to_evaluate=[dict(c) for c in configs]),
                max_concurrent_trials=a.parallelism,
            ),
            run_config=tune.RunConfig(name=f"peers-{uuid.uuid4().hex[:6]}", storage_path=str(work / "ray_results"), verbose=0),
            param_space=space,
        )
        results = tuner.fit()
        t2 = time.perf_counter()
        best = results.get_best_result(metric="valid-auc", mode="max", scope="all")
        ray.shutdown()
    recs = [json.loads(p.read_text()) for p in times_dir.glob("*.json")]
    errors = sum(1 for r in results if r.error)
    return {
        "tool": "ray", "how": f"Tuner(with_resources(with_parameters(fn), cpu=1), points_to_evaluate), max_concurrent_trials={a.parallelism}",
        "concurrency": a.parallelism, "nthread": 1, "tune_s": round(t2 - t1, 2), "total_s": round(t2 - t0, 2),
        "startup_s": round(t1 - t0, 2), "best_value": float(best.metrics_dataframe["valid-auc"].max()), "trials": len(recs), "failed": errors,
        "best_value_check": max((r["best_score"] for r in recs), default=None),
        "per_trial": recs, "monitor": mon.report(),
    }


# ---------------------------------------------------------------- Optuna


def run_optuna(a: argparse.Namespace, manifest: dict[str, Any], configs: list[dict[str, Any]], work: Path) -> dict[str, Any]:
    """Optuna as its XGBoost example shows (xgb.train in the objective), enqueue_trial, n_jobs=2."""
    import optuna
    import xgboost as xgb

    from tasks.tuning.search_space import DEFAULT_SPACE as S

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    fixed = {**common.fixed_params(), "nthread": 1}
    recs: list[dict[str, Any]] = []
    with common.TreeMonitor(interval=0.5) as mon:
        t0 = time.perf_counter()
        X, y = common.load_xy(manifest, "train")
        Xv, yv = common.load_xy(manifest, "valid")

        def objective(trial: optuna.Trial) -> float:
            s = time.perf_counter()
            dtrain = xgb.DMatrix(X, label=y)
            dvalid = xgb.DMatrix(Xv, label=yv)
            param = {
                **fixed,
                "learning_rate": trial.suggest_float("learning_rate", S["learning_rate"]["low"], S["learning_rate"]["high"], log=True),
                "max_depth": trial.suggest_int("max_depth", S["max_depth"]["low"], S["max_depth"]["high"]),
                "min_child_weight": trial.suggest_float("min_child_weight", S["min_child_weight"]["low"], S["min_child_weight"]["high"], log=True),
                "subsample": trial.suggest_float("subsample", S["subsample"]["low"], S["subsample"]["high"]),
                "colsample_bytree": trial.suggest_float("colsample_bytree", S["colsample_bytree"]["low"], S["colsample_bytree"]["high"]),
                "reg_lambda": trial.suggest_float("reg_lambda", S["reg_lambda"]["low"], S["reg_lambda"]["high"], log=True),
                "reg_alpha": trial.suggest_float("reg_alpha", S["reg_alpha"]["low"], S["reg_alpha"]["high"], log=True),
            }
            b = time.perf_counter()
            bst = xgb.train(param, dtrain, num_boost_round=a.max_rounds, evals=[(dvalid, "valid")],
                            early_stopping_rounds=a.early_stopping_rounds, verbose_eval=False)
            e = time.perf_counter()
            recs.append({"number": trial.number, "build_s": b - s, "train_s": e - b, "rounds": bst.num_boosted_rounds(), "value": bst.best_score})
            return bst.best_score

        study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0))
        for c in configs:
            study.enqueue_trial(c)
        study.optimize(objective, n_trials=len(configs), n_jobs=a.parallelism)
        t1 = time.perf_counter()
    return {
        "tool": "optuna", "how": f"study.optimize(objective, n_trials={len(configs)}, n_jobs={a.parallelism}) + enqueue_trial",
        "concurrency": a.parallelism, "nthread": 1, "tune_s": round(t1 - t0, 2), "total_s": round(t1 - t0, 2),
        "best_value": study.best_value, "trials": len(recs), "per_trial": recs, "monitor": mon.report(),
    }


# ---------------------------------------------------------------- Hyperopt


def run_hyperopt(a: argparse.Namespace, manifest: dict[str, Any], configs: list[dict[str, Any]], work: Path) -> dict[str, Any]:
    """Hyperopt fmin with points_to_evaluate. fmin evaluates one point at a time (its parallel
    Trials need MongoDB, Spark or an ipyparallel cluster), so each trial gets both cores."""
    import numpy as np
    import xgboost as xgb
    from hyperopt import STATUS_OK, fmin, hp, tpe

    from tasks.tuning.search_space import DEFAULT_SPACE

    nthread = os.cpu_count() or 1
    fixed = {**common.fixed_params(), "nthread": nthread}
    space = {}
    for name, spec in DEFAULT_SPACE.items():
        if not isinstance(spec, dict):
            continue
        if spec["type"] == "int":
            space[name] = hp.uniformint(name, spec["low"], spec["high"])
        elif spec.get("log"):
            space[name] = hp.loguniform(name, math.log(spec["low"]), math.log(spec["high"]))
        else:
            space[name] = hp.uniform(name, spec["low"], spec["high"])
    recs: list[dict[str, Any]] = []
    with common.TreeMonitor(interval=0.5) as mon:
        t0 = time.perf_counter()
        X, y = common.load_xy(manifest, "train")
        Xv, yv = common.load_xy(manifest, "valid")

        def objective(params: dict[str, Any]) -> dict[str, Any]:
            s = time.perf_counter()
            dtrain = xgb.DMatrix(X, label=y)
            dvalid = xgb.DMatrix(Xv, label=yv)
            b = time.perf_counter()
            bst = xgb.train({**fixed, **params, "max_depth": int(params["max_depth"])}, dtrain, num_boost_round=a.max_rounds,
                            evals=[(dvalid, "valid")], early_stopping_rounds=a.early_stopping_rounds, verbose_eval=False)
            e = time.perf_counter()
            recs.append({"build_s": b - s, "train_s": e - b, "rounds": bst.num_boosted_rounds(), "value": bst.best_score})
            return {"loss": -bst.best_score, "status": STATUS_OK}

        # fmin runs len(points_to_evaluate) + max_evals trials (as documented): stop after the points.
        n = len(configs)
        fmin(objective, space, algo=tpe.suggest, max_evals=n, points_to_evaluate=[dict(c) for c in configs],
             rstate=np.random.default_rng(0), show_progressbar=False, early_stop_fn=lambda trials, *args: (len(recs) >= n, args))
        t1 = time.perf_counter()
    return {
        "tool": "hyperopt", "how": f"fmin(tpe.suggest, max_evals={len(configs)}, points_to_evaluate): sequential, nthread={nthread}",
        "concurrency": 1, "nthread": nthread, "tune_s": round(t1 - t0, 2), "total_s": round(t1 - t0, 2),
        "best_value": max(r["value"] for r in recs), "trials": len(recs), "per_trial": recs, "monitor": mon.report(),
    }


# ---------------------------------------------------------------- driver


def tuneflow_breakdown(row: dict[str, Any], parallelism: int) -> dict[str, Any]:
    """Where tuneflow's tune phase goes, in wall seconds (slot-seconds divided by parallelism)."""
    pt = row["per_trial"]
    tune = row["tune_s"]
    train = sum(t["train_s"] or 0 for t in pt)
    setup = sum(t["setup_s"] or 0 for t in pt)
    worker = sum(t["worker_s"] or 0 for t in pt)
    latency = sum(t["latency_s"] for t in pt)
    first_start = min(t["start"] for t in pt)
    ends = sorted(t["end"] for t in pt)
    # the tail: between the last two trial ends, one slot has nothing left to run
    tail = ends[-1] - ends[-2] if len(ends) > 1 else 0.0
    p = parallelism
    return {
        "tune_wall_s": tune,
        "boosting_s": round(train / p, 2),
        "data_load_and_quantile_matrix_s": round(setup / p, 2),
        "worker_other_s": round((worker - train - setup) / p, 2),
        "orchestration_in_trial_s": round((latency - worker) / p, 2),
        "idle_slots_s": round((p * tune - latency) / p, 2),
        "of_which_tail_one_slot_idle_s": round(tail / p, 2),
        "before_first_trial_s": round(first_start - (ends[-1] - tune), 2) if pt else None,
        "orchestration_ms_per_trial": round(1000 * (latency - worker) / len(pt), 1),
        "first_trial_setup_s": [t["setup_s"] for t in pt if t.get("load_s")],
    }


def summarize(rows: list[dict[str, Any]], a: argparse.Namespace) -> dict[str, Any]:
    by = {r["tool"]: r for r in rows}
    for r in rows:
        r["trials_per_hour"] = round(3600 * r["trials"] / r["tune_s"], 1) if r["tune_s"] else None
        r["boost_sum_s"] = round(sum(t.get("train_s") or 0 for t in r["per_trial"]), 2)
        r["setup_sum_s"] = round(sum((t.get("setup_s") or t.get("build_s") or 0) for t in r["per_trial"]), 2)
    out: dict[str, Any] = {}
    tf = by.get("tuneflow")
    if not tf:
        return out
    for r in rows:
        r["tune_vs_tuneflow"] = round(r["tune_s"] / tf["tune_s"], 3) if tf["tune_s"] else None
    limit = tf["boost_sum_s"] / a.parallelism
    out["limit_s"] = round(limit, 2)
    out["tuneflow_over_limit"] = round(tf["tune_s"] / limit, 3) if limit else None
    out["within_15pct_of_limit"] = bool(limit and tf["tune_s"] <= 1.15 * limit)
    out["tuneflow_breakdown"] = tuneflow_breakdown(tf, a.parallelism)
    out["ratios"] = {r["tool"]: r["tune_vs_tuneflow"] for r in rows if r["tool"] in PEERS}
    out["faster_than_every_peer"] = all(v > 1.0 for v in out["ratios"].values()) if out["ratios"] else None
    phase = tf["tune_phase"]
    out["orchestrator"] = {
        "tune_phase_wall_s": phase["wall_s"], "cpu_s": phase["cpu_s"],
        "flow_process_cpu_s_per_trial": phase["orchestrator_cpu_s_per_trial"],
        "prefect_server_cpu_s_per_trial": round(phase["cpu_s"].get("prefect server", 0.0) / max(1, tf["trials"]), 4),
    }
    pool = by.get("pool")
    if pool:  # issue 7 item 5: the orchestrator must not slow the trials
        train_ratio = tf["boost_sum_s"] / pool["boost_sum_s"] if pool["boost_sum_s"] else None
        tune_ratio = tf["tune_s"] / pool["tune_s"] if pool["tune_s"] else None
        out["pool"] = {
            "pool_tune_s": pool["tune_s"], "pool_train_sum_s": pool["boost_sum_s"], "tuneflow_train_sum_s": tf["boost_sum_s"],
            "train_sum_ratio": round(train_ratio, 4) if train_ratio else None, "train_sum_within_1pct": bool(train_ratio and train_ratio <= 1.01),
            "tune_ratio": round(tune_ratio, 4) if tune_ratio else None, "tune_within_2pct": bool(tune_ratio and tune_ratio <= 1.02),
        }
    if "optuna" in by:
        out["ahead_of_optuna"] = by["optuna"]["tune_s"] > tf["tune_s"]
    return out


def markdown(result: dict[str, Any], command: str) -> str:
    s = result["summary"]
    rows = []
    for r in result["tools"]:
        rows.append({
            "tool": r["tool"], "how": r["how"], "trials": r["trials"], "tune s": r["tune_s"], "total s": r["total_s"],
            "trials/hour": r["trials_per_hour"], "best AUC": round(r["best_value"], 5) if r.get("best_value") is not None else None,
            "tool/tuneflow (tune s)": r.get("tune_vs_tuneflow"),
            "Σ xgb.train s": r["boost_sum_s"], "Σ data setup s": r["setup_sum_s"],
            "other CPU (cores)": r["monitor"]["other_processes_cores"],
        })
    text = common.header(f"vs peers, CPU ({result['params'].get('regime', 'large')} trials)", command, result)
    d = result["dataset"]
    text += (
        f"Data: synth28, {d['rows']:,} rows (train {d['train_rows']:,} / valid {d['valid_rows']:,}), 28 float32 features, binary; "
        f"{result['params']['trials']} configurations from tuneflow's default space (seed {result['params']['config_seed']}); "
        f"early_stopping_rounds={result['params']['early_stopping_rounds']}, max {result['params']['max_rounds']} rounds, AUC on valid; "
        f"{result['params']['parallelism']} trials at a time.\n\n"
    )
    text += common.md_table(rows)
    text += (
        "\n`tune s`: reading the shards + all trials (tuneflow: the flow's `tune_seconds`; pool: first task to last result); "
        "`total s`: plus the tool's start-up (tuneflow: LocalCluster, Prefect's temporary server, validation, shard lookup, "
        "MLflow registration; Ray: ray.init; pool: starting its processes). "
        "`Σ xgb.train s`: the xgb.train calls summed over trials (tuneflow: the trials' `train_seconds`; Ray, Optuna and Hyperopt "
        "include the quantile sketch that xgb.train builds from a plain DMatrix in every trial, which tuneflow and the pool do once "
        "per process). `Σ data setup s`: tuneflow and pool: shard load + QuantileDMatrix (first trial per process); peers: "
        "`xgb.DMatrix(...)` per trial. `other CPU`: cores used by processes outside the benchmark's tree (other users of the "
        "machine) during the run.\n"
    )
    if "limit_s" in s:
        text += (
            f"\nLimit (Σ tuneflow train_seconds / {result['params']['parallelism']}): **{s['limit_s']} s**; "
            f"tuneflow tune phase / limit = **{s['tuneflow_over_limit']}** (goal ≤ 1.15: {'met' if s['within_15pct_of_limit'] else 'NOT met'}); "
            f"faster than every peer: {'yes' if s['faster_than_every_peer'] else 'no' if s['faster_than_every_peer'] is not None else 'n/a'}.\n"
        )
    if "pool" in s:
        q = s["pool"]
        text += (
            f"\nAgainst the pool (the limit): Σ xgb.train tuneflow {q['tuneflow_train_sum_s']} s vs pool {q['pool_train_sum_s']} s = "
            f"**{q['train_sum_ratio']}** (goal ≤ 1.01: {'met' if q['train_sum_within_1pct'] else 'NOT met'}); tune phase tuneflow / pool = "
            f"**{q['tune_ratio']}** (goal ≤ 1.02: {'met' if q['tune_within_2pct'] else 'NOT met'})"
        )
        if "ahead_of_optuna" in s:
            text += f"; ahead of Optuna: {'yes' if s['ahead_of_optuna'] else 'no'}"
        text += ".\n"
    if "orchestrator" in s:
        o = s["orchestrator"]
        text += (
            f"\nCPU seconds over tuneflow's tune phase ({o['tune_phase_wall_s']} s), by process: "
            + ", ".join(f"{k.replace('this process', 'flow process (the orchestrator)')} {v}" for k, v in o["cpu_s"].items())
            + f"; the orchestrator's CPU per trial: **{o['flow_process_cpu_s_per_trial']} s** (Prefect's server: {o['prefect_server_cpu_s_per_trial']} s).\n"
        )
    if "tuneflow_breakdown" in s:
        text += "\nWhere tuneflow's tune phase goes (wall seconds: slot-seconds / parallelism):\n\n"
        text += common.md_table([{k: v for k, v in s["tuneflow_breakdown"].items() if not isinstance(v, list)}])
    return text


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--regime", choices=sorted(REGIMES), default="large", help="defaults for the flags below (see above)")
    p.add_argument("--rows", type=int, help="rows of the synth28 CSV (80%% train); large 1,000,000, small 625,000")
    p.add_argument("--trials", type=int, help="configurations; large 40, small 20")
    p.add_argument("--parallelism", type=int, default=2)
    p.add_argument("--max-rounds", type=int, help="large 500, small 200")
    p.add_argument("--early-stopping-rounds", type=int, help="large 30, small 20")
    p.add_argument("--config-seed", type=int, default=42)
    p.add_argument("--tools", help=f"comma-separated, some of {','.join(TOOLS)}; large {REGIMES['large']['tools']}, small {REGIMES['small']['tools']}")
    p.add_argument("--out-dir", type=Path, default=common.RESULTS)
    p.add_argument("--name", help="results name; large peers, small peers-small")
    p.add_argument("--work", type=Path, default=common.WORK / "peers")
    p.add_argument("--render", action="store_true", help="rewrite <name>.md from <name>.json and stop")
    p.add_argument("--child", help=argparse.SUPPRESS)  # internal: run one tool, write its row to --child-out
    p.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    for key, value in REGIMES[a.regime].items():
        if getattr(a, key) is None:
            setattr(a, key, value)
    if a.render:
        result = json.loads((a.out_dir / f"{a.name}.json").read_text())
        common.write_results(a.name, result, markdown(result, result["command"]), a.out_dir)
        return result
    a.work.mkdir(parents=True, exist_ok=True)
    csv = common.dataset_csv(a.rows, work=a.work.parent)
    store = str(a.work / "store")
    configs_path = a.work / f"configs-{a.trials}-s{a.config_seed}.json"
    manifest_path = a.work / f"manifest-{a.rows}.json"

    if a.child:
        manifest = json.loads(manifest_path.read_text())
        configs = json.loads(configs_path.read_text())
        if a.child == "tuneflow":
            row = run_tuneflow(a, csv, store, configs_path, a.work)
        else:
            row = {"pool": run_pool, "ray": run_ray, "optuna": run_optuna, "hyperopt": run_hyperopt}[a.child](a, manifest, configs, a.work)
        a.child_out.write_text(json.dumps(row, default=str))
        return row

    tools = [t for t in a.tools.split(",") if t]
    unknown = [t for t in tools if t not in TOOLS]
    if unknown:
        raise SystemExit(f"unknown tool(s) {unknown}; choose from {TOOLS}")
    from tasks.contracts import Device
    from tasks.engine.cluster import dask_client

    args = argv if argv is not None else sys.argv[1:]
    command = "python benchmarks/peers.py " + " ".join(args)
    result: dict[str, Any] = {"benchmark": "peers", "machine": common.machine(), "command": command.strip()}
    manifest, shard_s = common.existing_manifest(csv, store), 0.0
    if manifest is None:
        with dask_client(None, a.parallelism, Device.CPU):
            manifest, shard_s = common.shard_step(csv, store)
    manifest_path.write_text(json.dumps(manifest))
    configs = common.draw_configs(a.trials, a.config_seed)
    configs_path.write_text(json.dumps(configs, indent=1))
    result["dataset"] = {
        "name": "synth28", "csv": str(csv), "csv_bytes": csv.stat().st_size, "rows": a.rows, "fingerprint": manifest["fingerprint"],
        "train_rows": manifest["splits"]["train"]["rows"], "valid_rows": manifest["splits"]["valid"]["rows"], "shard_s": round(shard_s, 2),
    }
    result["params"] = {"regime": a.regime, "trials": a.trials, "parallelism": a.parallelism, "max_rounds": a.max_rounds,
                        "early_stopping_rounds": a.early_stopping_rounds, "config_seed": a.config_seed, "configs": configs}
    result["versions"] = common.versions("tuneflow", "prefect", "optuna", "xgboost", "dask", "distributed", "ray", "hyperopt")
    rows = []
    for tool in tools:
        out = a.work / f"row-{tool}.json"
        out.unlink(missing_ok=True)
        log = a.work / f"{tool}.log"
        cmd = [sys.executable, __file__, *args, "--child", tool, "--child-out", str(out)]
        print(f"[peers] {tool} ... (log {log})", flush=True)
        with open(log, "w") as fh:
            rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=common.REPO).returncode
        if rc != 0 or not out.exists():
            raise SystemExit(f"[peers] {tool} failed (exit {rc}); see {log}:\n" + log.read_text()[-3000:])
        row = json.loads(out.read_text())
        print(f"[peers] {tool}: tune {row['tune_s']} s, Σ xgb.train {sum(t.get('train_s') or 0 for t in row['per_trial']):.2f} s, best {row['best_value']:.5f}", flush=True)
        rows.append(row)
    result["tools"] = rows
    result["summary"] = summarize(rows, a)
    paths = common.write_results(a.name, result, markdown(result, result["command"]), a.out_dir)
    print(f"[peers] wrote {paths[0]} and {paths[1]}", flush=True)
    return result


if __name__ == "__main__":
    main()
