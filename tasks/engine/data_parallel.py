"""Data-parallel placement: one unit of training at a time over all workers, for data larger than
one worker.

train/valid are read once per study into a slice on every worker (persisted Dask futures pinned
to it). Each worker keeps its local QuantileDMatrix pair resident across trials and units, per
(max_bin, fraction), built inside a collective so that the quantile sketch is all-reduced and
every worker bins with the same cuts (what xgboost.dask does inside every `train` call, and
pays for again in every call: 2.4 s of a 9.5 s trial on 2 CPU workers at 1M rows). A unit starts
a tracker on the scheduler, runs `training.boost` in one task per worker inside a communicator,
and continues the booster each worker kept live from the trial's previous unit, so a rung pays
neither a matrix build nor a model reload.

A collective timeout makes a lost worker fail the unit (a transient error) instead of hanging
it, and the next unit spreads the splits again over the workers there are then. Every worker
must hold some rows of each split: XGBoost computes wrong distributed metrics (AUC) when a
worker's part is empty, so an empty slice is refused before any training.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import threading
import time
import uuid
from typing import Any

import distributed
import numpy as np
import xgboost as xgb
from distributed import Client

from tasks.contracts import DatasetManifest, TrialRequest, TrialResult
from tasks.engine import collective
from tasks.engine.encoding import feature_names, feature_types
from tasks.engine.fractions import subset_rows
from tasks.engine import resources
from tasks.engine.live import LiveBoosters
from tasks.engine.resources import ResourceMeter
from tasks.engine.shards import read_frames, split_arrays, split_uris
from tasks.engine.training import boost_unit, new_booster, noop_result, resolve_device, saved_booster, unit_result, xgb_params
from tasks.errors import TransientError, TuneflowError

SPLITS = ("train", "valid")


# ------------------------------------------------------------------------------- flow side


class PersistedSplits:
    """train/valid held in the cluster's memory: slice i of each split pinned to the i-th worker
    (sorted addresses). `token` names this spread; the matrices workers build from it carry it."""

    def __init__(self, client: Client, manifest: DatasetManifest, storage_options: dict[str, Any]) -> None:
        self.started = time.perf_counter()
        self.workers: tuple[str, ...] = tuple(sorted(client.scheduler_info()["workers"]))
        self.token = uuid.uuid4().hex[:12]
        n = len(self.workers)
        self.slices: dict[str, list[Any]] = {}
        for split in SPLITS:
            uris = split_uris(manifest, split)
            self.slices[split] = [
                client.submit(_load_slice, uris, i, n, manifest, storage_options, workers=[w], pure=False, key=f"tuneflow-slice-{split}-{i}-{self.token}")
                for i, w in enumerate(self.workers)
            ]
        self.futures = [f for split in SPLITS for f in self.slices[split]]
        # 'auto' is resolved on a worker, where the GPUs are (the flow's machine may have none)
        self.auto_device: str = client.submit(resolve_device, "auto", workers=[self.workers[0]], pure=False).result()
        self.rows: dict[str, list[int]] | None = None  # rows of each slice, once they are loaded
        self.load_seconds = 0.0
        self.used = False  # a unit has run on this spread (the first one reports the load)

    def ready(self, client: Client, timeout_s: float) -> None:
        """Wait (bounded) until every slice is in memory; refuse a spread that leaves a worker empty.

        A slice that can no longer be computed (its worker left) fails here with a TimeoutError,
        which is transient: the retry spreads the splits over the workers there are then.
        """
        if self.rows is not None:
            return
        distributed.wait(self.futures, timeout=timeout_s)
        rows = client.gather([client.submit(_slice_rows, f, workers=[w], pure=False) for split in SPLITS for f, w in zip(self.slices[split], self.workers)])
        n = len(self.workers)
        per_split = {split: rows[k * n:(k + 1) * n] for k, split in enumerate(SPLITS)}
        for split, counts in per_split.items():
            if min(counts) == 0:
                raise TuneflowError(
                    f"The {split} split has {sum(counts)} rows: too few for {n} data-parallel workers (one would hold none).",
                    "use --placement trial, or fewer Dask workers.",
                )
        self.rows = per_split
        self.load_seconds = time.perf_counter() - self.started


class DataParallelTrainer:
    """The data-parallel state of one flow run: persisted splits, re-spread when workers change.

    A context manager: leaving it releases the persisted slices and the workers' matrices and
    live boosters.
    """

    def __init__(self, client: Client, manifest: DatasetManifest, storage_options: dict[str, Any]) -> None:
        self.client, self.manifest, self.storage_options = client, manifest, storage_options
        self.splits: PersistedSplits | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> DataParallelTrainer:
        self.splits = PersistedSplits(self.client, self.manifest, self.storage_options)
        return self

    def __exit__(self, *exc: object) -> None:
        # Dropping the futures releases the slices (client.cancel trips an assertion in the
        # scheduler for futures that other keys were derived from).
        self.splits = None
        try:
            self.client.run(release_data_parallel)
        except Exception:  # noqa: BLE001 (workers gone or the cluster closing: nothing left to free)
            pass

    def current_splits(self) -> PersistedSplits:
        """The persisted splits, spread again if a worker left or was replaced (new address):
        the slices pinned to it can never be recomputed."""
        with self._lock:
            if self.splits is None or self.splits.workers != tuple(sorted(self.client.scheduler_info()["workers"])):
                self.splits = PersistedSplits(self.client, self.manifest, self.storage_options)
            return self.splits

    def run(self, request: TrialRequest, timeout_s: float | None = None) -> TrialResult:
        """Train one unit of a configuration across all workers; the result is worker 0's."""
        started = time.perf_counter()
        if request.noop_value is not None:
            return noop_result(request, started)
        limit = float(request.collective_timeout_s)
        data = self.current_splits()
        data.ready(self.client, limit)
        fresh, data.used = not data.used, True
        device = data.auto_device if request.device == "auto" else resolve_device(request.device)
        # One unit at a time on these workers (xgboost.dask takes the same lock): two groups
        # interleaved on single-thread workers would each wait for the other's peers.
        lock = distributed.MultiLock(names=list(data.workers), client=self.client)
        if not lock.acquire(timeout=limit):
            raise TimeoutError(f"the data-parallel workers stayed busy with another unit for {limit:.0f} s")
        try:
            args = collective.start_tracker(self.client, len(data.workers), request.collective_timeout_s)
            tag = os.urandom(4).hex()
            futures = [
                self.client.submit(
                    _train_unit, request, args, rank, address, data.token, data.slices["train"][rank], data.slices["valid"][rank], device,
                    workers=[address], allow_other_workers=False, pure=False, key=f"tuneflow-dp-unit-{request.number}-{rank}-{tag}",
                )
                for rank, address in enumerate(data.workers)
            ]
            outs = _gather_unit(self.client, futures, data.workers, timeout_s)
        finally:
            lock.release()
        result: TrialResult = outs[0]
        if any(o["total_rounds"] != result.total_rounds for o in outs[1:]):
            raise RuntimeError(f"data-parallel workers disagree on the booster: {[result.total_rounds] + [o['total_rounds'] for o in outs[1:]]} rounds")
        seconds = time.perf_counter() - started
        return dataclasses.replace(
            result, seconds=round(seconds, 4), setup_seconds=round(seconds - result.train_seconds, 4),  # everything that is not boosting
            data_cache_hit=not fresh, load_seconds=round(data.load_seconds, 4) if fresh else 0.0,
            **resources.combine([_resources_of(result), *outs[1:]]),
        )


