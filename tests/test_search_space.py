"""Search spaces: file formats, validation, conditional sampling through Optuna, forbidden clauses."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import optuna
import pytest
import xgboost as xgb
import yaml
from optuna.samplers import TPESampler

from tasks.errors import TuneflowError
from tasks.tuning import search_space
from tasks.tuning.search_space import DEFAULT_SPACE, Condition, Forbidden, SearchSpace, as_space, check_space, load_space

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "data" / "search_space_conditional.yaml"

PARAMS = {
    "booster": {"type": "categorical", "choices": ["gbtree", "dart"]},
    "rate_drop": {"type": "float", "low": 0.0, "high": 0.3},
    "grow_policy": {"type": "categorical", "choices": ["depthwise", "lossguide"]},
    "max_leaves": {"type": "int", "low": 16, "high": 64},
    "max_depth": {"type": "int", "low": 0, "high": 6},
    "eta": {"type": "float", "low": 0.05, "high": 0.3},
    "max_bin": 256,
}


def sectioned(conditions: list | None = None, forbiddens: list | None = None, **params: object) -> dict:
    out: dict = {"parameters": {**PARAMS, **params}}
    if conditions is not None:
        out["conditions"] = conditions
    if forbiddens is not None:
        out["forbiddens"] = forbiddens
    return out


GOOD = sectioned(
    [
        {"child": "rate_drop", "parent": "booster", "type": "EQ", "value": "dart"},
        {"child": "max_leaves", "parent": "grow_policy", "type": "IN", "values": ["lossguide"]},
    ],
    [
        {"type": "AND", "clauses": [{"name": "grow_policy", "type": "EQUALS", "value": "depthwise"}, {"name": "max_depth", "type": "EQUALS", "value": 0}]},
        {"name": "max_depth", "type": "IN", "values": [5, 6]},
    ],
)


def test_flat_space_is_unchanged() -> None:
    for flat in (DEFAULT_SPACE, yaml.safe_load((REPO / "data" / "search_space.yaml").read_text())):
        space = check_space(dict(flat))
        assert space.to_json() == flat and not space.conditional and space.forbidden == ()
    assert load_space(None).params == DEFAULT_SPACE
    assert load_space(str(REPO / "data" / "search_space.yaml")).to_json() == yaml.safe_load((REPO / "data" / "search_space.yaml").read_text())
    assert check_space({"parameters": dict(DEFAULT_SPACE)}).to_json() == DEFAULT_SPACE


def test_module_functions_take_dicts_and_spaces() -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for space in (DEFAULT_SPACE, as_space(DEFAULT_SPACE), GOOD):
        trial = study.ask()
        params = search_space.suggest(trial, space)
        assert params["max_bin"] == 256
        assert search_space.with_fixed(space, trial.params) == params
        study.tell(trial, 0.0)
    assert list(search_space.suggest(study.ask(), DEFAULT_SPACE)) == list(DEFAULT_SPACE)


def test_sectioned_space_parses_and_round_trips() -> None:
    space = check_space(GOOD)
    assert space.conditions == (Condition("rate_drop", "booster", "EQ", ("dart",)), Condition("max_leaves", "grow_policy", "IN", ("lossguide",)))
    assert space.forbidden == (Forbidden((("grow_policy", ("depthwise",)), ("max_depth", (0,)))), Forbidden((("max_depth", (5, 6)),)))
    assert space.conditional and space.categorical == ["booster", "grow_policy"]
    assert space.tunable == [n for n in PARAMS if n != "max_bin"]
    assert check_space(json.loads(json.dumps(space.to_json()))) == space
    assert space.order.index("booster") < space.order.index("rate_drop")


def test_and_condition_and_order() -> None:
    space = check_space(sectioned([
        {"child": "booster", "parent": "grow_policy", "type": "EQ", "value": "lossguide"},  # a parent listed after its child
        {"child": "rate_drop", "type": "AND", "conditions": [
            {"child": "rate_drop", "parent": "booster", "type": "EQ", "value": "dart"},
            {"child": "rate_drop", "parent": "max_depth", "type": "NEQ", "value": 0},
        ]},
    ]))
    assert len(space.conditions) == 3
    order = space.order
    assert order.index("grow_policy") < order.index("booster") < order.index("rate_drop") and order.index("max_depth") < order.index("rate_drop")
    assert space.is_active("rate_drop", {"grow_policy": "lossguide", "booster": "dart", "max_depth": 3})
    assert not space.is_active("rate_drop", {"grow_policy": "lossguide", "booster": "dart", "max_depth": 0})
    assert not space.is_active("rate_drop", {"grow_policy": "depthwise", "max_depth": 3})  # booster inactive: so is its child


def cond(child: str, parent: str, kind: str = "EQ", **value: object) -> dict:
    return {"child": child, "parent": parent, "type": kind, **(value or {"value": "dart"})}


BAD = {
    "unknown child": (sectioned([cond("nope", "booster")]), ["'nope'", "not a parameter"]),
    "unknown parent": (sectioned([cond("rate_drop", "nope")]), ["'nope'", "rate_drop"]),
    "float parent": (sectioned([cond("max_leaves", "eta", value=0.1)]), ["'eta'", "float"]),
    "value not a choice": (sectioned([cond("rate_drop", "booster", value="gblinear")]), ["'booster'", "gblinear", "choices"]),
    "int parent out of range": (sectioned([cond("max_leaves", "max_depth", "IN", values=[3, 9])]), ["'max_depth'", "9", "range"]),
    "cycle": (sectioned([cond("grow_policy", "booster"), cond("booster", "grow_policy", value="lossguide")]), ["own ancestor", "booster"]),
    "self parent": (sectioned([cond("booster", "booster")]), ["'booster' is its own ancestor"]),
    "fixed child": (sectioned([cond("max_bin", "booster")]), ["'max_bin'", "fixed"]),
    "fixed parent": (sectioned([cond("rate_drop", "max_bin", value=256)]), ["'max_bin'", "fixed"]),
    "unknown condition type": (sectioned([cond("rate_drop", "booster", "OR")]), ["rate_drop", "'OR'", "IN"]),
    "IN without values": (sectioned([cond("rate_drop", "booster", "IN", value="dart")]), ["rate_drop", "'values' list"]),
    "unknown forbidden type": (sectioned(forbiddens=[{"name": "booster", "type": "LESS", "value": "dart"}]), ["'booster'", "'LESS'"]),
    "forbidden unknown name": (sectioned(forbiddens=[{"type": "AND", "clauses": [{"name": "booster", "type": "EQUALS", "value": "dart"}, {"name": "nope", "type": "EQUALS", "value": 1}]}]), ["'nope'"]),
    "forbidden value not a choice": (sectioned(forbiddens=[{"name": "booster", "type": "EQUALS", "value": "gblinear"}]), ["'booster'", "gblinear"]),
    "forbidden value out of range": (sectioned(forbiddens=[{"name": "eta", "type": "EQUALS", "value": 0.9}]), ["'eta'", "0.9"]),
    "forbidden fixed": (sectioned(forbiddens=[{"name": "max_bin", "type": "EQUALS", "value": 256}]), ["'max_bin'", "fixed"]),
    "forbids everything": (
        {"parameters": {"booster": PARAMS["booster"], "grow_policy": PARAMS["grow_policy"]},
         "forbiddens": [{"name": "booster", "type": "EQUALS", "value": "gbtree"}, {"name": "booster", "type": "EQUALS", "value": "dart"}]},
        ["every configuration", "booster"],
    ),
    "unknown section": ({"parameters": PARAMS, "condition": []}, ["'condition'"]),
    "mapping choice": ({"booster": {"type": "categorical", "choices": [{"a": 1}, "dart"]}}, ["'booster'", "choice"]),
    "list choice": ({"booster": {"type": "categorical", "choices": [["gbtree"], "dart"]}}, ["'booster'", "choice"]),
    "low > high": ({"max_depth": {"type": "int", "low": 10, "high": 3}}, ["'max_depth'", "low <= high"]),
    "log with step": ({"eta": {"type": "float", "low": 0.1, "high": 0.3, "log": True, "step": 0.1}}, ["'eta'", "step"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_space_names_the_parameter(case: str, tmp_path: Path) -> None:
    definition, expected = BAD[case]
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(definition))
    with pytest.raises(TuneflowError) as err:
        load_space(str(path))
    message = f"{err.value.problem} {err.value.fix}"
    assert str(path) in err.value.problem
    for part in expected:
        assert part in message, (case, message)


def test_forbidden_by() -> None:
    space = check_space(GOOD)
    assert space.forbidden_by({"booster": "gbtree", "grow_policy": "depthwise", "max_depth": 0}) == "grow_policy = 'depthwise' and max_depth = 0"
    assert space.forbidden_by({"booster": "gbtree", "grow_policy": "lossguide", "max_leaves": 20, "max_depth": 0}) is None
    assert space.forbidden_by({"grow_policy": "lossguide", "max_depth": 6}) == "max_depth in [5, 6]"
    assert space.forbidden_by({"grow_policy": "depthwise"}) is None  # an absent parameter matches no clause
    assert check_space({"a": {"type": "categorical", "choices": [1, 2]}}).forbidden_by({"a": 1}) is None


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_conditional_sampling_with_tpe() -> None:
    space = check_space(GOOD)
    study = optuna.create_study(sampler=TPESampler(seed=0, multivariate=True, group=True))
    seen = set()
    for _ in range(30):
        trial = study.ask()
        params = space.suggest(trial)
        assert ("rate_drop" in params) == (params["booster"] == "dart")
        assert ("max_leaves" in params) == (params["grow_policy"] == "lossguide")
        assert set(trial.params) == set(params) - {"max_bin"} and params["max_bin"] == 256
        seen.add((params["booster"], params["grow_policy"]))
        if space.forbidden_by(params):
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            continue
        study.tell(trial, params["eta"] + params.get("rate_drop", 0.0) + params.get("max_leaves", 0) / 100)
    assert len(seen) == 4


def test_grid() -> None:
    space = check_space({"a": {"type": "categorical", "choices": ["x", "y"]}, "n": {"type": "int", "low": 2, "high": 8, "step": 3},
                         "f": {"type": "float", "low": 0.1, "high": 0.35, "step": 0.1}, "fixed": 1})
    assert space.grid() == {"a": ["x", "y"], "n": [2, 5, 8], "f": [0.1, 0.2, 0.3]}
    with pytest.raises(TuneflowError, match="'rate_drop'") as err:
        check_space(GOOD).grid()
    assert "give it a step, or use another --sampler" in err.value.fix


def test_configurations_follow_conditions() -> None:
    space = check_space({"parameters": {"b": PARAMS["booster"], "c": {"type": "categorical", "choices": [1, 2, 3]}},
                         "conditions": [{"child": "c", "parent": "b", "type": "EQ", "value": "dart"}]})
    assert list(space.configurations()) == [{"b": "gbtree"}, {"b": "dart", "c": 1}, {"b": "dart", "c": 2}, {"b": "dart", "c": 3}]


def test_shipped_example_trains_with_xgboost() -> None:
    space = load_space(str(EXAMPLE))
    assert space.conditional and space.forbidden
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 6))
    dtrain = xgb.DMatrix(x, label=(x[:, 0] + rng.normal(size=200) > 0).astype(int))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    trained = 0
    while trained < 5:
        trial = study.ask()
        params = space.suggest(trial)
        if space.forbidden_by(params):
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            continue
        booster = xgb.train({**params, "objective": "binary:logistic", "tree_method": "hist", "verbosity": 0, "nthread": 1}, dtrain, 5)
        assert booster.num_boosted_rounds() == 5
        study.tell(trial, 0.0)
        trained += 1
