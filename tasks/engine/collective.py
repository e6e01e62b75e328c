"""XGBoost's collective (the Rabit communicator) for data-parallel units on Dask workers.

What xgboost.dask does inside every `train` call, taken apart so that a unit of training can
reuse the matrices a worker already holds: a tracker on the scheduler (workers can reach it;
the flow's machine may not be reachable from them), one communicator per worker for the unit,
ranks fixed by the worker's slice index (so rank 0 is always slice 0), and a timeout on every
collective operation so that a lost peer fails the unit instead of hanging it.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
from xgboost import collective
from xgboost.tracker import RabitTracker


def _start_tracker(n_workers: int, hosts: list[str | None], port: int, timeout_s: int) -> dict[str, Any]:
    """On the scheduler: start a tracker for one unit, first host that binds; returns the worker args.

    `timeout_s` bounds the tracker's bootstrap and shutdown (every worker must connect within it);
    a daemon thread waits for the group to finish so the tracker lives exactly as long as the unit.
    """
    error: Exception | None = None
    for host in hosts:
        try:
            tracker = RabitTracker(n_workers=n_workers, host_ip=host, port=port, sortby="task", timeout=int(timeout_s))
            tracker.start()
        except Exception as exc:  # noqa: BLE001 (an address this host cannot bind: try the next)
            error = exc
            continue
        threading.Thread(target=_wait_quietly, args=(tracker,), daemon=True, name="tuneflow-rabit-tracker").start()
        return tracker.worker_args()
    raise error or RuntimeError("no tracker address to try")


def _wait_quietly(tracker: RabitTracker) -> None:
    for step in (tracker.wait_for, tracker.free):
        try:
            step()
        except Exception:  # noqa: BLE001 (a failed group is reported by the workers' own errors)
            pass


def start_tracker(client: Any, n_workers: int, timeout_s: int) -> dict[str, Any]:
    """Start a tracker for `n_workers` on the scheduler (as xgboost.dask does) and return the
    arguments every worker's communicator needs, with the per-operation timeout set.

    The tracker's address: the one in xgboost's `coll_cfg`-style Dask config
    (`xgboost.scheduler_address`) if set, else XGBoost's own guess of this host's address,
    else the scheduler's host (xgboost.dask's order).
    """
    import dask
    import distributed
    from xgboost.collective import Config
    from xgboost.dask.utils import get_address_from_user

    host, port = get_address_from_user(dask.config.get("xgboost", default=None), Config())
    try:
        scheduler_host: str | None = distributed.comm.get_address_host(client.scheduler.address).strip("/:")
    except Exception:  # noqa: BLE001 (an address form without a host: rely on the others)
        scheduler_host = None
    hosts = [host] if host else [None]
    if scheduler_host and scheduler_host not in hosts:
        hosts.append(scheduler_host)
    args = client.run_on_scheduler(_start_tracker, n_workers, hosts, int(port or 0), int(timeout_s))
    return Config(timeout=int(timeout_s)).get_comm_config(dict(args))


def communicator(args: dict[str, Any], rank: int, address: str) -> collective.CommunicatorContext:
    """The communicator of the worker holding slice `rank`: the tracker sorts workers by task id,
    so a zero-padded slice index makes the rank equal it in every unit."""
    return collective.CommunicatorContext(**{**args, "dmlc_task_id": f"{rank:06d}:{address}"})


def agree(flags: list[bool]) -> list[bool]:
    """Inside a communicator: each flag true only if it is true on every worker (all-reduce MIN),
    so that every worker takes the same branch (build a matrix, continue a live booster)."""
    if not collective.is_distributed():
        return list(flags)
    reduced = collective.allreduce(np.asarray([1 if f else 0 for f in flags], dtype=np.int32), collective.Op.MIN)
    return [bool(v) for v in reduced]
