"""The CLI as a user runs it: a small study end to end, and what it prints."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.conftest import make_csv, run_cli


def test_cli_run_prints_result_and_writes_report(tmp_path: Path) -> None:
    csv = make_csv(tmp_path / "churn.csv", 3000)
    home = tmp_path / "home"
    proc = run_cli(
        "run", "--data", str(csv), "--target", "churned", "--row-key", "customer_id", "--n-trials", "3",
        "--parallelism", "2", "--max-rounds", "30", "--space", "data/search_space.yaml",
        env={"TUNEFLOW_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"},
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = proc.stdout
    best = float(re.search(r"best auc \(valid\) = ([0-9.]+)", out).group(1))
    assert 0.5 < best <= 1.0
    assert re.search(r"model: tuneflow-churn version 1 \(alias champion\)", out)
    assert "mlflow ui --backend-store-uri sqlite:///" in out
    report_path = Path(re.search(r"report: (\S+)", out).group(1))
    report = json.loads(report_path.read_text())
    assert report["best_value"] == best or abs(report["best_value"] - best) < 1e-6
    assert report["trials_this_run"] == 3 and report["rows"]["train"] + report["rows"]["valid"] + report["rows"]["test"] == 3000
    assert set(report["best_params"]) >= {"learning_rate", "max_depth", "max_bin"}  # from data/search_space.yaml
    assert "3/3" in proc.stderr  # the live trial display reached the budget


def test_smoke_run_on_a_sample_then_the_full_run_warm_starts_from_it(tmp_path: Path) -> None:
    csv = make_csv(tmp_path / "churn.csv", 4000)
    env = {"TUNEFLOW_HOME": str(tmp_path / "home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    common = ("run", "--data", str(csv), "--target", "churned", "--row-key", "customer_id", "--parallelism", "2", "--max-rounds", "20", "--pruner", "none")
    smoke = run_cli(*common, "--n-trials", "4", "--sample", "25%", "--sampler", "random", env=env)
    assert smoke.returncode == 0, smoke.stderr[-4000:]
    assert "smoke run on a sample (0.25)" in smoke.stdout and "without --sample" in smoke.stdout
    assert re.search(r"model: tuneflow-churn-sample version 1", smoke.stdout)
    small = json.loads(Path(re.search(r"report: (\S+)", smoke.stdout).group(1)).read_text())
    assert small["sample"] == "0.25" and 800 <= sum(small["rows"].values()) <= 1200
    assert small["sampler"] == "random" and small["stopped_by"].startswith("n-trials")

    full = run_cli(*common, "--n-trials", "40", "--patience", "6", "--sampler", "random", env=env)
    assert full.returncode == 0, full.stderr[-4000:]
    report = json.loads(Path(re.search(r"report: (\S+)", full.stdout).group(1)).read_text())
    assert report["warm_start"] == {"from": small["study_name"], "mode": "enqueued", "trials": 4}
    assert f"warm start: 4 trials enqueued from study {small['study_name']}" in full.stdout
    assert report["stopped_by"].startswith("patience") and report["trials_this_run"] < 40
    assert sum(report["rows"].values()) == 4000 and re.search(r"model: tuneflow-churn version 1", full.stdout)
    # the new study's own draws do not replay the smoke study's (its sampler is seeded past the enqueued trials)
    import optuna

    from tasks.tuning.records import WARM_START_ATTR
    from tasks.tuning.studies import open_storage

    storage = open_storage(report["storage"])
    seen = {tuple(sorted(t.params.items())) for t in optuna.load_study(study_name=small["study_name"], storage=storage).trials}
    drawn = [t for t in optuna.load_study(study_name=report["study_name"], storage=storage).trials if WARM_START_ATTR not in t.user_attrs]
    assert drawn and not [t.number for t in drawn if tuple(sorted(t.params.items())) in seen]


def test_conditional_space_and_several_objectives(tmp_path: Path) -> None:
    csv = make_csv(tmp_path / "churn.csv", 3000)
    proc = run_cli(
        "run", "--data", str(csv), "--target", "churned", "--n-trials", "8", "--parallelism", "2", "--max-rounds", "20",
        "--space", "data/search_space_conditional.yaml", "--objectives", "auc,size_mb,latency_ms", "--within", "size_mb=1",
        env={"TUNEFLOW_HOME": str(tmp_path / "home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"},
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(Path(re.search(r"report: (\S+)", proc.stdout).group(1)).read_text())
    assert report["sampler"] == "tpe" and "conditional" in report["sampler_reason"] and report["pruner"] == "none"
    assert report["objectives"] == ["auc", "size_mb", "latency_ms"]
    front = report["pareto_front"]
    assert front and all(r["size_mb"] > 0 and r["latency_ms"] > 0 for r in front)
    assert report["best_trial"] in {r["number"] for r in front if r["within_limits"]}
    assert max(r["auc"] for r in front if r["within_limits"]) == report["best_value"]
    params = report["best_params"]
    assert ("rate_drop" in params) == (params["booster"] == "dart")
    assert ("max_leaves" in params) == (params["grow_policy"] == "lossguide")
    assert "Pareto front (" in proc.stdout
    # resources measured on the workers, per trial and for the run
    assert report["cpu_hours"] > 0 and report["cost_hours"] >= report["cpu_hours"] * 0.5 and report["gpu_hours"] == 0


def test_dashboard_serves_the_study_storage_or_says_how_to_install_it(tmp_path: Path) -> None:
    import shutil
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    from tasks.tuning.studies import open_study

    storage = tmp_path / "optuna.journal"
    open_study(str(storage), "shown", "maximize", 0)
    exe = Path(sys.executable).parent / "tuneflow"
    if not (Path(sys.executable).parent / "optuna-dashboard").exists() and not shutil.which("optuna-dashboard"):
        proc = run_cli("dashboard", "--storage", str(storage), env={})
        assert proc.returncode == 2 and proc.stderr.count("error:") == 1 and "pip install 'tuneflow[dashboard]'" in proc.stderr
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([str(exe), "dashboard", "--storage", str(storage), "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for _ in range(60):
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2).read().decode()
                break
            except OSError:
                time.sleep(0.5)
        else:
            raise AssertionError(server.stderr.read1().decode() if server.stderr else "no answer")
        assert '"shown"' in body
    finally:
        server.terminate()
        server.wait(10)
