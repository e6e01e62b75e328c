"""What a rung costs: training a configuration in units of rounds vs in one go, in both placements,
and the data-parallel fixed cost per trial before and after the resident matrices.

    .venv/bin/python benchmarks/rung_cost.py --rows 1000000 --placements trial,data --device cpu

(a) One configuration (depth 6, eta 0.1, max_bin 256, early stopping off so every way trains the
    same rounds) trained `--rounds` rounds in one unit, then in `--units` units continuing the booster
    the worker(s) kept live, then in `--units` units each resumed from the saved `.ubj` (no live
    booster: XGBoost loads the model and predicts every saved tree again). Each unit's checkpoint is
    written to a local file after it returns, as the flow's trial task does. Ratio: the units' total
    wall time (as the flow sees it: submit to result, plus the checkpoint write) over the uninterrupted
    run's. Goal: live <= 1.05. The matrices are built by a warm-up unit first, so every way starts
    from resident data. Trial placement: tasks.engine.placement.ResidentTrainer (one worker per unit);
    data placement: tasks.engine.data_parallel.DataParallelTrainer (all workers per unit).
(b) Data-parallel fixed cost per trial: `--setup-trials` short trials (`--setup-rounds` rounds) done
    the old way (a copy of the pre-rewrite code path, kept here only: DaskQuantileDMatrix pair +
    xgboost.dask.train per trial, over the same persisted slices) vs the new resident matrices.
    Setup = a trial's wall time minus its boosting time (old: between the training callback's
    before/after stamps on the worker; new: the unit's train_seconds).

Data: synth28 (common.py) written straight into tuneflow's dataset layout (train 80%, valid 10% of
`--rows`, Parquet parts of 250k rows, a manifest), so the script needs neither Prefect nor the CSV
shard step: it runs where only xgboost, dask and distributed are installed (the GPU machine).
Cluster: tasks.engine.cluster.dask_client (the flow's LocalCluster: `--workers` processes, the
cores split between them; LocalCUDACluster with `--device cuda` where dask_cuda is there).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import xgboost as xgb

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

CONFIG = {"max_depth": 6, "learning_rate": 0.1, "max_bin": 256}


# ------------------------------------------------------------------------------- data


def write_dataset(root: Path, rows: int, seed: int = 7, part_rows: int = common.BLOCK) -> dict[str, Any]:
    """synth28 as Parquet parts + manifest in tuneflow's layout (reused when it is there)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tasks.contracts import LABEL_COLUMN

    path = root / "_manifest.json"
    if path.exists():
        return json.loads(path.read_text())
    want = {"train": int(rows * 0.8), "valid": int(rows * 0.1)}
    blocks = common.synth_blocks(want["train"] + want["valid"], seed)
    splits: dict[str, Any] = {}
    pending: list[tuple[Any, Any]] = []
    for split, n in want.items():
        files, done = [], 0
        (root / split).mkdir(parents=True, exist_ok=True)
        while done < n:
            if not pending:
                pending.append(next(blocks))
            X, y = pending.pop(0)
            k = min(len(y), n - done, part_rows)
            if k < len(y):
                pending.insert(0, (X[k:], y[k:]))
            rel = f"{split}/part-{len(files):05d}.parquet"
            table = pa.Table.from_arrays([pa.array(X[:k, j]) for j in range(common.N_FEATURES)] + [pa.array(y[:k])], names=[*common.FEATURES, LABEL_COLUMN])
            pq.write_table(table, root / rel, compression="zstd")
            files.append({"path": rel, "rows": k, "bytes": (root / rel).stat().st_size, "sha256": ""})
            done += k
        splits[split] = {"rows": n, "bytes": sum(f["bytes"] for f in files), "files": files}
    manifest = {
        "format": "tuneflow.dataset/1", "name": "synth28", "fingerprint": f"rung-cost-synth28-{rows}-{seed}", "uri": str(root),
        "target": common.TARGET, "task": "binary", "features": [{"name": f, "kind": "numeric"} for f in common.FEATURES],
        "classes": ["0", "1"], "row_key": None, "splits": splits, "total_rows": want["train"] + want["valid"],
    }
    path.write_text(json.dumps(manifest))
    return manifest


