"""Short runs of the benchmarks (tiny data, a few trials): each runs and writes well-formed JSON and
Markdown. Speed is not checked here; benchmarks/README.md holds the measured numbers.

The scripts run as a user runs them (`python benchmarks/<script>.py ...`, in a subprocess): the
tests import nothing from benchmarks/."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def bench(script: str, *args: str, timeout: float = 900) -> None:
    """`python benchmarks/<script> ARGS` from the repository root; fails with its output's end."""
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *args], capture_output=True, text=True, timeout=timeout, cwd=REPO)
    assert proc.returncode == 0, f"{script} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-4000:]}"


@pytest.fixture(scope="module")
def bench_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(work, out): one work folder per module, so the tiny CSV and its shards are made once."""
    return tmp_path_factory.mktemp("bench-work"), tmp_path_factory.mktemp("bench-out")


@pytest.fixture
def prefect_api(prefect_harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """The benchmarks' child processes use the session's test Prefect API instead of each
    starting a temporary server of their own."""
    from prefect.settings import PREFECT_API_URL

    monkeypatch.setenv("PREFECT_API_URL", PREFECT_API_URL.value())


def _number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _load(out: Path, name: str) -> dict:
    data = json.loads((out / f"{name}.json").read_text())
    md = (out / f"{name}.md").read_text()
    assert md.startswith("## ") and "| --- |" in md
    assert data["machine"]["cores"] >= 1 and data["command"].startswith("python benchmarks/")
    return data


PEERS_ARGS = ["--rows", "6000", "--trials", "3", "--max-rounds", "8", "--early-stopping-rounds", "3"]


def _check_peer_row(row: dict, trials: int) -> None:
    assert row["trials"] == trials, row
    assert 0.5 < row["best_value"] <= 1.0
    assert _number(row["tune_s"]) and row["tune_s"] > 0 and _number(row["total_s"])
    assert _number(row["trials_per_hour"]) and _number(row["boost_sum_s"])
    assert set(row["monitor"]) >= {"wall_s", "other_processes_cores", "peak_rss_mb"}


def test_peers_tuneflow_and_optuna(bench_dirs, prefect_api) -> None:
    work, out = bench_dirs
    bench("peers.py", *PEERS_ARGS, "--tools", "tuneflow,optuna", "--work", str(work / "peers"), "--out-dir", str(out), "--name", "peers")
    data = _load(out, "peers")
    assert [r["tool"] for r in data["tools"]] == ["tuneflow", "optuna"]
    for row in data["tools"]:
        _check_peer_row(row, 3)
    assert len(data["params"]["configs"]) == 3 and data["dataset"]["train_rows"] > 0
    s = data["summary"]
    assert _number(s["limit_s"]) and _number(s["tuneflow_over_limit"]) and set(s["ratios"]) == {"optuna"}
    assert isinstance(s["within_15pct_of_limit"], bool) and isinstance(s["faster_than_every_peer"], bool)
    assert s["tuneflow_breakdown"]["tune_wall_s"] == data["tools"][0]["tune_s"]
    assert _number(s["orchestrator"]["flow_process_cpu_s_per_trial"]) and s["orchestrator"]["cpu_s"]["this process"] > 0
    # the same configurations give the same best model (same data, same XGBoost parameters)
    assert data["tools"][0]["best_value"] == pytest.approx(data["tools"][1]["best_value"], abs=2e-3)


def test_peers_small_trials_against_the_pool(bench_dirs, prefect_api) -> None:
    """The small-trial regime (issue 7 item 5): tuneflow vs a pool of 2 processes on a resident
    QuantileDMatrix (the limit) vs Optuna; same configurations, same models."""
    work, out = bench_dirs
    bench("peers.py", "--regime", "small", *PEERS_ARGS, "--work", str(work / "peers"), "--out-dir", str(out))
    data = _load(out, "peers-small")
    assert data["params"]["regime"] == "small" and [r["tool"] for r in data["tools"]] == ["pool", "tuneflow", "optuna"]
    for row in data["tools"]:
        _check_peer_row(row, 3)
    pool, tf, optuna = data["tools"]
    # the pool trains exactly what tuneflow trains: same rounds per configuration, same best value
    assert sorted(t["rounds"] for t in pool["per_trial"]) == sorted(t["rounds"] for t in tf["per_trial"])
    assert pool["best_value"] == pytest.approx(tf["best_value"], abs=1e-6) == pytest.approx(optuna["best_value"], abs=2e-3)
    assert sum(t["setup_s"] > 0 for t in pool["per_trial"]) <= data["params"]["parallelism"]  # resident: built once per process
    s = data["summary"]
    assert set(s["ratios"]) == {"optuna"} and isinstance(s["ahead_of_optuna"], bool)
    q = s["pool"]
    assert _number(q["train_sum_ratio"]) and _number(q["tune_ratio"]) and q["pool_tune_s"] == pool["tune_s"]
    assert isinstance(q["train_sum_within_1pct"], bool) and isinstance(q["tune_within_2pct"], bool)
    assert _number(s["orchestrator"]["flow_process_cpu_s_per_trial"]) and s["orchestrator"]["tune_phase_wall_s"] > 0


def test_overhead(bench_dirs, prefect_api) -> None:
    work, out = bench_dirs
    tools = ["tuneflow", "optuna-journal"]
    bench("overhead.py", "--trials", "4", "--breakdown-n", "2", "--tools", ",".join(tools), "--work", str(work / "overhead"), "--out-dir", str(out))
    data = _load(out, "overhead")
    assert [r["tool"] for r in data["tools"]] == tools
    for row in data["tools"]:
        assert row["trials"] == 4 and all(_number(row["latency"][k]) for k in ("median_ms", "mean_ms", "p90_ms"))
        w = row["storage_writes"]  # the same journal storage: its appends counted per trial
        assert w["appends_per_trial"] >= 1 and w["ops_by_kind_per_trial"]["CREATE_TRIAL"] == 1 and w["ops_by_kind_per_trial"]["SET_TRIAL_STATE_VALUES"] >= 1
    tf = data["tools"][0]
    assert tf["failed"] == 0 and tf["noop_results"] == 4 and len(tf["breakdown"]) == 7 and all(_number(v["median_ms"]) for v in tf["breakdown"].values())
    assert tf["timeline"]["trials"] == 4 and _number(tf["timeline"]["per_trial_steps"]["latency ask -> tell done"]["median_ms"])
    assert _number(tf["timeline"]["main_loop_ms_per_trial"]["main loop total, excluding waiting"])
    s = data["summary"]
    assert isinstance(s["target_met"], bool) and s["target_ms"] == 30
    assert s["tuneflow_median_ms"] == tf["latency"]["median_ms"] and s["optuna_journal_median_ms"] == data["tools"][1]["latency"]["median_ms"]
    assert s["tuneflow_over_optuna_journal_median"] == pytest.approx(s["tuneflow_median_ms"] / s["optuna_journal_median_ms"], abs=0.01)
    md = (out / "overhead.md").read_text()
    assert f"**{s['tuneflow_median_ms']} ms**" in md and "tuneflow / Optuna" in md and "journal appends/trial" in md


def test_ray_tune(bench_dirs) -> None:
    pytest.importorskip("ray.tune")
    work, out = bench_dirs
    bench("peers.py", *PEERS_ARGS, "--trials", "2", "--tools", "ray", "--work", str(work / "peers"), "--out-dir", str(out), "--name", "peers-ray")
    _check_peer_row(_load(out, "peers-ray")["tools"][0], 2)
    bench("overhead.py", "--trials", "3", "--tools", "ray", "--work", str(work / "overhead"), "--out-dir", str(out), "--name", "overhead-ray")
    row = _load(out, "overhead-ray")["tools"][0]
    assert row["tool"] == "ray" and row["trials"] == 3 and _number(row["latency"]["median_ms"])


def test_hyperopt(bench_dirs) -> None:
    pytest.importorskip("hyperopt")
    work, out = bench_dirs
    bench("peers.py", *PEERS_ARGS, "--tools", "hyperopt", "--work", str(work / "peers"), "--out-dir", str(out), "--name", "peers-hyperopt")
    _check_peer_row(_load(out, "peers-hyperopt")["tools"][0], 3)


TTQ_TOOLS = ["default", "sha-rounds", "random", "optuna"]  # default and sha-rounds: the flow's pruner/fidelity parameters


def test_time_to_quality(bench_dirs, prefect_api) -> None:
    """Best-so-far against wall time: tuneflow variants (the real flow) and the peers, one seed, a
    10 s wall each; the random search also defines the target (its first 4 trials)."""
    pytest.importorskip("optuna_integration")
    work, out = bench_dirs
    bench("time_to_quality.py", "--rows", "4000", "--datasets", "synth28", "--seeds", "0", "--wall", "10", "--trials", "4", "--max-rounds", "20",
          "--tools", ",".join(TTQ_TOOLS), "--work", str(work / "ttq"), "--out-dir", str(out), "--name", "ttq", timeout=420)
    data = _load(out, "ttq")
    assert data["params"]["tools"] == TTQ_TOOLS and data["params"]["seeds"] == [0] and data["params"]["wall"] == 10
    assert [(r["tool"], r["dataset"], r["seed"]) for r in data["runs"]] == [(t, "synth28", 0) for t in TTQ_TOOLS]
    for run in data["runs"]:
        assert not run.get("skipped"), run
        assert run["points"] and all(_number(p["t"]) and 0.5 < p["value"] <= 1.0 for p in run["points"]), run["tool"]
    assert data["runs"][1]["flow_kwargs"] == {"pruner": "sha", "fidelity": "rounds"} and data["runs"][0]["flow_kwargs"] == {}
    assert all(r["sampler_seed_applied"] and r["tune_start"].endswith(" call") for r in data["runs"][:2])
    target = data["runs"][2]["target"]
    assert target["trials"] == 4 and 0.5 < target["value"] <= 1.0 and _number(target["wall_s"]) and target["wall_s"] > 0
    s = data["summary"]["synth28"]
    assert s["targets"]["0"]["value"] == target["value"] and set(s["tools"]) == set(TTQ_TOOLS)
    for tool, row in s["tools"].items():
        assert 0.5 < row["best_at_wall"]["median"] <= 1.0, tool
        assert row["best_at_wall"]["min"] <= row["best_at_wall"]["median"] <= row["best_at_wall"]["max"]
    assert s["tools"]["random"]["time_to_target_s"]["median"] <= target["wall_s"]  # it reaches its own target
    assert isinstance(s["goal"]["met"], bool) and len(s["goal"]["per_seed"]) == 1
    md = (out / "ttq.md").read_text()
    assert "time to target" in md and "![best-so-far" in md and all(f"| {t} |" in md for t in TTQ_TOOLS)
    assert (out / "ttq.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # --render rewrites the Markdown and the figure from the JSON alone
    (out / "ttq.png").unlink()
    bench("time_to_quality.py", "--render", "--out-dir", str(out), "--name", "ttq", timeout=120)
    assert (out / "ttq.png").exists() and (out / "ttq.md").read_text() == md


def test_scale(bench_dirs) -> None:
    work, out = bench_dirs
    bench("scale.py", "--sizes", "5000,20000", "--memory-sizes", "10000,40000", "--rounds", "3", "--work", str(work / "scale"), "--out-dir", str(out))
    data = _load(out, "scale")
    assert [s["rows"] for s in data["sizes"]] == [5000, 20000]
    for s in data["sizes"]:
        assert s["shard"]["peak_rss_mb"] > s["shard"]["baseline_rss_mb"] > 0 and s["shard"]["files"] >= 3
        assert s["trial"]["warm"]["rounds"] == 3 and s["trial"]["cold"]["load_s"] > 0 and s["trial"]["warm"]["load_s"] == 0
        assert _number(s["plain_dask"]["mb_per_s"])
    assert data["summary"]["input_ratio"] == 4 and isinstance(data["summary"]["shard_memory_goal_met"], bool)
    assert [s["rows"] for s in data["memory_sizes"]] == [10000, 40000] and _number(data["summary"]["memory_sizes_peak_rss_ratio"])


def test_gpu_script_on_cpu_without_the_orchestration_stack(tmp_path: Path) -> None:
    """As on the GPU machine: Prefect, Optuna, GX, MLflow and pydantic-settings cannot be imported."""
    out = tmp_path / "gpu.json"
    env = {**os.environ, "TUNEFLOW_GPU_BLOCK_IMPORTS": "prefect,optuna,great_expectations,mlflow,pydantic_settings"}
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu.py"), "--rows", "20000", "--device", "cpu", "--trials", "3", "--rounds", "5",
         "--naive-trials", "2", "--out", str(out), "--work", str(tmp_path / "work")],
        capture_output=True, text=True, timeout=240, env=env, cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    data = json.loads(out.read_text())
    assert data["complete"] and not data["skipped"] and "error" not in data
    assert set(data["stages"]) == {"data", "plain", "worker_warmup", "tuneflow_1", "tuneflow_2", "naive_dask"}
    assert data["stages"]["tuneflow_1"]["device"] == "cpu" and data["stages"]["naive_dask"]["trials"] == 2
    assert data["forbidden_modules_here"] == [] and data["forbidden_modules_on_worker"] == []
    # no stand-in needed any more: the engine imports neither pydantic-settings nor tasks.settings
    assert {"pydantic_settings", "tasks.settings"} <= set(data["forbidden_modules_checked"])
    assert data["imports_blocked"] is True and data["imports_blocked_on_workers"] == [True]
    s = data["summary"]
    assert all(_number(s[k]) for k in ("plain_trials_s", "tuneflow_seq_warm_s", "tuneflow_vs_plain_warm", "naive_over_tuneflow_per_trial"))


def test_rung_cost(bench_dirs) -> None:
    work, out = bench_dirs
    bench("rung_cost.py", "--rows", "10000", "--rounds", "8", "--units", "2", "--setup-trials", "2", "--setup-rounds", "2",
          "--work", str(work / "rung-cost"), "--out-dir", str(out), "--name", "rung-cost", timeout=300)
    data = _load(out, "rung-cost")
    assert [u["placement"] for u in data["units"]] == ["trial", "data"]
    for u in data["units"]:
        row = u["repeats"][0]
        assert row["live"]["resumed"] == ["scratch", "live"] and row["checkpoint"]["resumed"] == ["scratch", "checkpoint"]
        assert u["live_max_abs_history_diff"] < 1e-4 and _number(u["live_ratio"]) and _number(u["live_cpu_ratio"])
    s = data["setup"]
    assert len(s["old"]) == len(s["new"]) == 2 and s["new"][1]["matrix_cache_hit"] and _number(s["old_setup_s_mean"])
