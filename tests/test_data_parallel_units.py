"""Data-parallel units on a real LocalCluster of 2 worker processes: resident matrices per worker,
units continuing the live booster (or the saved one), data fractions per worker, and a lost worker
failing a unit fast with a transient error."""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from distributed import Client, LocalCluster

from tasks.contracts import Placement, trial_request
from tasks.data.sample import DEVICES, PLANS, REGIONS
from tasks.engine import data_parallel
from tasks.engine.data_parallel import DataParallelTrainer
from tasks.errors import is_transient
from tasks.problem import objective_params
from tests.conftest import make_csv, shard_csv

PROFILE = {"categories": {"region": list(REGIONS), "plan": list(PLANS), "device": list(DEVICES)}, "classes": {"0": 1, "1": 1}}


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> dict:
    work = tmp_path_factory.mktemp("dp-units")
    csv = make_csv(work / "churn.csv", 6000)
    return shard_csv(csv, "churned", "binary", PROFILE, str(work / "store"), name="churn", row_key="customer_id")


@pytest.fixture(scope="module")
def client():
    """Two single-thread worker processes, as the flow's LocalCluster on 2 cores."""
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, Client(cluster) as c:
        yield c


def base_request(manifest: dict, **options):
    params = {**objective_params("binary", 2, "logloss"), "seed": 0, "max_depth": 3, "learning_rate": 0.2, "max_bin": 64}
    defaults = dict(placement=Placement.DATA, device="cpu", nthread=1, early_stopping_rounds=None, collective_timeout_s=60)
    return trial_request(manifest, params, **{**defaults, **options})


def test_two_live_units_equal_one_and_a_lost_live_booster_resumes_from_the_checkpoint(client: Client, manifest: dict, tmp_path: Path) -> None:
    base = base_request(manifest)
    with DataParallelTrainer(client, manifest, {}) as trainer:
        whole = trainer.run(dataclasses.replace(base, num_boost_round=20))
        saved = tmp_path / "rung-0.ubj"
        first = trainer.run(dataclasses.replace(base, number=1, num_boost_round=10, live_key="t1", checkpoint_uri=str(saved)))
        saved.write_bytes(first.checkpoint_ubj)  # what the flow's trial task does with a unit's checkpoint
        assert first.resumed == "scratch" and first.placement == "data"
        assert first.cpu_seconds > 0 and first.peak_rss_mb > 50 and first.cores >= 2  # both workers' CPU, the larger peak
        assert all(keys == ["t1"] for keys in client.run(data_parallel.live_keys).values())  # every worker keeps its copy
        cont = dataclasses.replace(base, number=1, num_boost_round=10, live_key="t1", resume_from=str(saved), best_so_far=(first.best_iteration, first.value))
        live = trainer.run(cont)
        assert live.resumed == "live" and live.total_rounds == 20 and live.rounds == 10
        np.testing.assert_allclose(first.history + live.history, whole.history, rtol=1e-4)
        assert live.value == pytest.approx(whole.value, rel=1e-4)

        # the workers lost their live boosters (a restart): the unit reloads the saved one
        client.run(data_parallel.drop_live_boosters)
        from_store = trainer.run(cont)
        assert from_store.resumed == "checkpoint" and from_store.matrix_cache_hit
        np.testing.assert_allclose(from_store.history, live.history, rtol=1e-4)

        # only one worker lost it: every worker agrees to start from the saved copy
        again = trainer.run(dataclasses.replace(cont, checkpoint_uri=str(saved)))
        worker0, worker1 = trainer.splits.workers
        assert all(keys == ["t1"] for keys in client.run(data_parallel.live_keys).values())
        client.run(data_parallel.drop_live_boosters, workers=[worker1])
        saved.write_bytes(again.checkpoint_ubj)
        mixed = trainer.run(dataclasses.replace(cont, best_so_far=(again.best_iteration, again.value)))
        assert mixed.resumed == "checkpoint" and mixed.total_rounds == 30


def test_matrices_are_built_once_per_study(client: Client, manifest: dict) -> None:
    base = base_request(manifest, num_boost_round=5)
    with DataParallelTrainer(client, manifest, {}) as trainer:
        first = trainer.run(base)
        second = trainer.run(base.for_trial(1, {"max_depth": 5, "learning_rate": 0.1}))
        # one (train, valid) pair per worker after two trials: the second built nothing
        assert all(len(rows) == 1 for rows in client.run(data_parallel.matrix_rows).values())
        other_bins = trainer.run(base.for_trial(2, {"max_bin": 32}))
    assert not first.matrix_cache_hit and not first.data_cache_hit and first.load_seconds > 0
    assert second.matrix_cache_hit and second.data_cache_hit and second.load_seconds == 0.0
    assert not other_bins.matrix_cache_hit
    # leaving the trainer frees the workers' matrices
    assert all(rows == {} for rows in client.run(data_parallel.matrix_rows).values())


def test_a_fraction_trains_on_that_share_of_every_workers_slice(client: Client, manifest: dict) -> None:
    base = base_request(manifest, num_boost_round=5, fraction=1 / 3)
    with DataParallelTrainer(client, manifest, {}) as trainer:
        third = trainer.run(base)
        again = trainer.run(base.for_trial(1, {}))
        full = trainer.run(dataclasses.replace(base, number=2, fraction=1.0))
        slice_rows, workers = trainer.splits.rows["train"], trainer.splits.workers
        rows = client.run(data_parallel.matrix_rows)
    assert third.fraction == pytest.approx(1 / 3) and again.matrix_cache_hit and again.history == third.history
    assert full.matrix_cache_hit  # the full matrix was built first: the subset is cut with its bins
    assert sum(slice_rows) == manifest["splits"]["train"]["rows"] and min(slice_rows) > 0
    for rank, address in enumerate(workers):
        assert rows[address]["64:1"][0] == slice_rows[rank]
        assert rows[address][f"64:{1 / 3:.6g}"][0] == math.ceil(slice_rows[rank] / 3)


def test_a_worker_lost_during_a_unit_fails_it_fast_and_the_next_unit_runs(manifest: dict) -> None:
    """SIGKILL one of two workers mid-unit: the unit fails with a transient error well within the
    collective timeout (no hang), and the next unit runs on the splits spread again."""
    request = base_request(manifest, num_boost_round=100_000, collective_timeout_s=20)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, Client(cluster) as c:
        with DataParallelTrainer(c, manifest, {}) as trainer:
            trainer.run(dataclasses.replace(request, num_boost_round=2))  # matrices built, workers warm
            victim = trainer.splits.workers[1]
            pid = c.run(os.getpid, workers=[victim])[victim]
            threading.Timer(2.0, os.kill, (pid, signal.SIGKILL)).start()
            started = time.monotonic()
            with pytest.raises(Exception) as info:
                trainer.run(request)
            failed_after = time.monotonic() - started
            print(f"failed after {failed_after:.1f} s: {info.value!r}")
            assert is_transient(info.value), repr(info.value)
            assert failed_after < 2.0 + request.collective_timeout_s, failed_after
            deadline = time.monotonic() + 60
            while victim in c.scheduler_info()["workers"] or len(c.scheduler_info()["workers"]) < 2:
                assert time.monotonic() < deadline, "the nanny did not replace the worker"
                time.sleep(0.2)  # the nanny replaced it (new address)
            after = trainer.run(dataclasses.replace(request, number=1, num_boost_round=5))
            spread = trainer.splits.workers
            print(f"next unit: {after.seconds} s, setup {after.setup_seconds} s")
    assert after.rounds == 5 and not after.data_cache_hit and victim not in spread and len(spread) == 2
