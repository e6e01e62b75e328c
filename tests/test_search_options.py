"""Samplers, stopping rules, multi-objective registration and warm start, on real Optuna studies
run through the tuning loop (no Prefect, no Dask: a thread pool trains toy objectives)."""

from __future__ import annotations

import concurrent.futures as cf
import math
from pathlib import Path
from typing import Any

import optuna
import pytest

from tasks.contracts import Sampler
from tasks.errors import TuneflowError
from tasks.tuning import loop, samplers, studies
from tasks.tuning.objectives import parse_objectives, pareto_front, pick_registered
from tasks.tuning.records import COPIED_ATTR, FORBIDDEN_ATTR, WARM_START_ATTR, counts_toward_budget
from tasks.tuning.search_space import SearchSpace, check_space
from tasks.tuning.stopping import StoppingRules, StopWatch
from tasks.tuning.warm_start import StudyIdentity, check_parent, seed_new_study, stamp

NUMERIC = SearchSpace({"x": {"type": "float", "low": -3.0, "high": 3.0}, "y": {"type": "int", "low": 0, "high": 5}})
WITH_CATEGORICAL = SearchSpace({**NUMERIC.params, "c": {"type": "categorical", "choices": ["a", "b"]}})
FINITE = SearchSpace({"y": {"type": "int", "low": 0, "high": 3}, "c": {"type": "categorical", "choices": ["a", "b"]}})
CONDITIONAL = check_space({
    "parameters": {
        "booster": {"type": "categorical", "choices": ["gbtree", "dart"]},
        "rate_drop": {"type": "float", "low": 0.0, "high": 0.3},
    },
    "conditions": [{"child": "rate_drop", "parent": "booster", "type": "EQ", "value": "dart"}],
})


def quadratic(params: dict[str, Any]) -> dict[str, Any]:
    x, y = float(params.get("x", 0.0)), float(params.get("y", 0))
    return {"value": (x - 1.0) ** 2 + (y - 2) ** 2, "seconds": 1.0, "cores": 2, "device": "cpu", "model_bytes": int(1000 * (1 + y)), "train_seconds": 0.1}


def run(study: optuna.Study, space: SearchSpace, n_trials: int, **options: Any) -> loop.StudyOutcome:
    with cf.ThreadPoolExecutor(2) as pool:
        return loop.run_study(study, space, n_trials=n_trials, timeout=None, parallelism=2, submit=lambda n, p: pool.submit(quadratic, p), **options)


# -- samplers ------------------------------------------------------------------------------------


def test_auto_follows_optunas_guidance() -> None:
    assert samplers.choose_sampler("auto", WITH_CATEGORICAL, 50).name == Sampler.TPE
    assert "categorical" in samplers.choose_sampler("auto", WITH_CATEGORICAL, 50).reason
    assert samplers.choose_sampler("auto", CONDITIONAL, 50).name == Sampler.TPE
    small = samplers.choose_sampler("auto", NUMERIC, 50)
    assert small.name == (Sampler.GP if samplers.gp_available() else Sampler.TPE)
    assert "GP" in small.reason  # picked, or named as what torch would allow
    assert samplers.choose_sampler("auto", NUMERIC, 5000).name == Sampler.CMAES
    assert samplers.choose_sampler("auto", NUMERIC, 5000, n_objectives=2).name == Sampler.NSGA2
    assert samplers.choose_sampler("auto", NUMERIC, None).name == Sampler.TPE


@pytest.mark.parametrize("name, space, objectives, words", [
    ("grid", NUMERIC, 1, "x"),  # a continuous parameter: named
    ("grid", CONDITIONAL, 1, "conditional"),
    ("cmaes", WITH_CATEGORICAL, 1, "categorical"),
    ("cmaes", CONDITIONAL, 1, "conditional"),
    ("cmaes", NUMERIC, 2, "one objective"),
    ("qmc", CONDITIONAL, 1, "conditional"),
    ("simulated-annealing", NUMERIC, 1, "--sampler"),
])
def test_unfit_samplers_are_refused(name: str, space: SearchSpace, objectives: int, words: str) -> None:
    with pytest.raises(TuneflowError, match=words):
        samplers.choose_sampler(name, space, 20, objectives)