def _resources_of(result: TrialResult) -> dict[str, Any]:
    return {k: getattr(result, k) for k in ("cpu_seconds", "peak_rss_mb", "gpu_util_pct", "gpu_mem_peak_mb")}


def _gather_unit(client: Client, futures: list[Any], workers: tuple[str, ...], timeout_s: float | None) -> list[Any]:
    """The unit's results, failing fast: on the first worker's error, when one of the unit's
    workers leaves the cluster (its task would wait for it forever), or after `timeout_s`."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        failed = [f for f in futures if f.status == "error"]
        if failed:
            client.cancel([f for f in futures if f.status != "error"])
            failed[0].result()  # raises the worker's exception
        pending = [f for f in futures if not f.done()]
        if not pending:
            return client.gather(futures)
        try:
            distributed.wait(pending, timeout=1.0, return_when="FIRST_COMPLETED")
        except (TimeoutError, distributed.TimeoutError):
            gone = set(workers) - set(client.scheduler_info()["workers"])
            if gone:
                client.cancel(futures)
                raise TransientError(f"data-parallel worker(s) {sorted(gone)} left the cluster during the unit") from None
            if deadline is not None and time.monotonic() > deadline:
                client.cancel(futures)
                raise TimeoutError(f"the data-parallel unit ran past {timeout_s} s") from None


# ----------------------------------------------------------------------------- worker side

_LOCK = threading.Lock()
# (token, device, max_bin, fraction) -> (train, valid) matrices, for one spread at a time
_MATRICES: dict[tuple[str, str, int, float], tuple[xgb.QuantileDMatrix, xgb.QuantileDMatrix]] = {}
_LIVE = LiveBoosters()  # matrix key: (token, device, max_bin, fraction)


def _load_slice(uris: list[str], i: int, n: int, manifest: DatasetManifest, storage_options: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Worker i of n: its share of the files (round-robin), or of the rows when files are fewer,
    as (float32 feature matrix, float32 label)."""
    df = read_frames(uris[i::n] if len(uris) >= n else uris, storage_options)
    if len(uris) < n:
        df = df.iloc[i::n].reset_index(drop=True)
    matrix, y = split_arrays(df, manifest)
    return np.ascontiguousarray(matrix, dtype=np.float32), np.asarray(y, dtype=np.float32)