# --------------------------------------------------------------- (a) units vs one go


def params() -> dict[str, Any]:
    return {"objective": "binary:logistic", "eval_metric": "auc", "seed": 0, **CONFIG}


def _process_cpu_s() -> float:
    """CPU seconds (user + system) this process has used: a worker's, through client.run."""
    t = os.times()
    return t.user + t.system


def cluster_cpu_s(client: Any) -> float:
    """CPU seconds used so far by every worker process plus this one (which holds the scheduler and
    its trackers): less disturbed than wall time by other processes competing for the cores."""
    return sum(client.run(_process_cpu_s).values()) + _process_cpu_s()


def run_units(client: Any, trainer: Any, base: Any, rounds: int, units: int, how: str, ckpt_dir: Path, number: int) -> dict[str, Any]:
    """Train `rounds` rounds in `units` units ('one' = a single unit), continuing 'live' or from 'checkpoint'."""
    cpu0 = cluster_cpu_s(client)
    per = rounds if how == "one" else rounds // units
    n_units = 1 if how == "one" else units
    history: list[float] = []
    walls, trains, setups, resumed = [], [], [], []
    previous: str | None = None
    best = None
    for k in range(n_units):
        ckpt = ckpt_dir / f"{how}-{number}-{k}.ubj"
        request = dataclasses.replace(
            base, number=number, num_boost_round=per, best_so_far=best, resume_from=previous,
            checkpoint_uri=str(ckpt) if how != "one" else None, live_key=f"{how}-{number}" if how == "live" else None,
        )
        started = time.perf_counter()
        result = trainer.run(request)
        if result.checkpoint_ubj is not None:  # the flow's trial task writes it before the next unit
            tmp = ckpt.with_suffix(".tmp")
            tmp.write_bytes(result.checkpoint_ubj)
            tmp.replace(ckpt)
        walls.append(time.perf_counter() - started)
        trains.append(result.train_seconds)
        setups.append(result.setup_seconds)
        resumed.append(result.resumed)
        history += result.history
        previous, best = str(ckpt), (result.best_iteration, result.value)
    cpu = cluster_cpu_s(client) - cpu0
    return {"how": how, "units": n_units, "rounds_per_unit": per, "wall_s": round(sum(walls), 3), "cpu_s": round(cpu, 3), "unit_wall_s": [round(w, 3) for w in walls],
            "train_s": round(sum(trains), 3), "setup_s": round(sum(setups), 4), "unit_setup_s": setups, "resumed": resumed, "history": history, "value": history[-1]}


def warm_up(client: Any, trainer: Any, base: Any, placement: str) -> float:
    """Load the data and build the matrices first (on every worker: a trial-parallel unit may go to any)."""
    started = time.perf_counter()
    request = dataclasses.replace(base, number=999, num_boost_round=1)
    if placement == "trial":
        from tasks.engine.resident import run_trial

        client.gather([client.submit(run_trial, request, workers=[w], pure=False) for w in client.scheduler_info()["workers"]])
    else:
        trainer.run(request)
    return time.perf_counter() - started


def measure_units(client: Any, trainer: Any, base: Any, a: argparse.Namespace, placement: str) -> dict[str, Any]:
    ckpt_dir = a.work / "checkpoints" / placement
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    warm = warm_up(client, trainer, base, placement)
    repeats = []
    ways = ["one", "live", "checkpoint"]
    for r in range(a.repeats):
        order = ways[r % 3:] + ways[:r % 3]  # rotated each repeat, so a busy spell on the machine does not always hit the same way
        row = {how: run_units(client, trainer, base, a.rounds, a.units, how, ckpt_dir, 10 * r + ways.index(how)) for how in order}
        row = {how: row[how] for how in ways}
        one = row["one"]
        for how in ("live", "checkpoint"):
            row[how]["max_abs_history_diff"] = float(max(abs(x - y) for x, y in zip(row[how]["history"], one["history"])))
        derive_ratios(row)
        repeats.append(row)
        print(f"[rung-cost] {placement} repeat {r}: one {one['wall_s']:.2f} s ({one['cpu_s']:.2f} CPU s), "
              f"live x{row['live']['ratio']} (CPU x{row['live']['cpu_ratio']}), checkpoint x{row['checkpoint']['ratio']} (CPU x{row['checkpoint']['cpu_ratio']})", flush=True)
    for row in repeats:  # keep the JSON small: the values, not the per-round history
        for how in row:
            row[how].pop("history")
    return summarize_units({"placement": placement, "warmup_s": round(warm, 3), "repeats": repeats})


