"""Choosing and opening a placement: where a study's data lives and how its trials are sent."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any, Protocol

from distributed import Client

from tasks.contracts import DatasetManifest, Placement, TrialRequest, TrialResult
from tasks.engine.data_parallel import DataParallelTrainer
from tasks.engine.resident import run_trial

# Bytes held in worker memory per byte of compressed Parquet in the train+valid splits (float32
# arrays, the QuantileDMatrix and XGBoost's working set); measured ~3-4x on the sample data.
MEMORY_PER_PARQUET_BYTE = 6.0


class Trainer(Protocol):
    """Runs one trial request somewhere on the cluster and returns its result."""

    def run(self, request: TrialRequest, timeout_s: float | None = None) -> TrialResult: ...


class ResidentTrainer:
    """Trial-parallel: each unit runs whole on one worker, which keeps the data resident.

    A unit that continues a live booster is sent to the worker that holds it (where it can go
    elsewhere: a lost worker's booster is reloaded from its checkpoint there).
    """

    def __init__(self, client: Client) -> None:
        self.client = client
        self.holders: dict[str, str] = {}  # live_key -> worker address

    def run(self, request: TrialRequest, timeout_s: float | None = None) -> TrialResult:
        where = self.holders.pop(request.live_key, None) if request.live_key else None
        future = self.client.submit(
            run_trial, request, pure=False, key=f"trial-{request.number}-{os.urandom(4).hex()}",
            workers=[where] if where else None, allow_other_workers=bool(where),
        )
        result = future.result(timeout=timeout_s)
        if request.live_key and request.checkpoint_uri:
            holders = self.client.who_has(future).get(future.key) or ()
            if holders:
                self.holders[request.live_key] = holders[0]
        return result


def resident_bytes_estimate(manifest: DatasetManifest) -> int:
    """Worker memory one resident copy of train+valid is expected to take."""
    parquet = manifest["splits"]["train"]["bytes"] + manifest["splits"]["valid"]["bytes"]
    return int(parquet * MEMORY_PER_PARQUET_BYTE)


def worker_memory(client: Client) -> list[int]:
    """Each worker's memory limit (0 where none is set)."""
    return [int(w.get("memory_limit") or 0) for w in client.scheduler_info()["workers"].values()]


def choose_placement(manifest: DatasetManifest, worker_memory: list[int], forced: str = Placement.AUTO) -> Placement:
    """'trial' when a copy fits in half the smallest worker's memory, else 'data'."""
    if forced != Placement.AUTO:
        return Placement(forced)
    limits = [m for m in worker_memory if m]  # 0/None: no limit set on that worker
    if not limits:
        return Placement.TRIAL
    return Placement.TRIAL if resident_bytes_estimate(manifest) <= 0.5 * min(limits) else Placement.DATA


@contextlib.contextmanager
def open_trainer(client: Client, placement: Placement, manifest: DatasetManifest, storage_options: dict[str, Any]) -> Iterator[Trainer]:
    """The trainer for `placement`, holding whatever cluster state it needs until the block ends."""
    if placement == Placement.DATA:
        with DataParallelTrainer(client, manifest, storage_options) as trainer:
            yield trainer
    else:
        yield ResidentTrainer(client)
