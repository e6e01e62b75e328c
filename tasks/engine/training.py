"""What both placements share: device resolution, the XGBoost parameters of a request and the
result built from a trained booster. A placement only decides where the data lives and which
`train` runs (xgboost.train on one worker, xgboost.dask.train over all of them).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import time
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


def init_booster(request: TrialRequest) -> xgb.Booster | None:
    """The booster to continue from, if the request continues one."""
    return xgb.Booster(model_file=bytearray(request.init_model)) if request.init_model else None


def train_kwargs(request: TrialRequest, evals: list[tuple[Any, str]]) -> dict[str, Any]:
    """`train` keyword arguments common to xgboost.train and xgboost.dask.train."""
    return {
        "num_boost_round": int(request.num_boost_round),
        "evals": evals,
        "early_stopping_rounds": request.early_stopping_rounds,
        "verbose_eval": False,
        "xgb_model": init_booster(request),
    }


def booster_result(
    booster: xgb.Booster,
    evals_result: dict[str, Any],
    *,
    device: str,
    placement: str,
    started: float,
    built: float,
    trained: float,
    **timings: Any,
) -> TrialResult:
    """The trial's result: best score (early stopping) or last, the model cut at its best round."""
    history = tuple(float(v) for v in next(iter(evals_result["valid"].values())))
    try:
        best_iteration, value = int(booster.best_iteration), float(booster.best_score)
        model = booster[: best_iteration + 1]
    except AttributeError:  # no early stopping: the model as trained
        best_iteration, value, model = booster.num_boosted_rounds() - 1, history[-1], booster
    return TrialResult(
        value=value,
        best_iteration=best_iteration,
        rounds=len(history),
        model_ubj=bytes(model.save_raw(raw_format="ubj")),
        device=device,
        placement=placement,
        history=history,
        setup_seconds=round(built - started, 4),
        train_seconds=round(trained - built, 4),
        seconds=round(time.perf_counter() - started, 4),
        pid=os.getpid(),
        **timings,
    )


def noop_result(request: TrialRequest, started: float) -> TrialResult:
    """A trial that trains nothing (orchestration benchmarks): the requested value, an empty model."""
    return TrialResult(
        value=float(request.noop_value or 0.0), best_iteration=0, rounds=0, model_ubj=b"", device="none",
        placement=request.placement.value, noop=True, seconds=round(time.perf_counter() - started, 6), pid=os.getpid(),
    )