def derive_ratios(row: dict[str, Any]) -> None:
    """One repeat's ratios against its one-unit run (also recomputed by --render)."""
    one = row["one"]
    for how in ("live", "checkpoint"):
        u = row[how]
        u["ratio"] = round(u["wall_s"] / one["wall_s"], 4)
        u["cpu_ratio"] = round(u["cpu_s"] / one["cpu_s"], 4)
        # fixed cost only: what is not boosting (submit, matrices, booster, results, checkpoint writes)
        u["setup_ratio"] = round(1 + ((u["wall_s"] - u["train_s"]) - (one["wall_s"] - one["train_s"])) / one["wall_s"], 4)


def summarize_units(u: dict[str, Any]) -> dict[str, Any]:
    repeats = u["repeats"]
    for row in repeats:
        derive_ratios(row)
    med = lambda how, key: round(statistics.median(r[how][key] for r in repeats), 4)  # noqa: E731
    return {
        "placement": u["placement"], "warmup_s": u["warmup_s"], "repeats": repeats,
        "one_wall_s": med("one", "wall_s"), "live_wall_s": med("live", "wall_s"), "checkpoint_wall_s": med("checkpoint", "wall_s"),
        "live_ratio": med("live", "ratio"), "checkpoint_ratio": med("checkpoint", "ratio"),
        "one_cpu_s": med("one", "cpu_s"), "live_cpu_ratio": med("live", "cpu_ratio"), "checkpoint_cpu_ratio": med("checkpoint", "cpu_ratio"),
        "live_setup_ratio": med("live", "setup_ratio"), "checkpoint_setup_ratio": med("checkpoint", "setup_ratio"),
        "live_max_abs_history_diff": max(r["live"]["max_abs_history_diff"] for r in repeats),
        "checkpoint_max_abs_history_diff": max(r["checkpoint"]["max_abs_history_diff"] for r in repeats),
    }


# ----------------------------------------------- (b) data-parallel fixed cost per trial


class OldDataParallel:
    """The pre-rewrite data-parallel trial (kept here for the comparison only): a Dask DataFrame
    over the persisted slices, a DaskQuantileDMatrix pair and xgboost.dask.train per trial, which
    builds every worker's local matrix again inside the call."""

    def __init__(self, client: Any, splits: Any, manifest: dict[str, Any]) -> None:
        import dask.dataframe as dd
        import pandas as pd

        from tasks.contracts import LABEL_COLUMN

        self.client, self.manifest = client, manifest
        names = [f["name"] for f in manifest["features"]]
        meta_x = pd.DataFrame({n: pd.Series(dtype="float32") for n in names})
        meta_y = pd.Series(dtype="float32", name=LABEL_COLUMN)
        self.parts = {}
        for split in ("train", "valid"):
            xs = [client.submit(_frame_x, f, names, workers=[w]) for f, w in zip(splits.slices[split], splits.workers)]
            ys = [client.submit(_frame_y, f, workers=[w]) for f, w in zip(splits.slices[split], splits.workers)]
            self.parts[split] = (dd.from_delayed(xs, meta=meta_x), dd.from_delayed(ys, meta=meta_y))
            self.keep = getattr(self, "keep", []) + xs + ys
        import distributed

        distributed.wait(self.keep)

    def run(self, request: Any, device: str) -> dict[str, Any]:
        import xgboost.dask  # noqa: F401

        from tasks.engine.training import xgb_params

        started = time.time()
        X, y = self.parts["train"]
        Xv, yv = self.parts["valid"]
        kw = {"max_bin": request.max_bin, "feature_types": ["q"] * len(self.manifest["features"]), "enable_categorical": True}
        dtrain = xgb.dask.DaskQuantileDMatrix(self.client, X, y, **kw)
        dvalid = xgb.dask.DaskQuantileDMatrix(self.client, Xv, yv, ref=dtrain, **kw)
        out = xgb.dask.train(
            self.client, xgb_params(request, device), dtrain, num_boost_round=int(request.num_boost_round), evals=[(dvalid, "valid")],
            early_stopping_rounds=request.early_stopping_rounds, verbose_eval=False, callbacks=[Stamp()],
            coll_cfg=xgb.collective.Config(timeout=int(request.collective_timeout_s)),
        )
        wall = time.time() - started
        booster = out["booster"]
        train = float(booster.attr("t1")) - float(booster.attr("t0"))
        return {"wall_s": round(wall, 3), "train_s": round(train, 3), "setup_s": round(wall - train, 3), "rounds": booster.num_boosted_rounds()}


