"""Data-parallel placement: one trial at a time over all workers with xgboost.dask, for data
larger than one worker. train/valid are read and persisted once per study (a slice on every
worker), not per trial; a collective timeout makes a lost worker fail the trial fast instead of
hanging it, and the next trial spreads the splits again over the workers there are then.
"""

from __future__ import annotations

import operator
import time
from typing import Any

import dask.dataframe as dd
import distributed
import pandas as pd
import xgboost as xgb
import xgboost.dask  # noqa: F401  (registers xgb.dask)
from distributed import Client

from tasks.contracts import LABEL_COLUMN, DatasetManifest, Placement, TrialRequest, TrialResult
from tasks.engine.encoding import feature_names, feature_types
from tasks.engine.shards import read_frames, split_arrays, split_uris
from tasks.engine.training import BoostLog, maximizes, noop_result, resolve_device, saved_booster, unit_result, xgb_params


class PersistedSplits:
    """train/valid held in the cluster's memory, a slice on every worker.

    Every worker must hold some rows of each split: xgboost.dask computes wrong distributed
    metrics (AUC) or refuses categorical input when a worker's part is empty.
    """

    def __init__(self, client: Client, manifest: DatasetManifest, storage_options: dict[str, Any]) -> None:
        started = time.perf_counter()
        workers = sorted(client.scheduler_info()["workers"])
        self.workers = frozenset(workers)  # each slice is pinned to one of these addresses
        names = feature_names(manifest["features"])
        meta_x = pd.DataFrame({n: pd.Series(dtype="float32") for n in names})
        meta_y = pd.Series(dtype="float32", name=LABEL_COLUMN)
        self.parts: dict[str, tuple[dd.DataFrame, dd.Series]] = {}
        self.futures: list[Any] = []
        for split in ("train", "valid"):
            uris = split_uris(manifest, split)
            xs, ys = [], []
            for i, worker in enumerate(workers):
                part = client.submit(_load_slice, uris, i, len(workers), manifest, storage_options, workers=[worker], pure=False)
                xs.append(client.submit(operator.getitem, part, 0, workers=[worker]))
                ys.append(client.submit(operator.getitem, part, 1, workers=[worker]))
            self.parts[split] = (dd.from_delayed(xs, meta=meta_x), dd.from_delayed(ys, meta=meta_y))
            self.futures += xs + ys
        # 'auto' is resolved on a worker, where the GPUs are (the flow's machine may have none)
        self.auto_device: str = client.submit(resolve_device, "auto", workers=[workers[0]], pure=False).result()
        self.load_seconds = time.perf_counter() - started


def _load_slice(uris: list[str], i: int, n: int, manifest: DatasetManifest, storage_options: dict[str, Any]) -> tuple[pd.DataFrame, pd.Series]:
    """Worker i of n: its share of the files (round-robin), or of the rows when files are fewer."""
    df = read_frames(uris[i::n] if len(uris) >= n else uris, storage_options)
    if len(uris) < n:
        df = df.iloc[i::n].reset_index(drop=True)
    matrix, y = split_arrays(df, manifest)
    return pd.DataFrame(matrix, columns=feature_names(manifest["features"])), pd.Series(y, name=LABEL_COLUMN).astype("float32")


class DataParallelTrainer:
    """The data-parallel state of one flow run: persisted splits, re-spread when workers change.

    A context manager: leaving it releases the persisted slices.
    """

    def __init__(self, client: Client, manifest: DatasetManifest, storage_options: dict[str, Any]) -> None:
        self.client, self.manifest, self.storage_options = client, manifest, storage_options
        self.splits: PersistedSplits | None = None

    def __enter__(self) -> DataParallelTrainer:
        self.splits = PersistedSplits(self.client, self.manifest, self.storage_options)
        return self

    def __exit__(self, *exc: object) -> None:
        # Dropping the futures releases the slices (client.cancel trips an assertion in the
        # scheduler for futures that other keys were derived from).
        self.splits = None

    def current_splits(self) -> PersistedSplits:
        """The persisted splits, spread again if a worker left or was replaced (new address):
        the slices pinned to it can never be recomputed."""
        if self.splits is None or self.splits.workers != frozenset(self.client.scheduler_info()["workers"]):
            self.splits = PersistedSplits(self.client, self.manifest, self.storage_options)
        return self.splits

    def run(self, request: TrialRequest, timeout_s: float | None = None) -> TrialResult:
        """Train one configuration across all workers."""
        started = time.perf_counter()
        if request.noop_value is not None:
            return noop_result(request, started)
        data = self.current_splits()
        # Bounded: a slice that can no longer be computed fails the trial (TimeoutError is transient).
        distributed.wait(data.futures, timeout=float(request.collective_timeout_s))
        device = data.auto_device if request.device == "auto" else resolve_device(request.device)
        X, y = data.parts["train"]
        Xv, yv = data.parts["valid"]
        kw = {"max_bin": request.max_bin, "feature_types": feature_types(self.manifest["features"]), "enable_categorical": True}
        dtrain = xgb.dask.DaskQuantileDMatrix(self.client, X, y, **kw)
        dvalid = xgb.dask.DaskQuantileDMatrix(self.client, Xv, yv, ref=dtrain, **kw)
        built = time.perf_counter()
        params = xgb_params(request, device)
        saved = saved_booster(request)
        out = xgb.dask.train(
            self.client, params, dtrain, num_boost_round=int(request.num_boost_round), evals=[(dvalid, "valid")],
            early_stopping_rounds=request.early_stopping_rounds, verbose_eval=False,
            xgb_model=xgb.Booster(model_file=bytearray(saved)) if saved else None,
            coll_cfg=xgb.collective.Config(timeout=int(request.collective_timeout_s)),
        )
        booster = out["booster"]
        history = [float(v) for v in next(iter(out["history"]["valid"].values()))]
        log = _log_of(history, booster.num_boosted_rounds() - len(history), maximizes(str(params.get("eval_metric", ""))), request)
        return unit_result(booster, log, request, device=device, started=started, built=built, trained=time.perf_counter(), resumed="checkpoint" if saved else "scratch")


def _log_of(history: list[float], start: int, maximize: bool, request: TrialRequest) -> BoostLog:
    """The BoostLog of rounds xgboost.dask.train ran (its early stopping does not span units)."""
    best = request.best_so_far
    for i, value in enumerate(history, start):
        if best is None or (value > best[1] if maximize else value < best[1]):
            best = (i, value)
    return BoostLog(history, best, len(history) < int(request.num_boost_round))
