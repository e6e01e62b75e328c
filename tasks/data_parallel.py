"""Data-parallel placement: one trial at a time over all workers with xgboost.dask, for data
larger than one worker. The Dask collections are read and persisted once per study, not per
trial; a collective timeout makes a lost worker fail the trial fast instead of hanging it.
"""

from __future__ import annotations

import io
import operator
import time
from typing import Any

import dask.dataframe as dd
import pandas as pd
import xgboost as xgb
import xgboost.dask  # noqa: F401  (registers xgb.dask)
import distributed
from distributed import Client

from tasks.storage import filesystem, join
from tasks.trial_engine import to_matrix

# Bytes held in worker memory per byte of compressed Parquet in the train+valid splits (float32
# arrays, the QuantileDMatrix and XGBoost's working set); measured ~3-4x on the sample data.
MEMORY_PER_PARQUET_BYTE = 6.0
COLLECTIVE_TIMEOUT_S = 300


def resident_bytes_estimate(manifest: dict[str, Any]) -> int:
    """Worker memory one resident copy of train+valid is expected to take."""
    parquet = manifest["splits"]["train"]["bytes"] + manifest["splits"]["valid"]["bytes"]
    return int(parquet * MEMORY_PER_PARQUET_BYTE)


def choose_placement(manifest: dict[str, Any], worker_memory: list[int], forced: str = "auto") -> str:
    """'trial' when a copy fits in half the smallest worker's memory, else 'data'."""
    if forced in ("trial", "data"):
        return forced
    limits = [m for m in worker_memory if m]  # 0/None: no limit set on that worker
    if not limits:
        return "trial"
    return "trial" if resident_bytes_estimate(manifest) <= 0.5 * min(limits) else "data"


def worker_memory(client: Client) -> list[int]:
    """Each worker's memory limit (0 where none is set)."""
    return [int(w.get("memory_limit") or 0) for w in client.scheduler_info()["workers"].values()]


class PersistedSplits:
    """train/valid held in the cluster's memory for the whole study, a slice on every worker.

    Every worker must hold some rows of each split: xgboost.dask computes wrong distributed
    metrics (AUC) or refuses categorical input when a worker's part is empty.
    """

    def __init__(self, client: Client, manifest: dict[str, Any], storage_options: dict[str, Any]) -> None:
        started = time.perf_counter()
        self.client = client
        workers = sorted(client.scheduler_info()["workers"])
        self.workers = frozenset(workers)  # each slice is pinned to one of these addresses
        names = [f["name"] for f in manifest["features"]]
        meta_x = pd.DataFrame({n: pd.Series(dtype="float32") for n in names})
        meta_y = pd.Series(dtype="float32", name="__label__")
        self.parts: dict[str, tuple[dd.DataFrame, dd.Series]] = {}
        self.futures: list[Any] = []
        for split in ("train", "valid"):
            uris = [join(manifest["uri"], f["path"]) for f in manifest["splits"][split]["files"]]
            xs, ys = [], []
            for i, worker in enumerate(workers):
                part = client.submit(_load_slice, uris, i, len(workers), manifest, storage_options, workers=[worker], pure=False)
                xs.append(client.submit(operator.getitem, part, 0, workers=[worker]))
                ys.append(client.submit(operator.getitem, part, 1, workers=[worker]))
            self.parts[split] = (dd.from_delayed(xs, meta=meta_x), dd.from_delayed(ys, meta=meta_y))
            self.futures += xs + ys
        self.feature_types = ["c" if f["kind"] == "categorical" else "q" for f in manifest["features"]]
        self.load_seconds = time.perf_counter() - started


def _load_slice(uris: list[str], i: int, n: int, manifest: dict[str, Any], storage_options: dict[str, Any]) -> tuple[pd.DataFrame, pd.Series]:
    """Worker i of n: its share of the files (round-robin), or of the rows when files are fewer."""
    mine = uris[i::n] if len(uris) >= n else uris
    frames = []
    for uri in mine:
        fs, path = filesystem(uri, storage_options)
        with fs.open(path, "rb") as f:
            frames.append(pd.read_parquet(io.BytesIO(f.read())))
    df = pd.concat(frames, ignore_index=True)
    if len(uris) < n:
        df = df.iloc[i::n].reset_index(drop=True)
    y = df.pop("__label__").astype("float32")
    for feat in manifest["features"]:
        if feat["kind"] == "categorical":
            df[feat["name"]] = pd.Categorical(df[feat["name"]].astype("string"), categories=feat["categories"])
    matrix, _ = to_matrix(df, manifest)
    return pd.DataFrame(matrix, columns=[f["name"] for f in manifest["features"]]), y


def run_data_parallel_trial(client: Client, data: PersistedSplits, spec: dict[str, Any]) -> dict[str, Any]:
    """Train one configuration across all workers; same result shape as trial_engine.run_trial."""
    started = time.perf_counter()
    params = dict(spec["params"])
    max_bin = int(params.get("max_bin", 256))
    device = spec.get("device", "auto")
    params.update({"tree_method": "hist", "max_bin": max_bin, "verbosity": 0, "device": "cpu" if device == "auto" else device})
    # Bounded: a slice that can no longer be computed fails the trial (TimeoutError is transient).
    distributed.wait(data.futures, timeout=float(spec.get("collective_timeout_s", COLLECTIVE_TIMEOUT_S)))
    X, y = data.parts["train"]
    Xv, yv = data.parts["valid"]
    kw = {"max_bin": max_bin, "feature_types": data.feature_types, "enable_categorical": True}
    dtrain = xgb.dask.DaskQuantileDMatrix(client, X, y, **kw)
    dvalid = xgb.dask.DaskQuantileDMatrix(client, Xv, yv, ref=dtrain, **kw)
    built = time.perf_counter()
    out = xgb.dask.train(
        client, params, dtrain,
        num_boost_round=int(spec.get("num_boost_round", 500)),
        evals=[(dvalid, "valid")],
        early_stopping_rounds=int(spec.get("early_stopping_rounds", 30)),
        verbose_eval=False,
        coll_cfg=xgb.collective.Config(timeout=int(spec.get("collective_timeout_s", COLLECTIVE_TIMEOUT_S))),
    )
    trained = time.perf_counter()
    booster: xgb.Booster = out["booster"]
    history = next(iter(out["history"]["valid"].values()))
    best = booster[: booster.best_iteration + 1]
    return {
        "value": float(booster.best_score),
        "best_iteration": int(booster.best_iteration),
        "rounds": len(history),
        "model_ubj": bytes(best.save_raw(raw_format="ubj")),
        "device": params["device"],
        "placement": "data",
        "setup_seconds": round(built - started, 4),
        "train_seconds": round(trained - built, 4),
        "seconds": round(time.perf_counter() - started, 4),
    }