def _frame_x(part: Any, names: list[str]) -> Any:
    import pandas as pd

    return pd.DataFrame(part[0], columns=names)


def _frame_y(part: Any) -> Any:
    import pandas as pd

    from tasks.contracts import LABEL_COLUMN

    return pd.Series(part[1], name=LABEL_COLUMN)


class Stamp(xgb.callback.TrainingCallback):
    """Wall-clock stamps on the worker around the boosting rounds, carried back as booster attributes."""

    def before_training(self, model: Any) -> Any:
        model.set_attr(t0=repr(time.time()))
        return model

    def after_training(self, model: Any) -> Any:
        model.set_attr(t1=repr(time.time()))
        return model


def measure_setup(client: Any, trainer: Any, base: Any, device: str, a: argparse.Namespace) -> dict[str, Any]:
    configs = [{"max_depth": 4 + i % 3, "learning_rate": 0.05 * (i + 1)} for i in range(a.setup_trials)]
    splits = trainer.current_splits()
    splits.ready(client, float(base.collective_timeout_s))
    old = OldDataParallel(client, splits, base.manifest)
    old_rows = []
    for i, cfg in enumerate(configs):
        old_rows.append({"trial": i, **old.run(base.for_trial(100 + i, cfg), device)})
    del old
    from tasks.engine.data_parallel import release_data_parallel

    client.run(release_data_parallel)  # the new way starts without resident matrices: its first trial builds them
    new_rows = []
    for i, cfg in enumerate(configs):
        r = trainer.run(base.for_trial(200 + i, cfg))
        new_rows.append({"trial": i, "wall_s": r.seconds, "train_s": r.train_seconds, "setup_s": r.setup_seconds, "rounds": r.rounds, "matrix_cache_hit": r.matrix_cache_hit})
    mean = lambda rows, key: round(statistics.fmean(r[key] for r in rows), 4)  # noqa: E731
    later = lambda rows: rows[1:] or rows  # noqa: E731
    out = {
        "rounds_per_trial": a.setup_rounds, "old": old_rows, "new": new_rows,
        "old_setup_s_mean": mean(old_rows, "setup_s"), "new_setup_s_first": new_rows[0]["setup_s"], "new_setup_s_later_mean": mean(later(new_rows), "setup_s"),
        "old_wall_s_mean": mean(old_rows, "wall_s"), "new_wall_s_later_mean": mean(later(new_rows), "wall_s"),
    }
    out["setup_saved_per_trial_s"] = round(out["old_setup_s_mean"] - out["new_setup_s_later_mean"], 4)
    print(f"[rung-cost] data-parallel setup per trial: old {out['old_setup_s_mean']} s, new {out['new_setup_s_later_mean']} s "
          f"(first new trial {out['new_setup_s_first']} s, builds the matrices)", flush=True)
    return out


# ----------------------------------------------------------------------------- report


