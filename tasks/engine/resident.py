"""Trial-parallel placement: each worker loads a dataset version once and runs trial after trial
against it. One QuantileDMatrix pair per `max_bin` stays resident (on the worker's GPU when the
device is CUDA), so a trial pays for its boosting rounds only.
"""

from __future__ import annotations

import gc
import threading
import time
from typing import Any

import numpy as np
import xgboost as xgb

from tasks.contracts import DatasetManifest, TrialRequest, TrialResult
from tasks.engine.encoding import feature_names, feature_types
from tasks.engine.shards import load_split
from tasks.engine.training import booster_result, noop_result, resolve_device, train_kwargs, xgb_params

_LOCK = threading.Lock()
_CACHE: dict[str, ResidentData] = {}  # one dataset at a time, keyed by fingerprint + device


class ResidentData:
    """One dataset held by a worker: host (or device) arrays, plus a QuantileDMatrix pair per max_bin."""

    def __init__(self, manifest: DatasetManifest, storage_options: dict[str, Any], device: str) -> None:
        started = time.perf_counter()
        self.device = device
        self.train, self.y = load_split(manifest, "train", storage_options)
        self.valid, self.yv = load_split(manifest, "valid", storage_options)
        self.names, self.types = feature_names(manifest["features"]), feature_types(manifest["features"])
        if device.startswith("cuda"):
            import cupy  # only on GPU workers

            self.train, self.valid = cupy.asarray(self.train), cupy.asarray(self.valid)
            self.y, self.yv = cupy.asarray(self.y), cupy.asarray(self.yv)
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


def resident_data(manifest: DatasetManifest, storage_options: dict[str, Any], device: str) -> tuple[ResidentData, bool]:
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
    gc.collect()
    return n


def run_trial(request: TrialRequest) -> TrialResult:
    """Train one configuration on this worker's resident data, early stopping on the valid split."""
    started = time.perf_counter()
    if request.noop_value is not None:
        return noop_result(request, started)
    device = resolve_device(request.device)
    data, data_hit = resident_data(request.manifest, request.storage_options, device)
    dtrain, dvalid, matrix_hit = data.matrices_for(request.max_bin)
    built = time.perf_counter()
    evals_result: dict[str, Any] = {}
    booster = xgb.train(xgb_params(request, device), dtrain, evals_result=evals_result, **train_kwargs(request, [(dvalid, "valid")]))
    return booster_result(
        booster, evals_result, device=device, placement=request.placement.value, started=started, built=built,
        trained=time.perf_counter(), data_cache_hit=data_hit, matrix_cache_hit=matrix_hit,
        load_seconds=0.0 if data_hit else round(data.load_seconds, 4),
    )


def evaluate_model(model_ubj: bytes, manifest: DatasetManifest, metric: str, storage_options: dict[str, Any], split: str = "test") -> float:
    """Score a saved model on a split with XGBoost's own implementation of `metric`."""
    matrix, y = load_split(manifest, split, storage_options)
    booster = xgb.Booster(model_file=bytearray(model_ubj))
    booster.set_param({"eval_metric": metric})
    dm = xgb.DMatrix(matrix, label=y, feature_names=feature_names(manifest["features"]), feature_types=feature_types(manifest["features"]), enable_categorical=True)
    text = booster.eval(dm, name=split)  # "[0]\ttest-auc:0.91"
    return float(text.rsplit(":", 1)[1])


def predict_matrix(booster: xgb.Booster, matrix: np.ndarray, manifest: DatasetManifest) -> np.ndarray:
    """Predictions for an encoded feature matrix."""
    dm = xgb.DMatrix(matrix, feature_names=feature_names(manifest["features"]), feature_types=feature_types(manifest["features"]), enable_categorical=True)
    return booster.predict(dm)
