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