def markdown(result: dict[str, Any]) -> str:
    p = result["params"]
    text = common.header("Rung cost: units of rounds vs one go; data-parallel setup per trial", result["command"], result)
    text += (f"synth28, {p['rows']:,} rows ({result['data']['train_rows']:,} train, {result['data']['valid_rows']:,} valid); "
             f"depth {CONFIG['max_depth']}, eta {CONFIG['learning_rate']}, max_bin {CONFIG['max_bin']}, AUC on valid every round, no early stopping; "
             f"device {p['device']}; {result['cluster']['workers']} Dask worker processes x {result['cluster']['threads_per_worker']} thread(s); "
             f"repeats {p['repeats']} (medians). Other processes on the machine: {result['monitor']['other_processes_cores']} cores on average "
             f"(load average {result['monitor']['loadavg_1m_start']} at start, {result['monitor']['loadavg_1m_end']} at end).\n\n")
    if result.get("units"):
        text += f"(a) {p['rounds']} rounds in one unit vs {p['units']} units of {p['rounds'] // p['units']} (wall time as the flow sees it, checkpoint writes included):\n\n"
        rows = [{
            "placement": u["placement"], "one unit s": u["one_wall_s"], "live units s": u["live_wall_s"], "live ratio": u["live_ratio"],
            "checkpoint units s": u["checkpoint_wall_s"], "checkpoint ratio": u["checkpoint_ratio"],
            "CPU ratio live / checkpoint": f"{u.get('live_cpu_ratio')} / {u.get('checkpoint_cpu_ratio')}",
            "fixed-cost ratio live / checkpoint": f"{u.get('live_setup_ratio')} / {u.get('checkpoint_setup_ratio')}",
            "max Δ AUC vs one unit, live / checkpoint": f"{u['live_max_abs_history_diff']:.1e} / {u['checkpoint_max_abs_history_diff']:.1e}",
        } for u in result["units"]]
        text += common.md_table(rows)
        text += ("\nRatios are medians over the repeats, each against that repeat's one-unit run. CPU ratio: CPU seconds of the "
                 "worker processes and this process (scheduler, trackers) over the one unit's. Fixed-cost ratio: 1 + (the units' "
                 "wall minus boosting seconds, minus the one unit's) / the one unit's wall time: submitting, the booster, results, "
                 "checkpoint writes. The reload of a saved booster (predicting its trees again) happens inside the first boosting "
                 "round, so it shows in the wall and CPU ratios, not in this one.\n")
        verdicts = [
            f"{u['placement']}: live x{u['live_ratio']} wall (repeats {', '.join(str(r['live']['ratio']) for r in u['repeats'])}), "
            f"x{u.get('live_cpu_ratio')} CPU ({'met' if min(u['live_ratio'], u.get('live_cpu_ratio') or 9) <= 1.05 else 'NOT met'})"
            for u in result["units"]
        ]
        text += "\nGoal live <= 1.05: " + "; ".join(verdicts) + ".\n"
    s = result.get("setup")
    if s:
        text += (f"\n(b) Data-parallel fixed cost per trial ({len(s['old'])} trials of {s['rounds_per_trial']} rounds each way; "
                 "setup = wall minus boosting):\n\n")
        rows = [{"way": "old: DaskQuantileDMatrix + xgboost.dask.train", "trial": r["trial"], "wall s": r["wall_s"], "boosting s": r["train_s"], "setup s": r["setup_s"]} for r in s["old"]]
        rows += [{"way": "new: resident matrices, one boost() per worker", "trial": r["trial"], "wall s": r["wall_s"], "boosting s": r["train_s"], "setup s": r["setup_s"]} for r in s["new"]]
        text += common.md_table(rows)
        text += (f"\nSetup per trial: old {s['old_setup_s_mean']} s (every trial), new {s['new_setup_s_first']} s on the first trial "
                 f"(builds the matrices) then {s['new_setup_s_later_mean']} s; {s['setup_saved_per_trial_s']} s saved per trial.\n")
    return text


