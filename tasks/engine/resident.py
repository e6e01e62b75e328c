"""Trial-parallel placement: each worker loads a dataset version once and runs trial after trial
against it. One QuantileDMatrix pair per `max_bin` stays resident (on the worker's GPU when the
device is CUDA), plus one train matrix per data fraction, cut with the full matrix's bins. A
unit that asks for `live_key` leaves its booster live on the worker, so the trial's next unit
(a rung, a PBT segment) continues it without reloading or re-predicting its trees.
"""

from __future__ import annotations

import dataclasses
import gc
import threading
import time
from typing import Any

import numpy as np
import xgboost as xgb

from tasks.contracts import DatasetManifest, TrialRequest, TrialResult
from tasks.engine.encoding import feature_names, feature_types
from tasks.engine.fractions import subset_rows
from tasks.engine.live import LiveBoosters
from tasks.engine.resources import ResourceMeter
from tasks.engine.shards import load_split
from tasks.engine.training import boost_unit, new_booster, noop_result, resolve_device, saved_booster, unit_result, xgb_params

_LOCK = threading.Lock()
_CACHE: dict[str, ResidentData] = {}  # one dataset at a time, keyed by fingerprint + device
_LIVE = LiveBoosters()


class ResidentData:
    """One dataset held by a worker: host (or device) arrays, plus QuantileDMatrix objects per
    (max_bin, fraction)."""

    def __init__(self, manifest: DatasetManifest, storage_options: dict[str, Any], device: str) -> None:
        started = time.perf_counter()
        self.device, self.fingerprint = device, manifest["fingerprint"]
        self.train, self.y = load_split(manifest, "train", storage_options)
        self.valid, self.yv = load_split(manifest, "valid", storage_options)
        self.names, self.types = feature_names(manifest["features"]), feature_types(manifest["features"])
        if device.startswith("cuda"):
            import cupy  # only on GPU workers

            self.train, self.valid = cupy.asarray(self.train), cupy.asarray(self.valid)
            self.y, self.yv = cupy.asarray(self.y), cupy.asarray(self.yv)
        self.matrices: dict[tuple[int, float], tuple[xgb.QuantileDMatrix, xgb.QuantileDMatrix]] = {}
        self.build_lock = threading.Lock()
        self.load_seconds = time.perf_counter() - started

    def matrices_for(self, max_bin: int, fraction: float = 1.0) -> tuple[xgb.QuantileDMatrix, xgb.QuantileDMatrix, bool]:
        """(train, valid, cache_hit) for this max_bin and fraction of the train rows, built on first use."""
        with self.build_lock:  # two trials asking for a new max_bin at once build it once
            if (max_bin, fraction) in self.matrices:
                return *self.matrices[(max_bin, fraction)], True
            kw = {"feature_names": self.names, "feature_types": self.types, "enable_categorical": True}
            if (max_bin, 1.0) not in self.matrices:
                dtrain = xgb.QuantileDMatrix(self.train, label=self.y, max_bin=max_bin, **kw)
                self.matrices[(max_bin, 1.0)] = (dtrain, xgb.QuantileDMatrix(self.valid, label=self.yv, ref=dtrain, max_bin=max_bin, **kw))
            full, dvalid = self.matrices[(max_bin, 1.0)]
            if fraction < 1.0:
                rows = subset_rows(len(self.y), fraction, self.fingerprint)
                sub = xgb.QuantileDMatrix(self.train[rows], label=self.y[rows], ref=full, max_bin=max_bin, **kw)  # the full matrix's bins
                self.matrices[(max_bin, fraction)] = (sub, dvalid)
            return *self.matrices[(max_bin, fraction)], False


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
    """Drop every resident dataset and live booster (frees GPU memory too); returns how many datasets were dropped."""
    n = len(_CACHE)
    _CACHE.clear()
    _LIVE.drop()
    gc.collect()
    return n


def live_keys() -> list[str]:
    """Keys of the boosters this worker keeps live (tests, diagnostics)."""
    return _LIVE.keys()


def run_trial(request: TrialRequest) -> TrialResult:
    """Train one unit of a configuration on this worker's resident data, early stopping on the valid split."""
    started = time.perf_counter()
    if request.noop_value is not None:
        return noop_result(request, started)
    device = resolve_device(request.device)
    meter = ResourceMeter(device).start()
    data, data_hit = resident_data(request.manifest, request.storage_options, device)
    matrix = (request.max_bin, request.fraction)
    dtrain, dvalid, matrix_hit = data.matrices_for(*matrix)
    params = xgb_params(request, device)
    booster, resumed = _LIVE.take(request, matrix), "live"
    if booster is not None:
        booster.set_param(params)  # PBT may have changed learning rate, subsampling, regularisation
    else:
        saved = saved_booster(request)
        booster, resumed = new_booster(params, [dtrain, dvalid], saved), "checkpoint" if saved else "scratch"
    built = time.perf_counter()
    log = boost_unit(booster, dtrain, dvalid, request, params)
    trained = time.perf_counter()
    _LIVE.keep(request, booster, matrix)
    result = unit_result(
        booster, log, request, device=device, started=started, built=built, trained=trained, resumed=resumed,
        dvalid=dvalid, cores=int(params.get("nthread") or 1), data_cache_hit=data_hit, matrix_cache_hit=matrix_hit, load_seconds=0.0 if data_hit else round(data.load_seconds, 4),
    )
    return dataclasses.replace(result, **meter.stop())



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
