"""One switch picks the Dask cluster: a scheduler address, or a LocalCluster sized to this machine."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import dask
from distributed import Client, LocalCluster

from tasks.errors import TuneflowError
from tasks.engine.training import gpu_count


def local_worker_count(parallelism: int, device: str) -> int:
    """One worker process per concurrent trial, at most one per core (or per GPU).

    Each CPU worker gets `cores // workers` threads, and each trial on it `trial_threads`
    XGBoost threads: with one trial per worker the host is used fully and never oversubscribed.
    """
    if device in ("cuda", "auto") and gpu_count() > 0:
        return max(1, min(parallelism, gpu_count()))
    return max(1, min(parallelism, os.cpu_count() or 1))


def trial_threads(client: Client, dask_address: str | None) -> int | None:
    """XGBoost threads per trial: this machine's cores split over the LocalCluster's workers;
    None on an external cluster, where each worker splits its own host's cores over its threads."""
    if dask_address:
        return None
    return max(1, (os.cpu_count() or 1) // len(client.scheduler_info()["workers"]))


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
        cluster = LocalCluster(n_workers=n, threads_per_worker=max(1, (os.cpu_count() or 1) // n), processes=True, dashboard_address=":0", memory_limit=None)
    with cluster, Client(cluster, set_as_default=True) as client:
        yield client
