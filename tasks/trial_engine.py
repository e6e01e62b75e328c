"""Runs XGBoost trials on Dask workers against data kept resident in the worker process.

Imports no Prefect, Optuna, Great Expectations or MLflow: this module is all a worker needs
(and all the GPU check carries). Trial-parallel placement: each worker loads the shards once,
builds one QuantileDMatrix per `max_bin` (on its GPU when the device is CUDA) and runs trial
after trial against it.
"""

from __future__ import annotations

import functools
import io
import os
import shutil
import subprocess
import threading
import time
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb

from tasks.storage import filesystem, join

_LOCK = threading.Lock()
_CACHE: dict[str, "ResidentData"] = {}  # one dataset at a time, keyed by fingerprint + device


def load_split(manifest: dict[str, Any], split: str, storage_options: dict[str, Any]) -> tuple[pd.DataFrame, np.ndarray]:
    """Read one split's shards into (features, label)."""
    frames = []
    for part in manifest["splits"][split]["files"]:
        fs, path = filesystem(join(manifest["uri"], part["path"]), storage_options)
        with fs.open(path, "rb") as f:
            frames.append(pd.read_parquet(io.BytesIO(f.read())))
    df = pd.concat(frames, ignore_index=True)
    y = df.pop("__label__").to_numpy()
    for feat in manifest["features"]:  # pyarrow keeps categories per file: pin the manifest's
        if feat["kind"] == "categorical":
            df[feat["name"]] = pd.Categorical(df[feat["name"]].astype("string"), categories=feat["categories"])
    return df, y


def to_matrix(df: pd.DataFrame, manifest: dict[str, Any]) -> tuple[np.ndarray, list[str]]:
    """float32 matrix with categorical codes (NaN when missing) and XGBoost feature types."""
    cols, types = [], []
    for feat in manifest["features"]:
        col = df[feat["name"]]
        if feat["kind"] == "categorical":
            codes = col.cat.codes.to_numpy().astype(np.float32)
            codes[codes < 0] = np.nan
            cols.append(codes)
            types.append("c")
        else:
            cols.append(col.to_numpy(dtype=np.float32, na_value=np.nan))
            types.append("q")
    return np.column_stack(cols) if cols else np.empty((len(df), 0), np.float32), types


@functools.cache
def gpu_count() -> int:
    """GPUs this process can see (0 without nvidia-smi or a CUDA-enabled XGBoost)."""
    if not xgb.build_info().get("USE_CUDA") or shutil.which("nvidia-smi") is None:
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    n = sum(1 for line in out.splitlines() if line.startswith("GPU "))
    return min(n, len(visible.split(","))) if visible else n


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' where this worker has a GPU, else 'cpu'."""
    if device == "auto":
        return "cuda" if gpu_count() > 0 else "cpu"
    return device


class ResidentData:
    """One dataset held by a worker: host arrays, plus a QuantileDMatrix pair per max_bin."""

    def __init__(self, manifest: dict[str, Any], storage_options: dict[str, Any], device: str) -> None:
        started = time.perf_counter()
        self.device = device
        X, y = load_split(manifest, "train", storage_options)
        Xv, yv = load_split(manifest, "valid", storage_options)
        self.train, self.types = to_matrix(X, manifest)
        self.valid, _ = to_matrix(Xv, manifest)
        self.y, self.yv = y, yv
        self.names = [f["name"] for f in manifest["features"]]
        if device.startswith("cuda"):
            import cupy  # only on GPU workers

            self.train, self.valid = cupy.asarray(self.train), cupy.asarray(self.valid)
            self.y, self.yv = cupy.asarray(y), cupy.asarray(yv)
        self.matrices: dict[int, tuple[xgb.QuantileDMatrix, xgb.QuantileDMatrix]] = {}
        self.load_seconds = time.perf_counter() - started

    def matrices_for(self, max_bin: int) -> tuple[xgb.QuantileDMatrix, xgb.QuantileDMatrix, bool]:
        """(train, valid, cache_hit) for this max_bin, building them on first use."""
        if max_bin in self.matrices:
            return *self.matrices[max_bin], True
        kw = {"feature_names": self.names, "feature_types": self.types, "enable_categorical": True}
        dtrain = xgb.QuantileDMatrix(self.train, label=self.y, max_bin=max_bin, **kw)
        dvalid = xgb.QuantileDMatrix(self.valid, label=self.yv, ref=dtrain, max_bin=max_bin, **kw)
        self.matrices[max_bin] = (dtrain, dvalid)
        return dtrain, dvalid, False


