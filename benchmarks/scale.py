"""Scaling: validation and shard time, shard memory and trial time at 0.25M, 1M and 4M rows.

    .venv/bin/python benchmarks/scale.py                     # 0.25M, 1M, 4M rows
    .venv/bin/python benchmarks/scale.py --sizes 20000,80000 --rounds 10
    .venv/bin/python benchmarks/scale.py --sizes 327000 --memory-sizes '' --no-trials --expectations FILE

For each size of the synth28 CSV (see common.py):
- validate: tuneflow's validation step (validate_dataset, as the flow's validate_task: it reads the
  CSV itself) on a fresh LocalCluster shaped like the flow's (tasks.engine.cluster.dask_client:
  2 single-threaded worker processes), with the expectations of `--expectations` (default: every
  feature between -10 and 10 and not null, the label in {0, 1}, at least 1000 rows).
- shard: tuneflow's shard step (read_dataset + shard_dataset, as the flow's shard_task) on another
  fresh cluster of that shape (so its memory figures start from an idle cluster), into a fresh store.
  "validate / shard" is the ratio of the two steps' seconds on the same input (goal: <= 1,
  validation no slower than sharding). On both clusters the steps' modules are imported on the
  workers before the clock; what a step imports on first use (Great Expectations, for a suite that
  needs it) is in its time. Peak RSS is the sum over the whole process tree (this process, the
  nannies and the workers), sampled every 50 ms with psutil; "delta" subtracts the tree's RSS just
  before the step (the idle cluster). Throughput = CSV bytes / seconds.
- plain Dask: `dd.read_csv(csv).to_parquet(out)` with Dask's defaults, same files, on a fresh cluster.
- trial: tasks.engine.resident.run_trial on one worker (nthread=1, as the flow sets on 2 cores), a fixed
  configuration (depth 6, eta 0.1) for a fixed number of rounds (no early stop): the cold trial loads
  the shards and builds the QuantileDMatrix, the warm one reuses them (train time only).
- memory only (`--memory-sizes`, default 2M and 8M): the shard step's peak RSS again at a base
  size that gives each worker at least two full CSV blocks (tuneflow reads CSVs in 128 MB blocks).
Goals: times grow about linearly with rows; shard peak RSS at 4x input < 1.2x the 1x peak; validation
no slower than sharding.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

SYNTH_EXPECTATIONS: dict[str, Any] = {
    "min_rows": 1000,
    "columns": {**{f: {"min": -10, "max": 10, "not_null": True} for f in common.FEATURES}, common.TARGET: {"allowed": [0, 1], "not_null": True}},
}
CONFIG = {"max_depth": 6, "learning_rate": 0.1, "min_child_weight": 1.0, "subsample": 0.8, "colsample_bytree": 0.8, "reg_lambda": 1.0, "reg_alpha": 0.0}


def validate_step(csv: Path, expectations: dict[str, Any]) -> tuple[dict[str, Any], float]:
    """tuneflow's validation step (the flow's validate_task body) on the default Dask client: (report, seconds)."""
    from tasks.plan import plan_run
    from tasks.validation import validate_dataset

    plan = plan_run(str(csv), common.TARGET, "binary", None, None, None, common.SHARD_SEED, None, 1, None, 1)
    started = time.perf_counter()
    report = validate_dataset(None, plan.files, plan.schema, expectations, plan.data_options)
    return report, time.perf_counter() - started


def measure_size(rows: int, a: argparse.Namespace, trial: bool = True, validate: bool = True) -> dict[str, Any]:
    from tasks.contracts import Device, Placement, trial_request
    from tasks.engine.cluster import dask_client
    from tasks.engine.resident import run_trial

    csv = common.dataset_csv(rows, work=a.work)
    csv_mb = csv.stat().st_size / 1e6
    out: dict[str, Any] = {"rows": rows, "csv_mb": round(csv_mb, 1)}
    store = a.work / f"store-{rows}-{uuid.uuid4().hex[:6]}"

    # 1. tuneflow's validation step on a fresh cluster
    if validate:
        with dask_client(None, 2, "cpu") as client:
            client.run(lambda: __import__("tasks.validation"))  # imports done before the clock
            time.sleep(0.5)
            with common.TreeMonitor(interval=0.05) as mon:
                report, validate_s = validate_step(csv, a.expectations_dict)
            m = mon.report()
        out["validate"] = {
            "seconds": round(validate_s, 2), "mb_per_s": round(csv_mb / validate_s, 1), "success": report["success"],
            "rows": report["rows"], "partitions": report["partitions"], "expectations": len(report["results"]),
            "peak_rss_mb": m["peak_rss_mb"], "other_processes_cores": m["other_processes_cores"],
        }
    # 2. tuneflow's shard step, then trials, on another fresh cluster
    with dask_client(None, 2, "cpu") as client:
        client.run(lambda: __import__("tasks.data.shard"))  # imports done before the clock (and the baseline)
        time.sleep(0.5)
        with common.TreeMonitor(interval=0.05) as mon:
            manifest, shard_s = common.shard_step(csv, str(store))
        m = mon.report()
        out["shard"] = {
            "seconds": round(shard_s, 2), "mb_per_s": round(csv_mb / shard_s, 1), "peak_rss_mb": m["peak_rss_mb"],
            "baseline_rss_mb": m["baseline_rss_mb"], "delta_rss_mb": round(m["peak_rss_mb"] - m["baseline_rss_mb"], 1),
            "parquet_mb": round(manifest["total_bytes"] / 1e6, 1), "files": sum(len(s["files"]) for s in manifest["splits"].values()),
            "partitions": len(manifest["splits"]["train"]["files"]), "largest_process_peak_rss_mb": m["largest_process_peak_rss_mb"],
            "other_processes_cores": m["other_processes_cores"],
        }
        if validate:
            out["validate_vs_shard"] = round(validate_s / shard_s, 2)
        worker = sorted(client.scheduler_info()["workers"])[0] if trial else None
        request = trial_request(
            manifest, {**common.fixed_params(), **CONFIG}, device=Device.CPU, nthread=1, placement=Placement.TRIAL,
            num_boost_round=a.rounds, early_stopping_rounds=a.rounds,
        )
        trials = []
        for label in ("cold", "warm") if trial else ():
            with common.TreeMonitor(interval=1.0) as tm:
                r = client.submit(run_trial, request, pure=False, workers=[worker]).result()
            trials.append({
                "kind": label, "seconds": r.seconds, "load_s": r.load_seconds, "setup_s": r.setup_seconds, "train_s": r.train_seconds,
                "rounds": r.rounds, "value": round(r.value, 5), "other_processes_cores": tm.report()["other_processes_cores"],
            })
        if trial:
            out["trial"] = {"train_rows": manifest["splits"]["train"]["rows"], "cold": trials[0], "warm": trials[1]}
    # 3. plain Dask on a fresh cluster
    plain_dir = a.work / f"plain-{rows}-{uuid.uuid4().hex[:6]}"
    with dask_client(None, 2, "cpu") as client:
        import dask.dataframe as dd

        client.run(lambda: __import__("dask.dataframe"))
        time.sleep(0.5)
        with common.TreeMonitor(interval=0.05) as mon:
            s = time.perf_counter()
            dd.read_csv(str(csv)).to_parquet(str(plain_dir))
            plain_s = time.perf_counter() - s
        m = mon.report()
        out["plain_dask"] = {
            "seconds": round(plain_s, 2), "mb_per_s": round(csv_mb / plain_s, 1), "peak_rss_mb": m["peak_rss_mb"],
            "delta_rss_mb": round(m["peak_rss_mb"] - m["baseline_rss_mb"], 1), "other_processes_cores": m["other_processes_cores"],
            "largest_process_peak_rss_mb": m["largest_process_peak_rss_mb"],
        }
    if not a.keep:
        shutil.rmtree(store, ignore_errors=True)
        shutil.rmtree(plain_dir, ignore_errors=True)
    return out


def summarize(sizes: list[dict[str, Any]], a: argparse.Namespace) -> dict[str, Any]:
    by = {s["rows"]: s for s in sizes}
    rows = sorted(by)
    base = 1_000_000 if 1_000_000 in by else rows[0]
    big = 4 * base if 4 * base in by else rows[-1]
    s: dict[str, Any] = {"base_rows": base, "big_rows": big}
    b, g = by[base], by[big]
    k = big / base
    s["input_ratio"] = k
    s["shard_time_ratio"] = round(g["shard"]["seconds"] / b["shard"]["seconds"], 2)
    if "trial" in g and "trial" in b:
        s["warm_train_time_ratio"] = round(g["trial"]["warm"]["train_s"] / b["trial"]["warm"]["train_s"], 2)
        s["cold_trial_time_ratio"] = round(g["trial"]["cold"]["seconds"] / b["trial"]["cold"]["seconds"], 2)
    s["shard_peak_rss_ratio"] = round(g["shard"]["peak_rss_mb"] / b["shard"]["peak_rss_mb"], 3)
    s["shard_delta_rss_ratio"] = round(g["shard"]["delta_rss_mb"] / max(1e-9, b["shard"]["delta_rss_mb"]), 3)
    s["shard_memory_goal_met"] = s["shard_peak_rss_ratio"] < 1.2
    # "about linear": within 25% of the input ratio either way
    s["linear_shard"] = 0.75 * k <= s["shard_time_ratio"] <= 1.25 * k
    s["linear_trial"] = 0.75 * k <= s["warm_train_time_ratio"] <= 1.25 * k if "warm_train_time_ratio" in s else None
    s["shard_vs_plain_dask_throughput"] = {r: round(by[r]["shard"]["mb_per_s"] / by[r]["plain_dask"]["mb_per_s"], 2) for r in rows}
    s["validate_vs_shard"] = {r: by[r]["validate_vs_shard"] for r in rows if "validate_vs_shard" in by[r]}
    s["validation_goal_met"] = all(v <= 1 for v in s["validate_vs_shard"].values())  # validation no slower than sharding
    mem = sorted(m["rows"] for m in result_memory(a))
    if len(mem) >= 2:
        mb = {m["rows"]: m for m in result_memory(a)}
        lo, hi = mb[mem[0]]["shard"], mb[mem[-1]]["shard"]
        s["memory_sizes"] = [mem[0], mem[-1]]
        s["memory_sizes_peak_rss_ratio"] = round(hi["peak_rss_mb"] / lo["peak_rss_mb"], 3)
        s["memory_sizes_delta_rss_ratio"] = round(hi["delta_rss_mb"] / max(1e-9, lo["delta_rss_mb"]), 3)
    return s


def result_memory(a: argparse.Namespace) -> list[dict[str, Any]]:
    return getattr(a, "_memory_results", [])


def markdown(result: dict[str, Any]) -> str:
    text = common.header("Scale: validation and shard time, shard memory, trial time", result["command"], result)
    text += (f"synth28 CSV read in {result['params'].get('csv_blocksize', '128MB')} blocks; trial: depth 6, eta 0.1, "
             f"{result['params']['rounds']} rounds, nthread=1, on one Dask worker. Validation: "
             f"{result['params'].get('expectations', 'not run')}, on the same input as the shard step.\n\n")
    text += "Validation beside sharding (goal: validate / shard <= 1):\n\n" + common.md_table([{
        "rows": f"{s['rows']:,}", "CSV MB": s["csv_mb"], "partitions": s["validate"]["partitions"], "validate s": s["validate"]["seconds"],
        "shard s": s["shard"]["seconds"], "validate / shard": s["validate_vs_shard"], "report": "passed" if s["validate"]["success"] else "FAILED",
        "other processes' cores": s["validate"]["other_processes_cores"],
    } for s in result["sizes"] if "validate" in s]) + "\n"
    rows = []
    for s in [s for s in result["sizes"] if "trial" in s]:
        rows.append({
            "rows": f"{s['rows']:,}", "CSV MB": s["csv_mb"], "validate s": s.get("validate", {}).get("seconds", ""),
            "shard s": s["shard"]["seconds"], "shard MB/s": s["shard"]["mb_per_s"],
            "plain Dask s": s["plain_dask"]["seconds"], "plain Dask MB/s": s["plain_dask"]["mb_per_s"],
            "shard peak RSS MB (tree)": s["shard"]["peak_rss_mb"], "shard Δ RSS MB": s["shard"]["delta_rss_mb"],
            "plain Dask Δ RSS MB": s["plain_dask"]["delta_rss_mb"],
            "cold trial s (load+QDM+train)": s["trial"]["cold"]["seconds"], "warm trial train s": s["trial"]["warm"]["train_s"],
            "ms/round (warm)": round(1000 * s["trial"]["warm"]["train_s"] / s["trial"]["warm"]["rounds"], 1),
        })
    text += common.md_table(rows)
    mrows = [{
        "rows": f"{s['rows']:,}", "CSV MB": s["csv_mb"], "train shards (= CSV blocks)": s["shard"]["partitions"], "shard s": s["shard"]["seconds"],
        "shard MB/s": s["shard"]["mb_per_s"], "shard peak RSS MB (tree)": s["shard"]["peak_rss_mb"], "shard Δ RSS MB": s["shard"]["delta_rss_mb"],
        "largest process peak MB": s["shard"]["largest_process_peak_rss_mb"], "plain Dask MB/s": s["plain_dask"]["mb_per_s"],
    } for s in result["sizes"] + result.get("memory_sizes", [])]
    text += "\nShard memory per size (the tree: this process + nannies + workers; Δ: above the idle cluster):\n\n" + common.md_table(mrows)
    sm = result["summary"]
    text += (
        f"\n{sm['big_rows']:,} vs {sm['base_rows']:,} rows ({sm['input_ratio']:g}x input): shard time x{sm['shard_time_ratio']} "
        f"({'about linear' if sm['linear_shard'] else 'NOT linear'}), warm train time x{sm.get('warm_train_time_ratio')} "
        f"({'about linear' if sm['linear_trial'] else 'NOT linear'}), cold trial x{sm.get('cold_trial_time_ratio')}; "
        f"shard peak RSS x{sm['shard_peak_rss_ratio']} (goal < 1.2: {'met' if sm['shard_memory_goal_met'] else 'NOT met'}; "
        f"above the idle cluster: x{sm['shard_delta_rss_ratio']}).\n"
    )
    if sm.get("validate_vs_shard"):
        text += (f"\nValidation / shard seconds by size: {', '.join(f'{int(r):,}: x{v}' for r, v in sm['validate_vs_shard'].items())} "
                 f"(goal <= 1: {'met' if sm['validation_goal_met'] else 'NOT met'}).\n")
    if "memory_sizes" in sm:
        lo, hi = sm["memory_sizes"]
        text += (f"\n{hi:,} vs {lo:,} rows ({hi / lo:g}x input): shard peak RSS x{sm['memory_sizes_peak_rss_ratio']} "
                 f"(above the idle cluster: x{sm['memory_sizes_delta_rss_ratio']}).\n")
    return text


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="250000,1000000,4000000")
    p.add_argument("--rounds", type=int, default=50)
    p.add_argument("--memory-sizes", default="2000000,8000000", help="extra sizes for the shard memory check only ('' for none)")
    p.add_argument("--out-dir", type=Path, default=common.RESULTS)
    p.add_argument("--name", default="scale")
    p.add_argument("--work", type=Path, default=common.WORK)
    p.add_argument("--keep", action="store_true", help="keep the shards written")
    p.add_argument("--render", action="store_true", help="rewrite <name>.md from <name>.json and stop")
    p.add_argument("--csv-blocksize", help="what-if: override tasks.data.inputs.CSV_BLOCKSIZE (e.g. 64MB) for the shard step")
    p.add_argument("--expectations", help="expectations file for the validation step (default: SYNTH_EXPECTATIONS)")
    p.add_argument("--no-trials", action="store_true", help="shard and plain Dask only")
    a = p.parse_args(argv)
    from tasks.data import inputs

    if a.csv_blocksize:
        inputs.CSV_BLOCKSIZE = a.csv_blocksize
    if a.render:
        result = json.loads((a.out_dir / f"{a.name}.json").read_text())
        common.write_results(a.name, result, markdown(result), a.out_dir)
        return result
    args = argv if argv is not None else sys.argv[1:]
    result: dict[str, Any] = {"benchmark": "scale", "machine": common.machine(), "command": ("python benchmarks/scale.py " + shlex.join(args)).strip()}
    from tasks.validation import load_expectations

    a.expectations_dict = load_expectations(a.expectations) if a.expectations else SYNTH_EXPECTATIONS
    result["params"] = {
        "sizes": [int(x) for x in a.sizes.split(",")], "rounds": a.rounds, "config": CONFIG, "csv_blocksize": inputs.CSV_BLOCKSIZE,
        "expectations": a.expectations or "SYNTH_EXPECTATIONS (every feature in [-10, 10] and not null, label in {0, 1}, >= 1000 rows)",
    }
    result["versions"] = common.versions("dask", "distributed", "pandas", "pyarrow", "xgboost")
    sizes = []
    for rows in result["params"]["sizes"]:
        print(f"[scale] {rows:,} rows ...", flush=True)
        sizes.append(measure_size(rows, a, trial=not a.no_trials))
        s = sizes[-1]
        warm = f"; warm train {s['trial']['warm']['train_s']} s" if "trial" in s else ""
        print(f"[scale] {rows:,}: validate {s['validate']['seconds']} s, shard {s['shard']['seconds']} s (x{s['validate_vs_shard']}), "
              f"peak {s['shard']['peak_rss_mb']} MB{warm}", flush=True)
    result["sizes"] = sizes
    result["memory_sizes"] = []
    for rows in [int(x) for x in a.memory_sizes.split(",") if x]:
        print(f"[scale] memory only: {rows:,} rows ...", flush=True)
        result["memory_sizes"].append(measure_size(rows, a, trial=False, validate=False))
        print(f"[scale] {rows:,}: shard {result['memory_sizes'][-1]['shard']['seconds']} s, peak {result['memory_sizes'][-1]['shard']['peak_rss_mb']} MB", flush=True)
    a._memory_results = result["memory_sizes"]
    result["summary"] = summarize(sizes, a)
    common.write_results(a.name, result, markdown(result), a.out_dir)
    return result


if __name__ == "__main__":
    main()