def _slice_rows(part: tuple[np.ndarray, np.ndarray]) -> int:
    return int(len(part[1]))


def _on_device(a: np.ndarray, device: str) -> Any:
    """The array where the training runs: host memory, or the worker's GPU (cupy)."""
    if device.startswith("cuda"):
        import cupy  # only on GPU workers

        return cupy.asarray(a)
    return a


def release_data_parallel() -> int:
    """Drop this worker's data-parallel matrices and live boosters; returns how many matrices were dropped."""
    with _LOCK:
        n = len(_MATRICES)
        _MATRICES.clear()
    _LIVE.drop()
    gc.collect()
    return n


def drop_live_boosters() -> int:
    """Forget this worker's live boosters (what a restart does to them); returns how many."""
    return _LIVE.drop()


def matrix_rows() -> dict[str, tuple[int, int]]:
    """Rows of each resident (train, valid) matrix on this worker by 'max_bin:fraction' (tests, diagnostics)."""
    with _LOCK:
        return {f"{k[2]}:{k[3]:.6g}": (int(m[0].num_row()), int(m[1].num_row())) for k, m in _MATRICES.items()}


def live_keys() -> list[str]:
    """Keys of the data-parallel boosters this worker keeps live (tests, diagnostics)."""
    return _LIVE.keys()


def _forget_other_spreads(token: str) -> None:
    """One spread at a time: a new token means the slices moved, so older matrices and the
    boosters trained on them (their prediction caches) are of no use any more."""
    for key in [k for k in _MATRICES if k[0] != token]:
        del _MATRICES[key]
    _LIVE.drop(lambda live: live.matrix[0] != token)