@pytest.mark.parametrize("name", [s.value for s in Sampler if s not in (Sampler.AUTO, Sampler.GRID, Sampler.GP)])
def test_every_sampler_runs_the_loop(name: str, tmp_path: Path) -> None:
    choice = samplers.choose_sampler(name, NUMERIC, 12)
    study = studies.open_study(str(tmp_path / "s.journal"), name, "minimize", 0, sampler=lambda s: samplers.build_sampler(choice, NUMERIC, s))
    out = run(study, NUMERIC, 12)
    assert out.completed == 12 and out.best_value is not None and out.best_value < 4.0


@pytest.mark.skipif(not samplers.gp_available(), reason="torch is not installed (pip install 'tuneflow[gp]')")
def test_gp_sampler_runs_the_loop(tmp_path: Path) -> None:
    choice = samplers.choose_sampler("gp", NUMERIC, 14)
    study = studies.open_study(str(tmp_path / "gp.journal"), "gp", "minimize", 0, sampler=lambda s: samplers.build_sampler(choice, NUMERIC, s))
    assert run(study, NUMERIC, 14).completed == 14


def test_grid_search_covers_the_grid_once_and_says_so(tmp_path: Path) -> None:
    choice = samplers.choose_sampler("grid", FINITE, 100)
    assert choice.grid_size == 8
    study = studies.open_study(str(tmp_path / "g.journal"), "grid", "minimize", 0, sampler=lambda s: samplers.build_sampler(choice, FINITE, s))
    out = run(study, FINITE, choice.grid_size, exhausted=lambda: samplers.exhausted(study.sampler, study))
    seen = {(t.params["y"], t.params["c"]) for t in study.trials}
    assert len(study.trials) == 8 and len(seen) == 8
    assert out.stopped_by.startswith("grid exhausted")


def test_forbidden_configurations_are_never_trained(tmp_path: Path) -> None:
    space = check_space({
        "parameters": {"y": {"type": "int", "low": 0, "high": 3}, "c": {"type": "categorical", "choices": ["a", "b"]}},
        "forbiddens": [{"type": "AND", "clauses": [{"name": "c", "type": "EQUALS", "value": "b"}, {"name": "y", "type": "IN", "values": [0, 1, 2]}]}],
    })
    trained: list[dict[str, Any]] = []

    def train(params: dict[str, Any]) -> dict[str, Any]:
        trained.append(params)
        return quadratic(params)

    study = studies.open_study(str(tmp_path / "f.journal"), "forbidden", "minimize", 0, sampler=lambda s: optuna.samplers.RandomSampler(seed=s))
    with cf.ThreadPoolExecutor(2) as pool:
        out = loop.run_study(study, space, n_trials=10, timeout=None, parallelism=2, submit=lambda n, p: pool.submit(train, p))
    assert out.completed == 10 and len(trained) == 10
    assert not [p for p in trained if p["c"] == "b" and p["y"] < 3]
    marked = [t for t in study.trials if t.user_attrs.get(FORBIDDEN_ATTR)]
    assert marked and all(not counts_toward_budget(t) for t in marked)


# -- stopping rules ------------------------------------------------------------------------------


def test_stop_at_ends_the_run_and_says_which_trial(tmp_path: Path) -> None:
    study = studies.open_study(str(tmp_path / "t.journal"), "target", "minimize", 0, sampler=lambda s: optuna.samplers.RandomSampler(seed=s))
    out = run(study, NUMERIC, 200, stop=StopWatch(StoppingRules(stop_at=1.0), maximize=False))
    assert out.stopped_by.startswith("stop-at") and out.best_value is not None and out.best_value <= 1.0
    assert out.completed < 200


def test_patience_counts_finished_trials_without_gain(tmp_path: Path) -> None:
    watch = StopWatch(StoppingRules(patience=3, min_delta=0.5), maximize=True)
    for number, value in enumerate([0.5, 0.6, 0.7, 0.8]):  # +0.1 gains are below min_delta
        watch.finished(number, value)
    assert watch.reason is not None and "patience" in watch.reason
    study = studies.open_study(str(tmp_path / "p.journal"), "patience", "minimize", 0, sampler=lambda s: optuna.samplers.RandomSampler(seed=s))
    out = run(study, NUMERIC, 500, stop=StopWatch(StoppingRules(patience=5), maximize=False))
    assert out.stopped_by.startswith("patience") and out.completed < 500


def test_max_cost_counts_core_seconds(tmp_path: Path) -> None:
    study = studies.open_study(str(tmp_path / "c.journal"), "cost", "minimize", 0)
    # each toy unit: 1 s on 2 cores; 0.01 core-hours = 36 core-seconds = 18 units
    out = run(study, NUMERIC, 100, stop=StopWatch(StoppingRules(max_cost=0.01), maximize=False))
    assert out.stopped_by.startswith("max-cost")
    assert 18 <= out.completed <= 19 and math.isclose(out.cost_hours, out.completed * 2 / 3600, abs_tol=1e-6)


