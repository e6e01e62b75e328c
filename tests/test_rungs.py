"""Rungs, pruners and PBT on the real engine: ladders, a crash in the middle of a rung and of a
PBT segment (a killed process, then a resume), the sync schedule, and the flow pruning trials
in both placements."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tasks import objectstore
from tasks.contracts import Fidelity, Pruner
from tasks.tuning.records import LOST_ATTR, PBT_ATTR, RETRY_OF_ATTR, RUNG_ATTR
from tasks.tuning.rungs import ladder
from tasks.tuning.studies import open_study
from tests.conftest import make_csv, shard_csv

REPO = Path(__file__).resolve().parents[1]


def test_ladders() -> None:
    assert [(r.rounds, r.fraction, r.step) for r in ladder(Fidelity.ROUNDS, Pruner.SHA, 500)] == [(18, 1.0, 18), (54, 1.0, 54), (162, 1.0, 162), (500, 1.0, 486)]
    assert [(r.rounds, r.step) for r in ladder(Fidelity.ROUNDS, Pruner.SHA, 40)] == [(13, 13), (40, 39)]
    assert [(r.rounds, r.fraction) for r in ladder(Fidelity.ROUNDS, Pruner.NONE, 500)] == [(500, 1.0)]
    data = ladder(Fidelity.DATA, Pruner.HYPERBAND, 300)
    assert [(r.rounds, round(r.fraction, 4), r.step) for r in data] == [(300, 0.1111, 1), (300, 0.3333, 3), (300, 1.0, 9)]
    assert [r.rounds for r in ladder(Fidelity.BOTH, Pruner.SHA, 300)] == [34, 100, 300]


@pytest.fixture(scope="module")
def manifest_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("rung-data")
    manifest = shard_csv(make_csv(root / "churn.csv", 4000), "churned", "binary", {"categories": {}, "classes": {"0": 1, "1": 1}}, str(root / "store"), row_key="customer_id")
    return objectstore.join(manifest["uri"], "_manifest.json")


def units(mode: str, manifest_uri: str, work: Path, tag: str, *extra: str) -> tuple[subprocess.CompletedProcess, dict | None]:
    out = work / f"{tag}.json"
    args = [sys.executable, "-m", "tests.units", mode, "--manifest", manifest_uri, "--storage", str(work / "study.journal"),
            "--store", str(work / "store"), "--log", str(work / "units.jsonl"), "--out", str(out), *extra]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=REPO)
    return proc, json.loads(out.read_text()) if out.exists() else None


def unit_log(work: Path) -> list[dict]:
    return [json.loads(line) for line in (work / "units.jsonl").read_text().splitlines()]


def test_a_crash_in_the_middle_of_a_rung_resumes_from_the_last_passed_rung(manifest_uri: str, tmp_path: Path) -> None:
    crashed, out = units("rungs", manifest_uri, tmp_path, "crash", "--crash-at", "0:1")
    assert crashed.returncode == 9 and out is None, crashed.stderr[-2000:]
    time.sleep(2.5)  # the dead run's heartbeats go stale
    resumed, out = units("rungs", manifest_uri, tmp_path, "resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    study = open_study(str(tmp_path / "study.journal"), "units", "maximize", 0)
    trials = {t.number: t for t in study.get_trials()}
    old = trials[0]
    assert old.state == TrialState.FAIL and old.user_attrs.get(LOST_ATTR) and old.user_attrs[RUNG_ATTR]["rung"] == 1
    copy = next(t for t in trials.values() if t.user_attrs.get(RETRY_OF_ATTR) == 0)
    assert copy.state == TrialState.COMPLETE and copy.params == old.params
    # every rung reported once, the first one carried over from the lost trial, not trained again
    assert sorted(copy.intermediate_values) == [10, 30, 90]
    assert copy.intermediate_values[10] == old.intermediate_values[10]
    runs = [u for u in unit_log(tmp_path) if u["params"] == json_key(old.params)]
    assert [u["unit"] for u in runs] == [0, 1, 1, 2]  # rung 1 was running when the run died: run again
    assert runs[2]["resume_from"] and runs[2]["resume_from"].endswith("unit-00.ubj")  # from rung 0's checkpoint
    assert runs[2]["pid"] != runs[0]["pid"]
    counted = [t for t in trials.values() if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(counted) == 4 and out["completed"] + out["pruned"] >= 2


def json_key(params: dict) -> str:
    from tests.units import SPACE, params_key

    return params_key({**params, "max_bin": SPACE["max_bin"]})


def test_pbt_records_lineage_and_resumes_after_a_kill(manifest_uri: str, tmp_path: Path) -> None:
    crashed, _ = units("pbt", manifest_uri, tmp_path, "crash", "--max-rounds", "40", "--crash-at", "0:2")
    assert crashed.returncode == 9, crashed.stderr[-2000:]
    state = objectstore.read_json(str(tmp_path / "store" / "pbt-state.json"))
    assert state["done"] == 2 and not state["finished"]
    resumed, out = units("pbt", manifest_uri, tmp_path, "resume", "--max-rounds", "40")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming after segment 2 of 4" in resumed.stdout
    study = open_study(str(tmp_path / "study.journal"), "units", "maximize", 0)
    members = [t for t in study.get_trials() if PBT_ATTR in t.user_attrs]
    assert len(members) == 3 and all(t.state == TrialState.COMPLETE for t in members) and out["completed"] == 3
    for t in members:
        segments = [e["segment"] for e in t.user_attrs[PBT_ATTR] if "value" in e]
        assert segments == [0, 1, 2, 3]  # each segment once: the interrupted one was redone, not doubled
        assert t.user_attrs[PBT_ATTR][-1]["rounds"] <= 40
    lineage = [e for t in members for e in t.user_attrs[PBT_ATTR]]
    exploited = [e for e, t in ((e, t) for t in members for e in t.user_attrs[PBT_ATTR]) if e["parent"] != t.user_attrs["tuneflow:pbt_member"]]
    assert exploited, f"no member copied a better one: {lineage}"
    assert all(e["resumed"] == "checkpoint" for e in exploited)  # an exploit continues the parent's saved booster
    log = unit_log(tmp_path)
    assert sorted(u["unit"] for u in log if u["pid"] == log[0]["pid"]).count(0) == 3
    assert [u["unit"] for u in log if u["pid"] != log[0]["pid"]].count(2) == 3  # the resumed run redid segment 2 only from there


def test_sync_schedule_runs_batches_and_finishes_the_budget(manifest_uri: str, tmp_path: Path) -> None:
    from tasks.tuning.loop import run_study
    from tests.units import SPACE, LocalUnits, template

    manifest = objectstore.read_json(manifest_uri)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=1))
    local = LocalUnits(template(manifest, 30), str(tmp_path / "store"), tmp_path / "units.jsonl")
    outcome = run_study(study, SPACE, n_trials=6, timeout=None, parallelism=2, schedule="sync",
                        submit=lambda n, p: local.run_unit(n, p, _full_unit(30)))
    trials = sorted(study.get_trials(), key=lambda t: t.number)
    assert outcome.completed == 6 and len(trials) == 6
    for batch in range(1, 3):
        started = min(t.datetime_start for t in trials[2 * batch: 2 * batch + 2])
        assert started >= max(t.datetime_complete for t in trials[2 * batch - 2: 2 * batch])
    assert 0 < outcome.slot_utilisation <= 1


def _full_unit(rounds: int):
    from tasks.tuning.rungs import Rung, Unit

    return Unit(Rung(0, rounds, 1.0, rounds), rounds, 1.0, None, None, None, None)


GOOD = {"learning_rate": 0.3, "max_depth": 6, "min_child_weight": 1.0, "subsample": 1.0, "colsample_bytree": 1.0, "reg_lambda": 1.0, "reg_alpha": 0.001}
BAD = {**GOOD, "learning_rate": 0.02, "max_depth": 3, "subsample": 0.5, "colsample_bytree": 0.5, "min_child_weight": 20.0}


@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize("placement", ["trial", "data"])
def test_the_flow_prunes_trials_in_both_placements_and_a_rerun_keeps_them(placement: str, churn_csv: Path, tuneflow_home: Path, dask_cluster, tmp_path: Path) -> None:
    """Five fixed configurations, two at a time: successive halving prunes some at a rung, the
    study counts them, and a second run with the same budget trains nothing."""
    from flows.tune_xgboost import tune_xgboost
    from tasks.settings import get_settings

    configs = tmp_path / "configs.json"
    configs.write_text(json.dumps([GOOD, BAD, {**BAD, "reg_lambda": 5.0}, {**BAD, "reg_alpha": 5.0}, {**BAD, "max_depth": 4}]))
    args = dict(data=str(churn_csv), target="churned", row_key="customer_id", n_trials=5, parallelism=2, max_rounds=90,
                early_stopping_rounds=90, seed=3, pruner="sha", enqueue=str(configs), placement=placement,
                dask_address=dask_cluster.scheduler_address, study_name=f"prune-{placement}")
    result = tune_xgboost(**args)
    assert result["placement"] == placement and result["pruner"] == "sha" and result["pruned_this_run"] >= 1
    study = open_study(get_settings().resolved_storage(), result["study_name"], "maximize", 0)
    states = [t.state for t in study.get_trials()]
    assert states.count(TrialState.PRUNED) == result["pruned_this_run"] and len(states) == 5
    pruned = [t for t in study.get_trials() if t.state == TrialState.PRUNED]
    assert all(min(t.intermediate_values) == 10 for t in pruned)  # stopped after a rung, not at the end
    assert all(max(t.intermediate_values) < 90 for t in pruned)
    best = study.best_trial
    assert sorted(best.intermediate_values) == [10, 30, 90]  # the best one went through every rung

    again = tune_xgboost(**args)  # the budget counts pruned trials: nothing left to run
    assert again["trials_this_run"] == 0 and [t.state for t in study.get_trials()] == states