def _matrices(
    key: tuple[str, str, int, float], train: tuple[np.ndarray, np.ndarray], valid: tuple[np.ndarray, np.ndarray],
    manifest: DatasetManifest, rank: int, nthread: int,
) -> tuple[xgb.QuantileDMatrix, xgb.QuantileDMatrix, bool]:
    """(train, valid, cache_hit) for this unit, inside the communicator. Every worker takes the
    same branch (built when any worker lacks it), because building the full matrix all-reduces
    the quantile sketch across workers."""
    token, device, max_bin, fraction = key
    full_key = (token, device, max_bin, 1.0)
    with _LOCK:
        _forget_other_spreads(token)
        local = [full_key in _MATRICES, key in _MATRICES]
    have_full, have_this = collective.agree(local)
    if have_full and have_this:
        return *_MATRICES[key], True
    kw = {"feature_names": feature_names(manifest["features"]), "feature_types": feature_types(manifest["features"]), "enable_categorical": True, "max_bin": max_bin, "nthread": nthread}
    if not have_full:
        with _LOCK:  # the subsets were cut with the old matrix's bins
            for k in [k for k in _MATRICES if k[:3] == full_key[:3]]:
                del _MATRICES[k]
        dtrain = xgb.QuantileDMatrix(_on_device(train[0], device), label=_on_device(train[1], device), **kw)
        dvalid = xgb.QuantileDMatrix(_on_device(valid[0], device), label=_on_device(valid[1], device), ref=dtrain, **kw)
        with _LOCK:
            _MATRICES[full_key] = (dtrain, dvalid)
    full, dvalid = _MATRICES[full_key]
    if fraction < 1.0:
        # the nested subset of this worker's slice, binned with the full matrix's cuts
        rows = subset_rows(len(train[1]), fraction, f"{manifest['fingerprint']}:{rank}")
        sub = xgb.QuantileDMatrix(_on_device(train[0][rows], device), label=_on_device(train[1][rows], device), ref=full, **kw)
        with _LOCK:
            _MATRICES[key] = (sub, dvalid)
    return *_MATRICES[key], False


def _train_unit(
    request: TrialRequest, args: dict[str, Any], rank: int, address: str, token: str,
    train: tuple[np.ndarray, np.ndarray], valid: tuple[np.ndarray, np.ndarray], device: str,
) -> TrialResult | dict[str, Any]:
    """One worker's part of a unit: its slice's matrices, the booster (live, saved or new) and
    `boost` inside the communicator. Rank 0 returns the TrialResult; the others a summary."""
    started = time.perf_counter()
    meter = ResourceMeter(device).start()
    nthread = int(request.nthread or distributed.get_worker().state.nthreads)
    params = {**xgb_params(request, device), "nthread": nthread}
    matrix = (token, device, request.max_bin, float(request.fraction))
    live = _LIVE.take(request, matrix)
    # read before the communicator starts: a storage error then fails this worker at once
    saved = saved_booster(request) if live is None else None
    with collective.communicator(args, rank, address):
        dtrain, dvalid, matrix_hit = _matrices(matrix, train, valid, request.manifest, rank, nthread)
        (all_live,) = collective.agree([live is not None])
        if all_live:
            booster, resumed = live, "live"
            booster.set_param(params)  # PBT may have changed learning rate, subsampling, regularisation
        else:
            if live is not None:  # a peer lost its copy: everyone starts from the saved one, which this equals
                saved = bytes(live.save_raw(raw_format="ubj"))
            booster, resumed = new_booster(params, [dtrain, dvalid], saved), "checkpoint" if saved else "scratch"
        built = time.perf_counter()
        log = boost_unit(booster, dtrain, dvalid, request, params)
        trained = time.perf_counter()
        world = xgb.collective.get_world_size()
    _LIVE.keep(request, booster, matrix)
    if rank != 0:
        return {"rank": rank, "rows": int(dtrain.num_row()), "total_rounds": booster.num_boosted_rounds(), "resumed": resumed, "matrix_cache_hit": matrix_hit,
                **meter.stop()}
    return unit_result(
        booster, log, request, device=device, started=started, built=built, trained=trained, resumed=resumed,
        dvalid=dvalid, cores=nthread * world, matrix_cache_hit=matrix_hit, data_cache_hit=True, **meter.stop(),
    )