# ------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000, help="rows of synth28 (80%% train, 10%% valid)")
    p.add_argument("--placements", default="trial,data", help="comma-separated: trial, data")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--rounds", type=int, default=200)
    p.add_argument("--units", type=int, default=4)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--setup-trials", type=int, default=3, help="(b) trials each way; 0 skips (b)")
    p.add_argument("--setup-rounds", type=int, default=10)
    p.add_argument("--out-dir", type=Path, default=common.RESULTS)
    p.add_argument("--name", default="rung-cost")
    p.add_argument("--work", type=Path, default=common.WORK / "rung-cost")
    p.add_argument("--render", action="store_true", help="rewrite <name>.md from <name>.json and stop")
    a = p.parse_args(argv)
    if a.render:
        result = json.loads((a.out_dir / f"{a.name}.json").read_text())
        result["units"] = [summarize_units(u) for u in result.get("units", [])]
        common.write_results(a.name, result, markdown(result), a.out_dir)
        return result
    placements = [x for x in a.placements.split(",") if x]
    if set(placements) - {"trial", "data"}:
        raise SystemExit(f"unknown placement(s) in {a.placements!r}: choose from trial, data")

    from tasks.contracts import Placement, trial_request
    from tasks.engine.cluster import dask_client
    from tasks.engine.data_parallel import DataParallelTrainer
    from tasks.engine.placement import ResidentTrainer
    from tasks.engine.resident import release_data

    args = argv if argv is not None else sys.argv[1:]
    result: dict[str, Any] = {"benchmark": "rung-cost", "machine": common.machine(), "command": ("python benchmarks/rung_cost.py " + " ".join(args)).strip()}
    result["params"] = {"rows": a.rows, "placements": placements, "device": a.device, "workers": a.workers, "rounds": a.rounds, "units": a.units,
                        "repeats": a.repeats, "setup_trials": a.setup_trials, "setup_rounds": a.setup_rounds, "config": CONFIG}
    result["versions"] = common.versions("xgboost", "dask", "distributed", "numpy")
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        result["top_at_start"] = subprocess.run(["top", "-b", "-n", "1", "-w", "160"], capture_output=True, text=True, timeout=10).stdout.splitlines()[:15]

    started = time.perf_counter()
    manifest = write_dataset(a.work / f"synth28-{a.rows}", a.rows)
    result["data"] = {"seconds": round(time.perf_counter() - started, 2), "train_rows": manifest["splits"]["train"]["rows"], "valid_rows": manifest["splits"]["valid"]["rows"],
                      "train_files": len(manifest["splits"]["train"]["files"]), "parquet_mb": round((manifest["splits"]["train"]["bytes"] + manifest["splits"]["valid"]["bytes"]) / 1e6, 1)}
    result["units"] = []
    with dask_client(None, a.workers, a.device) as client, common.TreeMonitor(interval=0.5) as mon:
        info = client.scheduler_info()["workers"]
        threads = min(w["nthreads"] for w in info.values())
        result["cluster"] = {"workers": len(info), "threads_per_worker": threads, "type": type(client.cluster).__name__ if client.cluster else None}
        options = dict(device=a.device, nthread=threads, early_stopping_rounds=None)
        for placement in placements:
            base = trial_request(manifest, params(), placement=Placement(placement), **options)
            print(f"[rung-cost] (a) {placement} placement: {a.rounds} rounds, one unit vs {a.units} live vs {a.units} from checkpoints ...", flush=True)
            if placement == "trial":
                result["units"].append(measure_units(client, ResidentTrainer(client), base, a, placement))
                client.run(release_data)
            else:
                with DataParallelTrainer(client, manifest, {}) as trainer:
                    result["units"].append(measure_units(client, trainer, base, a, placement))
                    if a.setup_trials > 0:
                        print(f"[rung-cost] (b) data-parallel setup per trial, old vs new, {a.setup_trials} trials of {a.setup_rounds} rounds ...", flush=True)
                        short = dataclasses.replace(base, num_boost_round=a.setup_rounds)
                        result["setup"] = measure_setup(client, trainer, short, a.device, a)
        if "data" not in placements and a.setup_trials > 0:
            base = trial_request(manifest, params(), placement=Placement.DATA, num_boost_round=a.setup_rounds, **options)
            with DataParallelTrainer(client, manifest, {}) as trainer:
                result["setup"] = measure_setup(client, trainer, base, a.device, a)
    result["monitor"] = mon.report()
    result["seconds"] = round(time.perf_counter() - started, 1)
    paths = common.write_results(a.name, result, markdown(result), a.out_dir)
    print(f"[rung-cost] wrote {paths[0]} and {paths[1]} ({result['seconds']} s)", flush=True)
    return result


if __name__ == "__main__":
    main()
