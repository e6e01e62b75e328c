"""One switch picks the Dask cluster: a scheduler address, or a LocalCluster sized to this machine."""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

import dask
from distributed import Client, LocalCluster

from tasks.errors import TuneflowError
from tasks.trial_engine import gpu_count


def local_worker_count(parallelism: int, device: str) -> int:
    """One single-threaded worker per concurrent trial, at most one per core (or per GPU)."""
    if device in ("cuda", "auto") and gpu_count() > 0:
        return max(1, min(parallelism, gpu_count()))
    return max(1, min(parallelism, os.cpu_count() or 1))


@contextlib.contextmanager
def dask_client(address: str | None, parallelism: int, device: str = "auto") -> Iterator[Client]:
    """Connect to `address`, or start a process-based LocalCluster (LocalCUDACluster with GPUs)."""
    if address:
        try:
            client = Client(address, timeout="20s", set_as_default=True)
        except OSError as exc:
            raise TuneflowError(f"Cannot reach the Dask scheduler at {address}: {exc}.", "check --dask-address (tcp://HOST:8786) and that the scheduler runs.") from exc
        with client:
            yield client
        return
    n = local_worker_count(parallelism, device)
    # A worker death fails its task at once (KilledWorker) instead of a silent re-run elsewhere,
    # so the Prefect retry that follows is counted on the trial ("attempt") and traceable.
    dask.config.set({"distributed.scheduler.allowed-failures": 0})
    cluster = None
    if device in ("cuda", "auto") and gpu_count() > 0:
        with contextlib.suppress(ImportError):
            from dask_cuda import LocalCUDACluster

            cluster = LocalCUDACluster(n_workers=n, threads_per_worker=1, dashboard_address=":0")
    if cluster is None:
        cores = os.cpu_count() or 1
        cluster = LocalCluster(
            n_workers=n,
            threads_per_worker=max(1, cores // n),
            processes=True,
            dashboard_address=":0",
            memory_limit=None,
        )
    with cluster, Client(cluster, set_as_default=True) as client:
        yield client