def resident_data(manifest: dict[str, Any], storage_options: dict[str, Any], device: str) -> tuple[ResidentData, bool]:
    """This worker's copy of the dataset, loaded on first use; evicts any other dataset."""
    key = f"{manifest['fingerprint']}:{device}"
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key], True
        release_data()
        _CACHE[key] = ResidentData(manifest, storage_options, device)
        return _CACHE[key], False


def release_data() -> int:
    """Drop every resident dataset (frees GPU memory too); returns how many were dropped."""
    n = len(_CACHE)
    _CACHE.clear()
    import gc

    gc.collect()
    return n


def run_trial(spec: dict[str, Any]) -> dict[str, Any]:
    """Train one configuration with early stopping on the valid split; return score and model.

    spec: manifest, storage_options, params (XGBoost, max_bin included), num_boost_round,
    early_stopping_rounds, device, nthread; `noop: true` skips training (overhead benchmark).
    """
    started = time.perf_counter()
    if spec.get("noop"):
        return {"value": float(spec.get("noop_value", 0.0)), "noop": True, "model_ubj": b"", "seconds": time.perf_counter() - started}
    device = resolve_device(spec.get("device", "auto"))
    data, data_hit = resident_data(spec["manifest"], spec.get("storage_options", {}), device)
    params = dict(spec["params"])
    max_bin = int(params.get("max_bin", 256))
    dtrain, dvalid, matrix_hit = data.matrices_for(max_bin)
    params.update({"tree_method": "hist", "device": device, "max_bin": max_bin, "verbosity": 0})
    params["nthread"] = int(spec.get("nthread") or _cores_per_worker_thread())
    built = time.perf_counter()
    evals_result: dict[str, Any] = {}
    booster = xgb.train(
        params,
        dtrain,
        num_boost_round=int(spec.get("num_boost_round", 500)),
        evals=[(dvalid, "valid")],
        early_stopping_rounds=int(spec.get("early_stopping_rounds", 30)),
        evals_result=evals_result,
        verbose_eval=False,
    )
    trained = time.perf_counter()
    best = booster[: booster.best_iteration + 1]
    return {
        "value": float(booster.best_score),
        "best_iteration": int(booster.best_iteration),
        "rounds": len(next(iter(evals_result["valid"].values()))),
        "model_ubj": bytes(best.save_raw(raw_format="ubj")),
        "device": device,
        "data_cache_hit": data_hit,
        "matrix_cache_hit": matrix_hit,
        "load_seconds": 0.0 if data_hit else round(data.load_seconds, 4),
        "setup_seconds": round(built - started, 4),
        "train_seconds": round(trained - built, 4),
        "seconds": round(time.perf_counter() - started, 4),
        "pid": os.getpid(),
    }


def _cores_per_worker_thread() -> int:
    """Cores per concurrent trial on this worker, so full workers do not oversubscribe the host."""
    cores = os.cpu_count() or 1
    try:
        from distributed import get_worker

        return max(1, cores // get_worker().state.nthreads)
    except (ImportError, ValueError):  # not running inside a Dask worker
        return cores


def evaluate_model(model_ubj: bytes, manifest: dict[str, Any], metric: str, storage_options: dict[str, Any], split: str = "test") -> float:
    """Score a saved model on a split with XGBoost's own implementation of `metric`."""
    X, y = load_split(manifest, split, storage_options)
    matrix, types = to_matrix(X, manifest)
    booster = xgb.Booster(model_file=bytearray(model_ubj))
    booster.set_param({"eval_metric": metric})
    dm = xgb.DMatrix(matrix, label=y, feature_names=[f["name"] for f in manifest["features"]], feature_types=types, enable_categorical=True)
    text = booster.eval(dm, name=split)  # "[0]\ttest-auc:0.91"
    return float(text.rsplit(":", 1)[1])
