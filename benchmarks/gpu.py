"""GPU check: tuneflow's trial-parallel placement vs plain XGBoost vs naive xgboost.dask, one GPU.

On the lent GPU machine (see ../shared/device/README.md; xgboost + dask + distributed carried as
wheels, no Prefect/Optuna/GX/MLflow there):

    python3 benchmarks/gpu.py --device cuda --out $OUT/gpu.json

Here, on CPU, at a tiny size (what the smoke test runs):

    .venv/bin/python benchmarks/gpu.py --rows 20000 --device cpu --out /tmp/gpu.json

Data: rows x 28 float32 features (default 10M train + 1M valid), binary label, written once as
Parquet shards in tuneflow's dataset layout with a manifest (the shard step itself needs Dask
DataFrame + a CSV; it is benchmarked in scale.py). Every method trains the same `--trials`
configurations (hist, depth 8, max_bin 256, AUC on the valid rows every round) for `--rounds`
rounds each (no early stop):
  1. plain: one QuantileDMatrix built once in this process (on the GPU), trials run sequentially;
  2. tuneflow: tasks.engine.resident.run_trial(trial_request(...)) submitted to a Dask worker of
     tasks.engine.cluster.dask_client (LocalCUDACluster when dask_cuda is there, else a
     LocalCluster with one worker), as the flow's ResidentTrainer does; the worker loads the shards
     once, keeps them (and the QuantileDMatrix) on its GPU, and runs trial after trial; first with
     1 trial in flight (cold: includes the load), then again with 2 in flight (warm);
  3. naive: xgboost.dask.train per trial on the same worker (DaskQuantileDMatrix rebuilt each
     trial from the persisted host partitions), `--naive-trials` trials (default 3: ~12 s each).
Goals (issue): tuneflow within 15% of plain; at least 5x faster per trial than naive.

The trial engine imports none of Prefect, Optuna, Great Expectations, MLflow, pydantic-settings
or tasks.settings; the script checks that in this process and on the worker (`forbidden_modules_*`),
and TUNEFLOW_GPU_BLOCK_IMPORTS=prefect,optuna,... makes any such import fail (the smoke test).

Time-boxed: stages are skipped once `--time-box` seconds have passed, and a watchdog writes what
was measured and exits at --time-box + 60 s. The JSON is rewritten after every stage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

FORBIDDEN = ("prefect", "optuna", "great_expectations", "mlflow", "pydantic_settings", "tasks.settings")
N_FEATURES = 28


def _prepare_process(repo: str, block: str | None) -> bool:
    """Make this process (the driver, or a Dask worker through client.run) import tuneflow from
    `repo`, and, with `block` (TUNEFLOW_GPU_BLOCK_IMPORTS, comma-separated top-level names), fail
    any import of those modules, as on the GPU machine where they are not installed."""
    import sys as _sys

    if repo not in _sys.path:
        _sys.path.insert(0, repo)
    if block and not any(type(f).__name__ == "_Blocker" for f in _sys.meta_path):
        import importlib.abc as _abc

        names = tuple(block.split(","))

        class _Blocker(_abc.MetaPathFinder):
            def find_spec(self, fullname, path, target=None):  # noqa: ANN001
                if fullname.split(".")[0] in names:
                    raise ImportError(f"{fullname} is blocked (TUNEFLOW_GPU_BLOCK_IMPORTS)")
                return None

        _sys.meta_path.insert(0, _Blocker())
    return bool(block)


def _forbidden_loaded() -> list[str]:
    return [m for m in FORBIDDEN if m in sys.modules]


def _warm_worker() -> int:
    """The worker's one-time imports (the engine, xgboost, pandas), before any timed stage."""
    from tasks.engine.resident import run_trial  # noqa: F401
    from tasks.engine.training import gpu_count

    return gpu_count()


# ---------------------------------------------------------------- data