@pytest.mark.parametrize("rules, words", [
    (dict(stop_at=math.inf), "--stop-at"), (dict(patience=0), "--patience"), (dict(min_delta=-1.0, patience=3), "--min-delta"),
    (dict(min_delta=0.1), "needs --patience"), (dict(max_cost=0.0), "--max-cost"), (dict(max_cost=math.nan), "--max-cost"),
])
def test_bad_stopping_rules(rules: dict[str, Any], words: str) -> None:
    with pytest.raises(TuneflowError, match=words):
        StoppingRules(**rules)


# -- multi-objective -----------------------------------------------------------------------------


def test_pareto_front_and_registration_rule(tmp_path: Path) -> None:
    objectives = parse_objectives("rmse,size_mb", "rmse", "minimize", within="size_mb=0.0025")
    study = studies.open_study(str(tmp_path / "m.journal"), "multi", objectives.directions, 0, sampler=lambda s: optuna.samplers.NSGAIISampler(seed=s))
    out = run(study, NUMERIC, 30, values_of=objectives.values)
    assert out.completed == 30
    front = pareto_front(study, objectives)
    assert front and all(set(r) >= {"number", "rmse", "size_mb", "within_limits"} for r in front)
    picked = pick_registered(study, objectives)
    assert picked.values[1] <= 0.0025  # within the size limit (y <= 1)
    fits = [t for t in study.trials if t.values and t.values[1] <= 0.0025]
    assert picked.values[0] == min(t.values[0] for t in fits)
    assert picked.number in {r["number"] for r in front}
    with pytest.raises(TuneflowError, match="nothing was registered"):
        pick_registered(study, parse_objectives("rmse,size_mb", "rmse", "minimize", within="size_mb=0.0001"))


@pytest.mark.parametrize("text, within, words", [
    ("size_mb,auc", None, "first objective"), ("auc,weight", None, "weight"), ("auc,size_mb,size_mb", None, "repeated"),
    ("auc,size_mb", "latency_ms=3", "--within"), ("auc,size_mb", "size_mb=-1", "--within"), ("auc,size_mb", "size_mb", "--within"),
])
def test_bad_objectives(text: str, within: str | None, words: str) -> None:
    with pytest.raises(TuneflowError, match=words):
        parse_objectives(text, "auc", "maximize", within)


# -- warm start ----------------------------------------------------------------------------------


def identity(fp: str) -> StudyIdentity:
    return StudyIdentity("quad", fp, "regression", "rmse", "rmse", studies.space_hash(NUMERIC))


def test_warm_start_copies_on_identical_data_and_enqueues_on_changed(tmp_path: Path) -> None:
    url = str(tmp_path / "w.journal")
    first = studies.open_study(url, "quad-v1", "minimize", 0)
    stamp(first, identity("v1"))
    run(first, NUMERIC, 12)
    storage = studies.open_storage(url)

    same = studies.open_study(url, "quad-v1-again", "minimize", 0)
    done = seed_new_study(same, storage, "auto", identity("v1"))
    assert done == {"from": "quad-v1", "mode": "copied", "trials": 12}
    assert all(t.user_attrs.get(COPIED_ATTR) and not counts_toward_budget(t) for t in same.trials)
    out = run(same, NUMERIC, 3)
    assert out.completed == 3  # copies do not use the new study's budget

    changed = studies.open_study(url, "quad-v2", "minimize", 0)
    done = seed_new_study(changed, storage, "auto", identity("v2"))
    assert done is not None and done["mode"] == "enqueued" and done["trials"] == 5
    best_first = sorted(first.trials, key=lambda t: t.value)[0].params
    run(changed, NUMERIC, 5)
    assert changed.trials[0].params == best_first and changed.trials[0].user_attrs[WARM_START_ATTR].startswith("quad-v")

    assert seed_new_study(studies.open_study(url, "cold", "minimize", 0), storage, "off", identity("v3")) is None
    with pytest.raises(TuneflowError, match="not in the study storage"):
        check_parent(storage, "no-such-study", identity("v2"))
    other = StudyIdentity("quad", "v2", "regression", "mae", "mae", studies.space_hash(NUMERIC))
    with pytest.raises(TuneflowError, match="metric"):
        check_parent(storage, "quad-v1", other)
