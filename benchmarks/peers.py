"""vs peers, CPU: the same 40-configuration study run by tuneflow, Ray Tune, Optuna and Hyperopt.

    .venv/bin/python benchmarks/peers.py                     # 1M rows, 40 trials, all four tools
    .venv/bin/python benchmarks/peers.py --rows 20000 --trials 4 --max-rounds 20 --tools tuneflow,optuna

Same data for every tool: the seeded synth28 CSV (1M rows x 28 float32 features, binary; see
common.py) sharded once by tuneflow's shard step; every tool reads the same train/valid Parquet
shards. Same 40 configurations: a seeded random draw from tuneflow's default space, written to a
JSON file and fed as `enqueue` (tuneflow), `points_to_evaluate` (Ray Tune, Hyperopt) and
`enqueue_trial` (Optuna). Same training: hist, max_bin 256, AUC on the valid split,
early_stopping_rounds=30, at most 500 rounds, 2 trials at a time with nthread=1 each (Hyperopt's
fmin is sequential: one trial at a time with nthread=2).

Each tool runs in its own child process, one after the other. Timings: "tune" is the tuning phase
(reading the shards + all trials; for tuneflow the flow's `tune_seconds`, which includes the
workers' first-trial data load), "total" adds the tool's own start-up (the flow's LocalCluster,
validation, shard lookup and MLflow registration; ray.init).
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

TOOLS = ("tuneflow", "ray", "optuna", "hyperopt")


# ---------------------------------------------------------------- tuneflow


def run_tuneflow(a: argparse.Namespace, csv: Path, store: str, configs_path: Path, work: Path) -> dict[str, Any]:
    """The real flow: validate -> shard (reused) -> tune -> register."""
    home = common.fresh_home(work / f"home-{uuid.uuid4().hex[:8]}")
    from flows.tune_xgboost import tune_xgboost
    from tasks import study as tstudy

    study_name = f"bench-peers-{uuid.uuid4().hex[:8]}"
    with common.TreeMonitor(interval=0.5) as mon:
        started = time.perf_counter()
        result = tune_xgboost(
            data=str(csv), target=common.TARGET, task="binary", n_trials=a.trials, parallelism=a.parallelism,
            enqueue=str(configs_path), store=store, storage=str(home / "optuna.journal"), study_name=study_name,
            model_name=study_name, max_rounds=a.max_rounds, early_stopping_rounds=a.early_stopping_rounds,
            device="cpu", seed=common.SHARD_SEED,
        )
        total = time.perf_counter() - started
    study = tstudy.open_study(str(home / "optuna.journal"), study_name, "maximize", 0)
    trials = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    per_trial = []
    for t in sorted(trials, key=lambda t: t.number):
        u = t.user_attrs
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
        "flow_result": {k: result[k] for k in ("placement", "rows", "best_trial", "trials_this_run", "failed_this_run")},
    }


# ---------------------------------------------------------------- Ray Tune


def run_ray(a: argparse.Namespace, manifest: dict[str, Any], configs: list[dict[str, Any]], work: Path) -> dict[str, Any]:
    """Ray Tune as its XGBoost docs show: tune.with_parameters, a function trainable per trial,
    TuneReportCheckpointCallback, points_to_evaluate, 1 CPU per trial on a 2-CPU Ray."""
    import ray
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from tasks.search_space import DEFAULT_SPACE

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

        space: dict[str, Any] = {**common.fixed_params(), "nthread": 1}
        for name, spec in DEFAULT_SPACE.items():
            if not isinstance(spec, dict):
                continue
            if spec["type"] == "int":
                space[name] = tune.randint(spec["low"], spec["high"] + 1)
            elif spec.get("log"):
                space[name] = tune.loguniform(spec["low"], spec["high"])
            else:
                space[name] = tune.uniform(spec["low"], spec["high"])
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

    from tasks.search_space import DEFAULT_SPACE as S

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

    from tasks.search_space import DEFAULT_SPACE

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
    out: dict[str, Any] = {}
    tf = by.get("tuneflow")
    if tf:
        boost = sum(t["train_s"] or 0 for t in tf["per_trial"])
        limit = boost / a.parallelism
        out["limit_s"] = round(limit, 2)
        out["tuneflow_over_limit"] = round(tf["tune_s"] / limit, 3) if limit else None
        out["within_15pct_of_limit"] = bool(limit and tf["tune_s"] <= 1.15 * limit)
        out["tuneflow_breakdown"] = tuneflow_breakdown(tf, a.parallelism)
        out["ratios"] = {r["tool"]: round(r["tune_s"] / tf["tune_s"], 3) for r in rows if r["tool"] != "tuneflow"}
        out["faster_than_every_peer"] = all(v > 1.0 for v in out["ratios"].values()) if out["ratios"] else None
    for r in rows:
        r["trials_per_hour"] = round(3600 * r["trials"] / r["tune_s"], 1) if r["tune_s"] else None
        r["boost_sum_s"] = round(sum(t.get("train_s") or 0 for t in r["per_trial"]), 2)
        r["setup_sum_s"] = round(sum((t.get("setup_s") or t.get("build_s") or 0) for t in r["per_trial"]), 2)
    return out


def markdown(result: dict[str, Any], command: str) -> str:
    s = result["summary"]
    rows = []
    for r in result["tools"]:
        rows.append({
            "tool": r["tool"], "how": r["how"], "trials": r["trials"], "tune s": r["tune_s"], "total s": r["total_s"],
            "trials/hour": r["trials_per_hour"], "best AUC": round(r["best_value"], 5) if r.get("best_value") is not None else None,
            "peer/tuneflow": s.get("ratios", {}).get(r["tool"], 1.0 if r["tool"] == "tuneflow" else None),
            "Σ xgb.train s": r["boost_sum_s"], "Σ data setup s": r["setup_sum_s"],
            "other CPU (cores)": r["monitor"]["other_processes_cores"],
        })
    text = common.header("vs peers, CPU", command, result)
    d = result["dataset"]
    text += (
        f"Data: synth28, {d['rows']:,} rows (train {d['train_rows']:,} / valid {d['valid_rows']:,}), 28 float32 features, binary; "
        f"{result['params']['trials']} configurations from tuneflow's default space (seed {result['params']['config_seed']}); "
        f"early_stopping_rounds={result['params']['early_stopping_rounds']}, max {result['params']['max_rounds']} rounds, AUC on valid.\n\n"
    )
    text += common.md_table(rows)
    text += (
        "\n`tune s`: reading the shards + all trials (tuneflow: the flow's `tune_seconds`); `total s`: plus the tool's start-up "
        "(tuneflow: LocalCluster, Prefect's temporary server, validation, shard lookup, MLflow registration; Ray: ray.init). "
        "`Σ xgb.train s`: the xgb.train calls summed over trials (tuneflow: the trials' `train_seconds`; the peers' include the "
        "quantile sketch that xgb.train builds from a plain DMatrix in every trial, which tuneflow does once per worker). "
        "`Σ data setup s`: tuneflow: shard load + QuantileDMatrix (first trial per worker); peers: `xgb.DMatrix(...)` per trial. "
        "`other CPU`: cores used by processes outside the benchmark's tree (other users of the machine) during the run.\n"
    )
    if "limit_s" in s:
        b = s["tuneflow_breakdown"]
        text += (
            f"\nLimit (Σ tuneflow train_seconds / {result['params']['parallelism']}): **{s['limit_s']} s**; "
            f"tuneflow tune phase / limit = **{s['tuneflow_over_limit']}** (goal ≤ 1.15: {'met' if s['within_15pct_of_limit'] else 'NOT met'}); "
            f"faster than every peer: {'yes' if s['faster_than_every_peer'] else 'no' if s['faster_than_every_peer'] is not None else 'n/a'}.\n\n"
            "Where tuneflow's tune phase goes (wall seconds: slot-seconds / parallelism):\n\n"
        )
        text += common.md_table([{k: v for k, v in b.items() if not isinstance(v, list)}])
    return text


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--trials", type=int, default=40)
    p.add_argument("--parallelism", type=int, default=2)
    p.add_argument("--max-rounds", type=int, default=500)
    p.add_argument("--early-stopping-rounds", type=int, default=30)
    p.add_argument("--config-seed", type=int, default=42)
    p.add_argument("--tools", default=",".join(TOOLS))
    p.add_argument("--out-dir", type=Path, default=common.RESULTS)
    p.add_argument("--name", default="peers")
    p.add_argument("--work", type=Path, default=common.WORK / "peers")
    p.add_argument("--render", action="store_true", help="rewrite <name>.md from <name>.json and stop")
    p.add_argument("--child", help=argparse.SUPPRESS)  # internal: run one tool, write its row to --child-out
    p.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.render:
        result = json.loads((a.out_dir / f"{a.name}.json").read_text())
        common.write_results(a.name, result, markdown(result, result["command"]), a.out_dir)
        return result
    a.work.mkdir(parents=True, exist_ok=True)
    csv = common.dataset_csv(a.rows, work=a.work.parent)
    store = str(a.work / "store")
    configs_path = a.work / f"configs-{a.trials}-s{a.config_seed}.json"

    if a.child:
        manifest = json.loads((a.work / "manifest.json").read_text())
        configs = json.loads(configs_path.read_text())
        if a.child == "tuneflow":
            row = run_tuneflow(a, csv, store, configs_path, a.work)
        else:
            row = {"ray": run_ray, "optuna": run_optuna, "hyperopt": run_hyperopt}[a.child](a, manifest, configs, a.work)
        a.child_out.write_text(json.dumps(row, default=str))
        return row

    from tasks.cluster import dask_client

    command = "python benchmarks/peers.py " + " ".join(argv if argv is not None else sys.argv[1:])
    result: dict[str, Any] = {"benchmark": "peers", "machine": common.machine(), "command": command.strip()}
    manifest, shard_s = common.existing_manifest(csv, store), 0.0
    if manifest is None:
        with dask_client(None, a.parallelism, "cpu"):
            manifest, shard_s = common.shard_step(csv, store)
    (a.work / "manifest.json").write_text(json.dumps(manifest))
    configs = common.draw_configs(a.trials, a.config_seed)
    configs_path.write_text(json.dumps(configs, indent=1))
    result["dataset"] = {
        "name": "synth28", "csv": str(csv), "csv_bytes": csv.stat().st_size, "rows": a.rows, "fingerprint": manifest["fingerprint"],
        "train_rows": manifest["splits"]["train"]["rows"], "valid_rows": manifest["splits"]["valid"]["rows"], "shard_s": round(shard_s, 2),
    }
    result["params"] = {"trials": a.trials, "parallelism": a.parallelism, "max_rounds": a.max_rounds,
                        "early_stopping_rounds": a.early_stopping_rounds, "config_seed": a.config_seed, "configs": configs}
    result["versions"] = common.versions("tuneflow", "prefect", "optuna", "xgboost", "dask", "distributed", "ray", "hyperopt")
    rows = []
    for tool in [t for t in a.tools.split(",") if t]:
        if tool not in TOOLS:
            raise SystemExit(f"unknown tool {tool}; choose from {TOOLS}")
        out = a.work / f"row-{tool}.json"
        out.unlink(missing_ok=True)
        log = a.work / f"{tool}.log"
        cmd = [sys.executable, __file__, *[x for x in (argv if argv is not None else sys.argv[1:])], "--child", tool, "--child-out", str(out)]
        print(f"[peers] {tool} ... (log {log})", flush=True)
        with open(log, "w") as fh:
            rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=common.REPO).returncode
        if rc != 0 or not out.exists():
            raise SystemExit(f"[peers] {tool} failed (exit {rc}); see {log}:\n" + log.read_text()[-3000:])
        row = json.loads(out.read_text())
        print(f"[peers] {tool}: tune {row['tune_s']} s, best {row['best_value']:.5f}", flush=True)
        rows.append(row)
    result["tools"] = rows
    result["summary"] = summarize(rows, a)
    common.write_results(a.name, result, markdown(result, result["command"]), a.out_dir)
    return result


if __name__ == "__main__":
    main()
