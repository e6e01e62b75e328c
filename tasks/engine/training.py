"""What both placements share: device resolution, the XGBoost parameters of a request and the
result built from a trained booster. A placement only decides where the data lives and where
`boost` runs (on one worker, or on every worker inside one collective).
"""

from __future__ import annotations

import functools
import math
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from typing import Any

import xgboost as xgb

from tasks.contracts import Device, Placement, TrialRequest, TrialResult


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
    """'auto' -> 'cuda' where this process has a GPU, else 'cpu'; run it where the training runs."""
    if device == Device.AUTO:
        return Device.CUDA.value if gpu_count() > 0 else Device.CPU.value
    return Device(device).value


def cores_per_trial() -> int:
    """Cores per concurrent trial on this worker, so full workers do not oversubscribe the host."""
    cores = os.cpu_count() or 1
    try:
        from distributed import get_worker

        return max(1, cores // get_worker().state.nthreads)
    except (ImportError, ValueError):  # not running inside a Dask worker
        return cores


def xgb_params(request: TrialRequest, device: str) -> dict[str, Any]:
    """The parameters `train` gets: the request's, with the engine's fixed choices on top."""
    params = dict(request.params)
    params.update({"tree_method": "hist", "device": device, "max_bin": request.max_bin, "verbosity": 0})
    if request.placement == Placement.TRIAL:
        params["nthread"] = int(request.nthread or cores_per_trial())
    return params


# XGBoost's own rule for which eval metrics improve upward (xgboost/callback.py, EarlyStopping).
_MAXIMIZE_PREFIXES = ("auc", "aucpr", "pre", "pre@", "map", "ndcg", "auc@", "aucpr@", "map@", "ndcg@")


def maximizes(metric: str) -> bool:
    """Whether a larger value of XGBoost eval metric `metric` is better."""
    return metric.startswith(_MAXIMIZE_PREFIXES)


def saved_booster(request: TrialRequest) -> bytes | None:
    """The `.ubj` bytes this request continues from (store URI first, then inline bytes)."""
    if request.resume_from:
        from tasks.objectstore import filesystem  # fsspec only

        fs, path = filesystem(request.resume_from, request.storage_options)
        return fs.cat_file(path)
    return request.init_model


def new_booster(params: dict[str, Any], cache: list[Any], model: bytes | None) -> xgb.Booster:
    """A booster over `cache` (train first): empty, or loaded from `.ubj` bytes, which makes
    XGBoost predict every saved tree once to fill its prediction cache."""
    booster = xgb.Booster(params, cache, model_file=bytearray(model) if model else None)
    booster.set_param(params)
    return booster


@dataclass
class BoostLog:
    """What a run of boosting rounds saw: the valid metric per round and the best round so far."""

    history: list[float]
    best: tuple[int, float] | None
    stopped_early: bool


def boost(
    booster: xgb.Booster,
    dtrain: Any,
    dvalid: Any,
    *,
    start: int,
    rounds: int,
    early_stopping_rounds: int | None,
    maximize: bool,
    best_so_far: tuple[int, float] | None = None,
) -> BoostLog:
    """Train `rounds` more rounds in place, scoring `dvalid` after each one.

    What xgboost.train does, without rebuilding the booster: `train(xgb_model=booster)` copies
    the model through its serialised form and so loses the prediction cache, and a continued
    unit would then pay for predicting every existing tree again. Early stopping counts from
    `best_so_far`, so it spans units; the rule is XGBoost's (stop `early_stopping_rounds`
    rounds after the last improvement). Works inside a collective (data-parallel) context too.
    """
    history: list[float] = []
    best = best_so_far
    for i in range(start, start + rounds):
        booster.update(dtrain, i)
        value = float(booster.eval_set([(dvalid, "valid")], i).rsplit(":", 1)[1])
        history.append(value)
        if not math.isnan(value) and (best is None or (value > best[1] if maximize else value < best[1])):
            best = (i, value)
        if early_stopping_rounds and best is not None and i - best[0] >= early_stopping_rounds:
            return BoostLog(history, best, True)
    return BoostLog(history, best, False)


def boost_unit(booster: xgb.Booster, dtrain: Any, dvalid: Any, request: TrialRequest, params: dict[str, Any]) -> BoostLog:
    """`boost` for one unit of `request`: its rounds, its early stopping, from the booster's last round."""
    return boost(
        booster, dtrain, dvalid, start=booster.num_boosted_rounds(), rounds=int(request.num_boost_round),
        early_stopping_rounds=request.early_stopping_rounds, maximize=maximizes(str(params.get("eval_metric", ""))),
        best_so_far=request.best_so_far,
    )


def unit_result(
    booster: xgb.Booster,
    log: BoostLog,
    request: TrialRequest,
    *,
    device: str,
    started: float,
    built: float,
    trained: float,
    dvalid: Any = None,
    cores: int = 1,
    **extra: Any,
) -> TrialResult:
    """The unit's result: the best round over the whole booster, the model cut there, and the
    whole booster when the request asked for a checkpoint."""
    total = booster.num_boosted_rounds()
    best_iteration, value = log.best if log.best is not None else (total - 1, log.history[-1] if log.history else math.nan)
    model = booster if best_iteration + 1 >= total else booster[: best_iteration + 1]
    model_ubj = bytes(model.save_raw(raw_format="ubj"))
    return TrialResult(
        value=float(value),
        best_iteration=int(best_iteration),
        rounds=len(log.history),
        model_ubj=model_ubj,
        model_bytes=len(model_ubj),
        # a sliced copy: `booster` itself would answer from its prediction cache of dvalid
        predict_ms_per_1k=predict_ms_per_1k(booster[: best_iteration + 1], dvalid) if request.measure_latency and dvalid is not None else None,
        cores=int(cores),
        gpus=int(cores > 0 and device == "cuda"),
        device=device,
        placement=request.placement.value,
        history=tuple(log.history),
        total_rounds=total,
        stopped_early=log.stopped_early,
        fraction=request.fraction,
        checkpoint_ubj=bytes(booster.save_raw(raw_format="ubj")) if request.checkpoint_uri else None,
        setup_seconds=round(built - started, 4),
        train_seconds=round(trained - built, 4),
        seconds=round(time.perf_counter() - started, 4),
        pid=os.getpid(),
        **extra,
    )


def predict_ms_per_1k(model: xgb.Booster, dvalid: Any) -> float:
    """Milliseconds the model takes to predict 1,000 rows of `dvalid` (a latency objective)."""
    started = time.perf_counter()
    model.predict(dvalid)
    return round((time.perf_counter() - started) * 1e6 / max(1, dvalid.num_row()), 4)


def noop_result(request: TrialRequest, started: float) -> TrialResult:
    """A trial that trains nothing (orchestration benchmarks): the requested value, an empty model."""
    return TrialResult(
        value=float(request.noop_value or 0.0), best_iteration=0, rounds=0, model_ubj=b"", device="none",
        placement=request.placement.value, noop=True, seconds=round(time.perf_counter() - started, 6), pid=os.getpid(),
    )
