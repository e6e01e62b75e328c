"""Short runs of the search benchmarks (benchmarks/samplers.py, benchmarks/warm_start.py): tiny data,
a few trials, run as a user runs them (`python benchmarks/<script>.py ...` in a subprocess); the
JSON has the expected structure and finite numbers. Speed is not checked here; the measured numbers
are in benchmarks/results/ and benchmarks/README.md. The tests import nothing from benchmarks/."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY = ["--rows", "1500", "--max-rounds", "30", "--early-stopping-rounds", "10"]


def bench(script: str, *args: str, timeout: float = 120) -> None:
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *args], capture_output=True, text=True, timeout=timeout, cwd=REPO)
    assert proc.returncode == 0, f"{script} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-4000:]}"


def _number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _load(out: Path, name: str) -> dict:
    data = json.loads((out / f"{name}.json").read_text())
    md = (out / f"{name}.md").read_text()
    assert md.startswith("## ") and "| --- |" in md and "MET" in md
    assert data["machine"]["cores"] >= 1 and data["command"].startswith("python benchmarks/")
    return data


def _check_run(run: dict, trials: int) -> None:
    assert run["completed"] == trials and run["failed"] == 0, run.get("stopped_by")
    assert len(run["points"]) == trials and [p["t"] for p in run["points"]] == sorted(p["t"] for p in run["points"])
    assert all(_number(p["value"]) and _number(p["t"]) and p["rounds"] >= 1 for p in run["points"])
    assert _number(run["wall_s"]) and run["wall_s"] > 0 and set(run["monitor"]) >= {"other_processes_cores", "wall_s"}


def test_samplers_smoke(tmp_path: Path) -> None:
    """auto (as tuneflow resolves it here: GP with torch, TPE without) against random search, 2 datasets."""
    out = tmp_path / "out"
    bench("samplers.py", "--trials", "6", "--seeds", "0", "--tools", "auto,random", *TINY, "--out-dir", str(out), "--work", str(tmp_path / "work"))
    data = _load(out, "samplers")
    assert data["params"]["tools"] == ["auto", "random"] and data["params"]["datasets"] == ["churn", "digits"]
    env = data["environment"]
    expected = "gp" if importlib.util.find_spec("torch") else "tpe"
    assert env["auto"]["sampler"] == expected and env["auto"]["reason"].startswith("auto:") and env["auto_without_torch"]["sampler"] == "tpe"
    assert [(r["dataset"], r["tool"]) for r in data["runs"]] == [("churn", "auto"), ("churn", "random"), ("digits", "auto"), ("digits", "random")]
    for run in data["runs"]:
        _check_run(run, 6)
        assert run["sampler"] == (expected if run["tool"] == "auto" else "random")
    assert data["datasets"]["churn"]["metric"] == "auc" and data["datasets"]["digits"]["direction"] == "minimize"
    s = data["summary"]
    for ds in ("churn", "digits"):
        entry = s["datasets"][ds]
        target = entry["targets"]["0"]["value"]
        assert _number(target) and _number(entry["targets"]["0"]["wall_s"])
        rnd = entry["tools"]["random"]
        assert 1 <= rnd["trials_to_target"]["median"] <= 6  # random reaches its own best
        assert rnd["best_at"]["6"]["median"] == pytest.approx(target, abs=1e-6)  # rounded to 6 decimals
        for tool in ("auto", "random"):
            t = entry["tools"][tool]
            assert set(t["best_at"]) == {"2", "3", "6"} and all(_number(v["median"]) for v in t["best_at"].values())
            assert _number(t["wall_s"]["median"])
        assert isinstance(entry["goal"]["met"], bool) and entry["goal"]["per_seed"][0] in (None, *range(1, 7))
    assert isinstance(s["goal"]["met_on_every_dataset"], bool)
    assert (out / "samplers.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_samplers_skips_gp_without_torch(tmp_path: Path) -> None:
    """As in CI: gp cannot run without torch and is skipped with a note; auto falls back to TPE."""
    out = tmp_path / "out"
    bench("samplers.py", "--trials", "3", "--seeds", "0", "--tools", "auto,gp,random", "--datasets", "churn", "--without-torch", *TINY,
          "--out-dir", str(out), "--work", str(tmp_path / "work"))
    data = _load(out, "samplers")
    runs = {r["tool"]: r for r in data["runs"]}
    assert "torch" in runs["gp"]["skipped"] and runs["auto"]["sampler"] == "tpe" and "torch is not installed" in runs["auto"]["reason"]
    _check_run(runs["random"], 3)
    assert "gp" not in data["summary"]["datasets"]["churn"]["tools"]
    assert "Skipped: gp" in (out / "samplers.md").read_text()


def test_warm_start_smoke(tmp_path: Path) -> None:
    out = tmp_path / "out"
    bench("warm_start.py", "--trials", "6", "--seeds", "0", *TINY, "--out-dir", str(out), "--work", str(tmp_path / "work"))
    data = _load(out, "warm-start")
    assert data["datasets"]["v2"]["rows"] == 1950 and data["datasets"]["v1"]["fingerprint"] != data["datasets"]["v2"]["fingerprint"]
    (row,) = data["seeds"]
    for arm in ("v1", "cold", "warm"):
        _check_run(row[arm], 6)
    assert row["warm"]["prepared"] == {"from": "ws-v1-s0", "mode": "enqueued", "trials": 5}
    assert row["cold"]["prepared"] is None
    best = row["v1_best"]
    assert _number(best["value_on_v2"]) and best["value_on_v1_again"] == best["value_on_v1_in_study"]
    s = data["summary"]
    assert set(s["targets"]) == {"primary", "as-measured", "cold-final"}
    prim = s["targets"]["primary"]
    assert prim["values"] == [best["value_on_v2"]]
    # the warm study re-evaluates v1's best configuration among its first 5 trials: it reaches the primary target
    assert 1 <= prim["warm_trials"]["median"] <= 5
    assert s["per_seed"]["0"]["v1_best_reproduced"] is True
    assert isinstance(s["goal"]["met"], bool) and s["goal"]["text"]
    for arm in ("cold", "warm"):
        assert all(_number(v["median"]) for v in s["best_at"][arm].values())