def write_dataset(root: Path, rows: int, valid_rows: int, seed: int = 0, part_rows: int = 1_000_000) -> dict[str, Any]:
    """Parquet shards + manifest in tuneflow's layout (train/ and valid/ part files)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    manifest_path = root / "_manifest.json"
    if manifest_path.exists():
        return json.loads(manifest_path.read_text())
    names = [f"f{i:02d}" for i in range(N_FEATURES)]
    w = np.random.default_rng(seed).standard_normal(N_FEATURES).astype(np.float32)
    splits: dict[str, Any] = {}
    for split, n, s in (("train", rows, 1), ("valid", valid_rows, 2)):
        files, done, i = [], 0, 0
        (root / split).mkdir(parents=True, exist_ok=True)
        while done < n:
            k = min(part_rows, n - done)
            rng = np.random.default_rng([seed, s, i])
            X = rng.standard_normal((k, N_FEATURES), dtype=np.float32)
            logit = X @ w * 0.5 + np.sin(X[:, 0] * X[:, 1]) + (X[:, 2] > 0.5) * X[:, 3]
            y = (rng.random(k) < 1 / (1 + np.exp(-logit))).astype(np.int32)
            table = pa.Table.from_arrays([pa.array(X[:, j]) for j in range(N_FEATURES)] + [pa.array(y)], names=[*names, "__label__"])
            rel = f"{split}/part-{i:05d}.parquet"
            pq.write_table(table, root / rel, compression="none")
            files.append({"path": rel, "rows": k, "bytes": (root / rel).stat().st_size})
            done += k
            i += 1
        splits[split] = {"rows": n, "bytes": sum(f["bytes"] for f in files), "files": files}
    manifest = {
        "format": "tuneflow.dataset/1", "name": "gpu-synth", "fingerprint": f"gpu-synth-{rows}-{valid_rows}-{seed}", "uri": str(root),
        "target": "label", "task": "binary", "features": [{"name": n, "kind": "numeric"} for n in names], "classes": ["0", "1"],
        "splits": splits,
    }
    manifest_path.write_text(json.dumps(manifest))
    return manifest


def configs(n: int, depth: int, seed: int = 0) -> list[dict[str, Any]]:
    import numpy as np

    rng = np.random.default_rng(seed)
    return [
        {
            "objective": "binary:logistic", "eval_metric": "auc", "max_depth": depth, "max_bin": 256, "seed": 0,
            "learning_rate": float(np.exp(rng.uniform(np.log(0.03), np.log(0.3)))), "subsample": float(rng.uniform(0.6, 1.0)),
            "colsample_bytree": float(rng.uniform(0.6, 1.0)), "min_child_weight": float(np.exp(rng.uniform(0, np.log(10)))),
            "reg_lambda": float(np.exp(rng.uniform(np.log(0.01), np.log(10)))),
        }
        for _ in range(n)
    ]


# ---------------------------------------------------------------- the three methods


def run_plain(manifest: dict[str, Any], cfgs: list[dict[str, Any]], a: argparse.Namespace) -> dict[str, Any]:
    """One QuantileDMatrix (train + valid), built once; the trials one after the other."""
    import xgboost as xgb

    from tasks.engine.shards import load_split

    t0 = time.perf_counter()
    X, y = load_split(manifest, "train", {})  # the engine's reader: the same float32 matrix it trains on
    Xv, yv = load_split(manifest, "valid", {})
    if a.device.startswith("cuda"):
        import cupy

        X, Xv, y, yv = cupy.asarray(X), cupy.asarray(Xv), cupy.asarray(y), cupy.asarray(yv)
    t1 = time.perf_counter()
    dtrain = xgb.QuantileDMatrix(X, label=y, max_bin=256)
    dvalid = xgb.QuantileDMatrix(Xv, label=yv, ref=dtrain, max_bin=256)
    t2 = time.perf_counter()
    per = []
    for cfg in cfgs:
        s = time.perf_counter()
        params = {**cfg, "tree_method": "hist", "device": a.device, "verbosity": 0}
        if not a.device.startswith("cuda"):
            params["nthread"] = os.cpu_count()
        b = xgb.train(params, dtrain, num_boost_round=a.rounds, evals=[(dvalid, "valid")], verbose_eval=False)
        float(b.eval(dvalid).rsplit(":", 1)[1])  # the score, as a trial reports it
        per.append(time.perf_counter() - s)
    t3 = time.perf_counter()
    del dtrain, dvalid, X, Xv, y, yv
    if a.device.startswith("cuda"):
        cupy.get_default_memory_pool().free_all_blocks()  # leave the GPU to the worker
    return {"load_s": round(t1 - t0, 3), "build_s": round(t2 - t1, 3), "trials_s": round(t3 - t2, 3), "per_trial_s": [round(x, 3) for x in per],
            "total_s": round(t3 - t0, 3)}


def run_tuneflow(client: Any, manifest: dict[str, Any], cfgs: list[dict[str, Any]], a: argparse.Namespace, in_flight: int) -> dict[str, Any]:
    """The flow's trial-parallel path: client.submit(run_trial, request) to the worker holding the
    data (what ResidentTrainer.run does), `in_flight` trials at a time (the flow's ask/tell loop
    keeps `parallelism` in flight)."""
    from distributed import wait

    from tasks.contracts import Device, Placement, trial_request
    from tasks.engine.resident import run_trial

    nthread = None if a.device.startswith("cuda") else max(1, (os.cpu_count() or 1) // in_flight)
    template = trial_request(manifest, placement=Placement.TRIAL, device=Device(a.device), nthread=nthread,
                             num_boost_round=a.rounds, early_stopping_rounds=a.rounds + 1)  # every round, no early stop
    pending = [template.for_trial(i, cfg) for i, cfg in enumerate(cfgs)]
    results = []
    s = time.perf_counter()
    running: set[Any] = set()
    while pending or running:
        while pending and len(running) < in_flight:
            request = pending.pop(0)
            running.add(client.submit(run_trial, request, pure=False, key=f"trial-{request.number}-{os.urandom(4).hex()}"))
        done, not_done = wait(running, return_when="FIRST_COMPLETED")
        running = set(not_done)
        results += [f.result() for f in done]
    wall = time.perf_counter() - s
    cold = sum(r.setup_seconds for r in results if not r.data_cache_hit or not r.matrix_cache_hit)
    return {
        "in_flight": in_flight, "wall_s": round(wall, 3), "cold_setup_s": round(cold, 3), "wall_minus_cold_setup_s": round(wall - cold, 3),
        "train_s": [r.train_seconds for r in results], "trial_s": [r.seconds for r in results],
        "per_trial_mean_s": round(sum(r.seconds for r in results) / len(results), 3), "device": results[0].device,
        "load_s": max(r.load_seconds for r in results), "rounds": results[0].rounds,
    }


def run_naive(client: Any, manifest: dict[str, Any], cfgs: list[dict[str, Any]], a: argparse.Namespace, deadline: float) -> dict[str, Any]:
    """xgboost.dask.train per trial: the DaskQuantileDMatrix is rebuilt from the (persisted) host
    partitions at every call, as a per-trial xgboost.dask objective does."""
    import dask.dataframe as dd
    import xgboost as xgb
    import xgboost.dask  # noqa: F401

    names = [f["name"] for f in manifest["features"]]
    t0 = time.perf_counter()
    frames = {}
    for split in ("train", "valid"):
        df = dd.read_parquet([str(Path(manifest["uri"]) / f["path"]) for f in manifest["splits"][split]["files"]]).persist()
        frames[split] = (df[names], df["__label__"])
    (X, y), (Xv, yv) = frames["train"], frames["valid"]
    client.wait_for_workers(1)
    load = time.perf_counter() - t0
    per = []
    for cfg in cfgs[: a.naive_trials]:
        if time.perf_counter() > deadline and per:
            break
        s = time.perf_counter()
        dtrain = xgb.dask.DaskQuantileDMatrix(client, X, y, max_bin=256)
        dvalid = xgb.dask.DaskQuantileDMatrix(client, Xv, yv, ref=dtrain, max_bin=256)
        params = {**cfg, "tree_method": "hist", "device": a.device, "verbosity": 0}
        out = xgb.dask.train(client, params, dtrain, num_boost_round=a.rounds, evals=[(dvalid, "valid")], verbose_eval=False)
        per.append(time.perf_counter() - s)
        del out, dtrain, dvalid
    return {"load_persist_s": round(load, 3), "trials": len(per), "per_trial_s": [round(x, 3) for x in per],
            "per_trial_mean_s": round(sum(per) / len(per), 3) if per else None}


# ---------------------------------------------------------------- driver


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=10_000_000, help="train rows")
    p.add_argument("--valid-rows", type=int, default=None, help="eval rows (default rows/10)")
    p.add_argument("--trials", type=int, default=8)
    p.add_argument("--rounds", type=int, default=100)
    p.add_argument("--depth", type=int, default=8)
    p.add_argument("--naive-trials", type=int, default=3)
    p.add_argument("--device", default="cuda", help="cuda (the GPU machine) or cpu (a test here)")
    p.add_argument("--out", type=Path, required=True, help="where the JSON goes (e.g. $OUT/gpu.json)")
    p.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "tuneflow-gpu-bench")
    p.add_argument("--time-box", type=float, default=330.0, help="skip stages after this many seconds; hard exit 60 s later")
    a = p.parse_args(argv)
    a.valid_rows = a.valid_rows or max(1000, a.rows // 10)
    started = time.perf_counter()
    deadline = started + a.time_box
    result: dict[str, Any] = {"benchmark": "gpu", "args": {k: str(v) for k, v in vars(a).items()}, "stages": {}, "skipped": [], "complete": False}

    def save() -> None:
        result["elapsed_s"] = round(time.perf_counter() - started, 2)
        a.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = a.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(result, indent=2, default=str))
        tmp.replace(a.out)

    def watchdog() -> None:
        time.sleep(max(1.0, a.time_box + 60.0))
        result["error"] = f"time box exceeded ({a.time_box + 60:.0f} s): partial results"
        save()
        os._exit(3)

    threading.Thread(target=watchdog, daemon=True).start()
    import platform

    import xgboost as xgb

    result["imports_blocked"] = _prepare_process(str(REPO), os.environ.get("TUNEFLOW_GPU_BLOCK_IMPORTS"))
    result["forbidden_modules_checked"] = list(FORBIDDEN)
    from tasks.engine.cluster import dask_client
    from tasks.engine.resident import release_data
    from tasks.engine.training import gpu_count

    result["machine"] = {"platform": platform.platform(), "python": platform.python_version(), "cores": os.cpu_count(),
                         "xgboost": xgb.__version__, "xgboost_cuda": bool(xgb.build_info().get("USE_CUDA")), "gpus": gpu_count()}
    try:
        import subprocess

        result["machine"]["nvidia_smi"] = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                                                         capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    save()

    s = time.perf_counter()
    manifest = write_dataset(a.work / f"ds-{a.rows}-{a.valid_rows}", a.rows, a.valid_rows)
    result["stages"]["data"] = {"seconds": round(time.perf_counter() - s, 2), "train_rows": a.rows, "valid_rows": a.valid_rows,
                                "parquet_mb": round((manifest["splits"]["train"]["bytes"] + manifest["splits"]["valid"]["bytes"]) / 1e6, 1)}
    cfgs = configs(a.trials, a.depth)
    result["configs"] = cfgs
    save()

    print(f"[gpu] plain xgboost, {a.trials} trials x {a.rounds} rounds ...", flush=True)
    result["stages"]["plain"] = run_plain(manifest, cfgs, a)
    save()
    import gc

    gc.collect()

    with dask_client(None, 1, a.device) as client:
        # the workers: same import conditions as this process (the test-only import blocker)
        blocked = client.run(_prepare_process, str(REPO), os.environ.get("TUNEFLOW_GPU_BLOCK_IMPORTS"))
        result["imports_blocked_on_workers"] = sorted(set(blocked.values()))
        result["cluster"] = {"workers": len(client.scheduler_info()["workers"]), "type": type(client.cluster).__name__ if client.cluster else None}
        # The worker's first task imports xgboost/pandas/the engine; plain XGBoost had them imported
        # already, so warm the worker first and report that one-time cost apart.
        s = time.perf_counter()
        client.run(_warm_worker)
        result["stages"]["worker_warmup"] = {"seconds": round(time.perf_counter() - s, 3)}
        for in_flight in (1, 2):
            if time.perf_counter() > deadline:
                result["skipped"].append(f"tuneflow in_flight={in_flight}")
                continue
            print(f"[gpu] tuneflow trial-parallel, {in_flight} in flight ...", flush=True)
            result["stages"][f"tuneflow_{in_flight}"] = run_tuneflow(client, manifest, cfgs, a, in_flight)
            save()
        client.run(release_data)
        result["forbidden_modules_on_worker"] = next(iter(client.run(_forbidden_loaded).values()))
        if time.perf_counter() > deadline:
            result["skipped"].append("naive xgboost.dask")
        else:
            print(f"[gpu] naive xgboost.dask.train, {a.naive_trials} trials ...", flush=True)
            result["stages"]["naive_dask"] = run_naive(client, manifest, cfgs, a, deadline)
            save()
    result["forbidden_modules_here"] = _forbidden_loaded()

    st = result["stages"]
    summary: dict[str, Any] = {}
    if "plain" in st and "tuneflow_1" in st:
        plain = st["plain"]["trials_s"]
        summary["plain_trials_s"] = plain
        summary["plain_with_build_s"] = round(plain + st["plain"]["build_s"], 3)
        summary["tuneflow_seq_wall_s"] = st["tuneflow_1"]["wall_s"]
        summary["tuneflow_seq_warm_s"] = st["tuneflow_1"]["wall_minus_cold_setup_s"]
        summary["tuneflow_vs_plain_warm"] = round(st["tuneflow_1"]["wall_minus_cold_setup_s"] / plain, 3)
        summary["tuneflow_vs_plain_incl_build"] = round(st["tuneflow_1"]["wall_s"] / summary["plain_with_build_s"], 3)
        summary["within_15pct_of_plain"] = summary["tuneflow_vs_plain_warm"] <= 1.15
        if "tuneflow_2" in st:
            summary["tuneflow_2_in_flight_wall_s"] = st["tuneflow_2"]["wall_s"]
    if "naive_dask" in st and st["naive_dask"]["per_trial_mean_s"] and "tuneflow_1" in st:
        tf_per = st["tuneflow_1"]["wall_minus_cold_setup_s"] / a.trials
        summary["tuneflow_per_trial_s"] = round(tf_per, 3)
        summary["naive_per_trial_s"] = st["naive_dask"]["per_trial_mean_s"]
        summary["naive_over_tuneflow_per_trial"] = round(st["naive_dask"]["per_trial_mean_s"] / tf_per, 2)
        summary["at_least_5x_faster_than_naive"] = summary["naive_over_tuneflow_per_trial"] >= 5
    result["summary"] = summary
    result["complete"] = not result["skipped"]
    save()
    print(json.dumps(summary, indent=1), flush=True)
    return result


if __name__ == "__main__":
    main()
