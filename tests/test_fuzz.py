"""Fuzzing (issue 11, item 5): generated space, expectations and enqueue files (random YAML/JSON
structures, near-valid ones and random bytes), the CLI's numeric options and CSV contents.

Every case either works or is refused with one single-line TuneflowError (through the CLI: exit 2
and one `error:` line); never another exception, a traceback, a dataset version of data that failed
validation, or a model. The parsing layers are tested in-process (fast); a few generated cases go
through the real `tuneflow` command: refusals at plan time, and full runs on small CSVs that
register a model only when validation passed.

Profiles: the default tests run a fixed number of derandomized examples (the same ones on every CI
run, no example database); their `slow`-marked twins run many more, from a fresh seed each time:

    .venv/bin/pytest -m slow tests/test_fuzz.py -p no:cacheprovider      # add --hypothesis-seed=N to replay one
    HYPOTHESIS_PROFILE=long .venv/bin/pytest tests/test_fuzz.py         # the default tests at the long counts
"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import json
import math
import os
import sys
import tempfile
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dask
import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, event, example, given, note, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from tasks.errors import DataValidationError, TuneflowError
from tests.conftest import REPO, make_csv, run_cli

# ----------------------------------------------------------------------------- profiles

if not os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):  # its caches out of the repository (and no example database: database=None)
    set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "tuneflow-hypothesis")
_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much, HealthCheck.large_base_example]
settings.register_profile("tuneflow-ci", deadline=None, derandomize=True, database=None, print_blob=True, suppress_health_check=_QUIET)
settings.register_profile("tuneflow-long", deadline=None, database=None, print_blob=True, suppress_health_check=_QUIET)
LONG = os.environ.get("HYPOTHESIS_PROFILE") == "long"


def fuzz(ci: int, long: int) -> settings:
    """The default tests: `ci` derandomized examples (`long` random ones under HYPOTHESIS_PROFILE=long)."""
    if LONG:
        return settings(settings.get_profile("tuneflow-long"), max_examples=long)
    return settings(settings.get_profile("tuneflow-ci"), max_examples=ci)


def fuzz_long(n: int) -> settings:
    """The slow twins: `n` examples from a fresh random seed."""
    return settings(settings.get_profile("tuneflow-long"), max_examples=n)


# ----------------------------------------------------------------------------- generic structures

NAMES = ["learning_rate", "max_depth", "max_bin", "booster", "rate_drop", "grow_policy", "max_leaves", "subsample"]
KEYWORDS = [
    "type", "low", "high", "log", "step", "choices", "parameters", "conditions", "forbiddens", "child", "parent", "value", "values",
    "name", "clauses", "min_rows", "columns", "expectations", "kwargs", "min", "max", "allowed", "not_null", "kind", "missing_values",
]
WORDS = [
    "", " ", "nan", "NaN", "inf", "-inf", "1e309", "0x1F", "1_000", "yes", "null", "~", "EQ", "NEQ", "IN", "AND", "OR", "EQUALS",
    "float", "int", "categorical", "gbtree", "dart", "lossguide", "numeric", "\n", "a\nb", "'", '"', "{", "*a", "&a", "!!str", "é",
    "\u202e", "\x00", "\t", "${HOME}", "__label__",
]
TEXTS = st.text(max_size=10) | st.sampled_from(WORDS)
SPECIAL = [0, 1, -1, 3, 10, 0.5, 1e-300, 5e-324, 1e308, -1e308, math.nan, math.inf, -math.inf, 2**31, 2**53 + 1, 2**63, 10**18, -(10**30), 10**400]
NUMBERS = st.integers() | st.sampled_from(SPECIAL) | st.floats()
SCALARS = st.none() | st.booleans() | NUMBERS | TEXTS | st.dates()
KEYS = st.sampled_from(NAMES + KEYWORDS) | SCALARS
ANY = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4), max_leaves=12)

# Files no generated structure dumps to: deep nesting, aliases, tags, several documents, odd encodings.
_LAUGHS = b"a: &a [x, x, x, x, x, x, x, x, x, x]\n" + b"".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n".encode() for i in range(6)
)
NASTY = [
    b"", b"\n", b"~\n", b"---\n", b"[", b"[" * 5000, b"- " * 3000 + b"x", b"{a: " * 3000, b'{"a": ' * 3000, b"[" * 100_000,
    b"a: &a [*a]\n", b"*nope\n", b"!!python/object/apply:os.system ['true']\n", b"a: !!binary YWJj\n", b"a: !!set {x, y}\n",
    b"a: 2020-01-01\n", b"a: 2020-01-01T10:00:00Z\n", b"? [a, b]\n: 1\n", b"%YAML 9.9\n---\na: 1\n", b"--- 1\n--- 2\n",
    b"a: 1\na: 2\n", b"\tmax_depth: 1\n", b"\x00\x01\x02", b"\xff\xfe\x00\x00", b"\xef\xbb\xbfmax_depth: {type: int, low: 1, high: 3}\n",
    "max_depth: {type: int, low: 1, high: 3}\n".encode("utf-16"), "max_depth: 3\nnom: é\n".encode("latin-1"),
    b"NaN", b"[NaN, Infinity, -Infinity]", b'{"max_depth": 1e999}', b"12345678901234567890" * 300, _LAUGHS,
]


def _yaml(obj: Any) -> bytes:
    return yaml.safe_dump(obj, sort_keys=False, allow_unicode=True).encode()


def _json(obj: Any) -> bytes:
    return json.dumps(obj, default=str, skipkeys=True).encode()


def _splice(parts: tuple[bytes, int, bytes]) -> bytes:
    text, at, junk = parts
    at = min(at, len(text))
    return text[:at] + junk + text[at + len(junk):]


def file_contents(doc: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    """A structure's YAML or JSON text, damaged or re-encoded at times; random bytes and text; NASTY files."""
    return st.one_of(
        doc.map(_yaml),
        doc.map(_json),
        doc.map(_yaml),
        doc.map(_json),
        st.tuples(doc.map(_yaml) | doc.map(_json), st.integers(0, 300), st.binary(min_size=1, max_size=4)).map(_splice),
        doc.map(lambda d: _yaml(d).decode().encode("utf-16")),
        doc.map(lambda d: b"\xef\xbb\xbf" + _yaml(d)),
        st.binary(max_size=300),
        st.text(max_size=200).map(str.encode),
        st.sampled_from(NASTY),
    )


SUFFIXES = st.sampled_from([".yaml", ".yml", ".json", ".txt", ""])
_counter = itertools.count()


def write_case(folder: Path, content: bytes, suffix: str) -> str:
    path = folder / f"case-{next(_counter)}{suffix}"
    path.write_bytes(content)
    return str(path)


def refused_cleanly(exc: BaseException) -> None:
    """A refusal is a TuneflowError naming its fix, which the CLI prints as one `error:` line."""
    from flows.cli import error_line

    assert isinstance(exc, TuneflowError), f"{type(exc).__name__}: {exc}"
    text = str(exc)
    assert len(error_line(text).splitlines()) == 1, f"the error is not one line: {text!r}"
    assert " Fix: " in text and exc.problem.strip() and exc.fix.strip(), text


def returns_or_refuses(call: Callable[[], Any]) -> Any:
    """The call's result, or None when it raised a clean TuneflowError; any other exception fails the test."""
    try:
        result = call()
    except TuneflowError as exc:
        refused_cleanly(exc)
        _event("refused")
        return None
    _event("returned")
    return result


def _event(name: str) -> None:
    from hypothesis.control import currently_in_test_context

    if currently_in_test_context():  # the helpers also serve plain tests
        event(name)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


# ----------------------------------------------------------------------------- the space file

PARAM = st.sampled_from(NAMES) | TEXTS
BOUND = st.integers(-3, 300) | st.floats(-1, 2) | st.sampled_from(SPECIAL) | NUMBERS | SCALARS
SPEC = st.fixed_dictionaries(
    {"type": st.sampled_from(["float", "int", "categorical"]) | SCALARS},
    optional={"low": BOUND, "high": BOUND, "log": st.booleans() | SCALARS, "step": BOUND,
              "choices": st.lists(SCALARS | ANY, max_size=4) | ANY, "extra": ANY},
)
_COND = st.fixed_dictionaries(
    {"child": PARAM, "parent": PARAM, "type": st.sampled_from(["EQ", "NEQ", "IN"]) | SCALARS},
    optional={"value": SCALARS, "values": st.lists(SCALARS, max_size=3) | ANY, "extra": ANY},
)
CONDITION = _COND | st.fixed_dictionaries({"child": PARAM, "type": st.just("AND"), "conditions": st.lists(_COND | ANY, max_size=3)}) | ANY
_CLAUSE = st.fixed_dictionaries(
    {"name": PARAM, "type": st.sampled_from(["EQUALS", "IN"]) | SCALARS},
    optional={"value": SCALARS, "values": st.lists(SCALARS, max_size=3) | ANY},
)
FORBIDDEN = _CLAUSE | st.fixed_dictionaries({"type": st.just("AND"), "clauses": st.lists(_CLAUSE | ANY, max_size=3)}) | ANY
FLAT = st.dictionaries(PARAM, SPEC | SCALARS | ANY, max_size=5)
SECTIONED = st.fixed_dictionaries(
    {"parameters": FLAT}, optional={"conditions": st.lists(CONDITION, max_size=4) | ANY, "forbiddens": st.lists(FORBIDDEN, max_size=3) | ANY, "extra": ANY},
)
# Near-valid spaces: valid entries, one value swapped for a special one at times, conditions and
# forbiddens over the space's own names (and one that is not there).
CHOICE_VALUES = st.sampled_from(["gbtree", "dart", "depthwise", 128, 256, 0, 1, 2, 3, True, False, 0.5, 1.0, "x"])
VALID_SPEC = st.one_of(
    st.fixed_dictionaries({"type": st.just("float"), "low": st.floats(0.001, 1), "high": st.floats(1, 10)},
                          optional={"log": st.booleans(), "step": st.sampled_from([0.1, 0.25, 0.5, 1e-7, 3])}),
    st.fixed_dictionaries({"type": st.just("int"), "low": st.integers(0, 5), "high": st.integers(5, 20)},
                          optional={"log": st.booleans(), "step": st.integers(1, 3)}),
    st.fixed_dictionaries({"type": st.just("categorical"), "choices": st.lists(CHOICE_VALUES, min_size=1, max_size=4)}),
    st.sampled_from([0.8, 6, "hist", True]),
)
MUTATED_SPEC = st.tuples(VALID_SPEC, st.sampled_from(["low", "high", "step", "log", "choices", "type"]), BOUND | ANY).map(
    lambda t: {**t[0], t[1]: t[2]} if isinstance(t[0], dict) else t[2]
)


@st.composite
def near_spaces(draw: st.DrawFn) -> Any:
    params = draw(st.dictionaries(st.sampled_from(NAMES), st.one_of(VALID_SPEC, VALID_SPEC, MUTATED_SPEC), min_size=1, max_size=5))
    names = st.sampled_from([*params, "nope"])
    values = CHOICE_VALUES | BOUND
    conditions = draw(st.lists(st.fixed_dictionaries(
        {"child": names, "parent": names, "type": st.sampled_from(["EQ", "NEQ", "IN"])},
        optional={"value": values, "values": st.lists(values, min_size=1, max_size=3)}), max_size=3))
    clause = st.fixed_dictionaries({"name": names, "type": st.sampled_from(["EQUALS", "IN"])},
                                   optional={"value": values, "values": st.lists(values, min_size=1, max_size=3)})
    forbiddens = draw(st.lists(clause | st.fixed_dictionaries({"type": st.just("AND"), "clauses": st.lists(clause, min_size=1, max_size=3)}), max_size=2))
    if not conditions and not forbiddens and draw(st.booleans()):
        return params
    return {"parameters": params, "conditions": conditions, "forbiddens": forbiddens}


SPACES = st.one_of(near_spaces(), near_spaces(), near_spaces(), FLAT, SECTIONED, ANY)


def check_loaded_space(space: Any) -> None:
    """What the CLI and the flow do with a space that loaded: pick each sampler, build it, ask and
    sample a configuration, hash the space into a study name."""
    import optuna

    from tasks.contracts import Sampler
    from tasks.tuning.samplers import build_sampler, choose_sampler

    json.dumps(space.to_json(), sort_keys=True, default=str)  # the study name hashes it
    for name in Sampler:
        if name == Sampler.GP:
            continue  # needs torch, not in the test extra
        choice = returns_or_refuses(lambda: choose_sampler(name.value, space, 20, 1))
        if choice is None or choice.name == Sampler.GP:
            continue
        study = optuna.create_study(sampler=build_sampler(choice, space, 0))
        trial = study.ask()
        params = space.with_fixed(space.suggest(trial))
        space.forbidden_by(params)


# Found by this test (each crashed with another exception, hung, or gave a multi-line error):
SPACE_REGRESSIONS = [
    (b"\xff\xfe{\x00}\x00\n\x00", ".yaml"),  # UTF-16: UnicodeDecodeError
    (b"[" * 5000, ".yaml"),  # RecursionError
    (b'"\\n": {type: float}\n', ".yaml"),  # a name with a newline: a two-line error
    (b"max_depth: {type: int, low: 1, high: .inf}\n", ".yaml"),  # OverflowError
    (b"x: {type: float, low: .nan, high: 3}\n", ".yaml"),  # loaded; ValueError when sampled
    (b"x: {type: float, low: -1.0e+308, high: 1.0e+308}\n", ".yaml"),  # loaded; OverflowError when sampled
    (b"x: {type: float, low: 0, high: 1, step: 1.0e-300}\n", ".yaml"),  # decimal.DivisionImpossible
    (b"a: {type: int, low: 1, high: 5, step: null}\n", ".yaml"),  # TypeError
    (b"a: {type: int, low: 0, high: 10000000000000000000000000}\n", ".yaml"),  # OverflowError when sampled
    (b"parameters: {a: {type: int, low: 0, high: 1000000000000000}, b: {type: categorical, choices: [1, 2]}}\n"
     b"forbiddens: [{name: b, type: EQUALS, value: 1}]\n", ".yaml"),  # listed the whole grid: MemoryError
    (b"a: {type: categorical, choices: [1, true]}\n", ".yaml"),  # Optuna stores true as 1
    (b"a: .nan\n", ".yaml"),  # a NaN fixed value
]


def _with_examples(cases: list[tuple[bytes, str]]) -> Callable[[Any], Any]:
    def decorate(test: Any) -> Any:
        for content, suffix in reversed(cases):
            test = example(content=content, suffix=suffix)(test)
        return test
    return decorate


@fuzz(ci=150, long=5000)
@_with_examples(SPACE_REGRESSIONS)
@given(content=file_contents(SPACES), suffix=SUFFIXES)
def test_space_files(folder: Path, content: bytes, suffix: str) -> None:
    from tasks.tuning.search_space import load_space

    space = returns_or_refuses(lambda: load_space(write_case(folder, content, suffix)))
    if space is not None:
        check_loaded_space(space)


@pytest.mark.slow
@fuzz_long(20_000)
@given(content=file_contents(SPACES), suffix=SUFFIXES)
def test_space_files_long(folder: Path, content: bytes, suffix: str) -> None:
    test_space_files.hypothesis.inner_test(folder, content, suffix)


def test_exponent_numbers_are_numbers_in_yaml_and_json(folder: Path) -> None:
    """YAML 1.1 (PyYAML) reads 1e-3 as text: `low: 1e-3` was refused as not a number."""
    from tasks.tuning.search_space import load_space

    for text, suffix in (("lr: {type: float, low: 1e-3, high: 3E-1, log: true}\n", ".yaml"), ('{"lr": {"type": "float", "low": 1e-3, "high": 3E-1, "log": true}}', ".json")):
        assert load_space(write_case(folder, text.encode(), suffix)).params == {"lr": {"type": "float", "low": 0.001, "high": 0.3, "log": True}}


@pytest.mark.parametrize("text", [
    "max_bin: {type: categorical, choices: [{a: 1}, 2]}\n",
    "parameters:\n  max_bin: {type: categorical, choices: [{a: 1}, 2]}\n",
    "max_bin: {type: categorical, choices: [[1, 2], 2]}\n",
    '{"max_bin": {"type": "categorical", "choices": [{"a": 1}, 2]}}',
])
def test_a_categorical_choice_that_is_a_mapping_is_refused_naming_the_parameter(folder: Path, text: str) -> None:
    from tasks.tuning.search_space import load_space

    with pytest.raises(TuneflowError) as caught:
        load_space(write_case(folder, text.encode(), ".json" if text.startswith("{") else ".yaml"))
    refused_cleanly(caught.value)
    assert "'max_bin'" in str(caught.value) and "not a string, number or boolean" in str(caught.value)


# ----------------------------------------------------------------------------- the enqueue file

CONFIG_VALUE = st.integers(-2, 300) | st.floats(-1, 2) | st.sampled_from([128, 256, "gbtree", "dart"]) | SCALARS | ANY
NEAR_CONFIG = st.dictionaries(
    st.sampled_from(["learning_rate", "max_depth", "subsample", "min_child_weight", "max_bin", "booster", "rate_drop", "grow_policy", "max_leaves"]),
    st.floats(0, 1) | st.integers(0, 300) | st.sampled_from(["gbtree", "dart", "depthwise", "lossguide", 256, True]) | st.sampled_from(SPECIAL),
    min_size=1, max_size=4,
)
CONFIGS = st.one_of(st.lists(NEAR_CONFIG, max_size=4), st.lists(NEAR_CONFIG, max_size=4), st.lists(st.dictionaries(PARAM, CONFIG_VALUE, max_size=4), max_size=4), ANY)
ENQUEUE_SPACES = [None, "data/search_space.yaml", "data/search_space_conditional.yaml"]


@fuzz(ci=150, long=5000)
@given(content=file_contents(CONFIGS), suffix=SUFFIXES, space_file=st.sampled_from(ENQUEUE_SPACES))
def test_enqueue_files(folder: Path, content: bytes, suffix: str, space_file: str | None) -> None:
    """What loads is queued in a journal-backed study (the flow's storage) and asked: the first trial
    takes the configuration; nothing in it may crash Optuna or the space's sampling."""
    import optuna

    from tasks.tuning.search_space import load_configs, load_space
    from tasks.tuning.studies import enqueue_configs

    space = load_space(None if space_file is None else str(REPO / space_file))
    configs = returns_or_refuses(lambda: load_configs(write_case(folder, content, suffix), space))
    if not configs:
        return
    journal = folder / f"journal-{next(_counter)}.log"
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    study = optuna.create_study(storage=storage, sampler=optuna.samplers.RandomSampler(seed=0))
    enqueue_configs(study, configs)
    unique = [c for i, c in enumerate(configs) if c not in configs[:i]]  # a repeated one is not queued again
    for config in unique:
        params = space.suggest(study.ask())
        for name, value in config.items():
            if name in params:
                assert params[name] == value or (isinstance(value, float) and math.isclose(params[name], value)), (name, value, params)


@pytest.mark.slow
@fuzz_long(20_000)
@given(content=file_contents(CONFIGS), suffix=SUFFIXES, space_file=st.sampled_from(ENQUEUE_SPACES))
def test_enqueue_files_long(folder: Path, content: bytes, suffix: str, space_file: str | None) -> None:
    test_enqueue_files.hypothesis.inner_test(folder, content, suffix, space_file)


# ----------------------------------------------------------------------------- the expectations file

CHURN_COLUMNS = ["customer_id", "age", "tenure_months", "monthly_charges", "plan", "region", "churned"]
COLUMN = st.sampled_from(CHURN_COLUMNS) | TEXTS
RULE_VALUES = st.lists(SCALARS, max_size=3) | st.lists(st.sampled_from(["free", "basic", "pro", "north", 1, 0, -999, "n/a"]), min_size=1, max_size=4)
RULES = st.fixed_dictionaries({}, optional={
    "min": BOUND, "max": BOUND, "allowed": RULE_VALUES | ANY, "not_null": st.booleans() | SCALARS,
    "kind": st.sampled_from(["numeric", "categorical"]) | SCALARS, "missing_values": RULE_VALUES | ANY, "extra": ANY,
})
GX_TYPES = st.sampled_from([
    "expect_column_values_to_be_between", "expect_column_values_to_not_be_null", "expect_column_values_to_be_in_set",
    "expect_column_values_to_match_regex", "expect_column_values_to_be_unique", "expect_table_row_count_to_be_between",
    "expect_column_to_exist", "expect_column_mean_to_be_between", "expect_column_pair_values_a_to_be_greater_than_b",
    "expect_column_values_to_be_of_type", "expect_column_value_lengths_to_be_between", "expect_table_columns_to_match_set",
]) | SCALARS
KWARGS = st.fixed_dictionaries({}, optional={
    "column": COLUMN, "min_value": BOUND, "max_value": BOUND, "value_set": RULE_VALUES | ANY, "regex": st.sampled_from(["^a", "([", ".*", "\\", "(?P<"]) | TEXTS,
    "mostly": BOUND, "type_": st.sampled_from(["float64", "int", "str"]) | TEXTS, "column_A": COLUMN, "column_B": COLUMN,
    "column_set": st.lists(COLUMN, max_size=4), "meta": ANY, "extra": ANY,
})
RAW = st.fixed_dictionaries({"type": GX_TYPES}, optional={"kwargs": KWARGS | ANY, "extra": ANY}) | ANY
EXPECTATIONS = st.one_of(
    st.fixed_dictionaries({}, optional={"min_rows": BOUND, "columns": st.dictionaries(COLUMN, RULES, max_size=3), "expectations": st.lists(RAW, max_size=3)}),
    st.fixed_dictionaries({}, optional={"min_rows": BOUND, "columns": st.dictionaries(COLUMN, RULES | ANY, max_size=3) | ANY,
                                        "expectations": st.lists(RAW, max_size=3) | ANY, "extra": ANY}),
    ANY,
)


@pytest.fixture(scope="module")
def small_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = make_csv(tmp_path_factory.mktemp("small") / "churn.csv", 300)
    frame = pd.read_csv(path)
    frame.loc[[3, 7], "plan"] = "n/a"
    frame.to_csv(path, index=False)
    return path


def validate_in_process(plan: Any) -> dict[str, Any] | None:
    """The flow's validation step (a synchronous Dask scheduler): the report, or None when it refused."""
    from tasks.validation import validate_dataset
    from tasks.validation.report import raise_if_failed, report_markdown

    with dask.config.set(scheduler="sync"):
        report = returns_or_refuses(lambda: validate_dataset(None, plan.files, plan.schema, plan.expectations, plan.data_options))
    if report is None:
        return None
    report_markdown(report)
    json.dumps(report, default=str)
    if report["success"]:
        raise_if_failed(report)
    else:
        with pytest.raises(DataValidationError) as caught:
            raise_if_failed(report)
        refused_cleanly(caught.value)
    return report


def plan_in_process(data: str, target: str, *, task: str = "binary", space: str | None = None, expectations: str | None = None, enqueue: str | None = None) -> Any:
    from tasks.plan import plan_run

    return returns_or_refuses(lambda: plan_run(data, target, task, None, space, expectations, 0, None, 2, None, 1, enqueue))


EXPECTATION_REGRESSIONS = [
    (b"min_rows: " + b"1" * 6000 + b"\n", ".yaml"),  # ValueError (int digits limit)
    (b"[" * 100_000, ".json"),  # RecursionError
    (b"[" * 5000, ".yaml"),  # RecursionError
    (b"columns:\n  age: {min: .nan}\n", ".yaml"),  # a NaN bound passed: every row then failed it
    (b'expectations:\n  - {type: "expect\\nx"}\n', ".yaml"),  # a two-line error
    (b'columns:\n  "a\\nb": {not_null: maybe}\n', ".yaml"),  # a two-line error
    (b"columns:\n  age: {min: 1e-3}\n", ".yaml"),  # refused: 1e-3 was read as text
]


@fuzz(ci=80, long=4000)
@_with_examples(EXPECTATION_REGRESSIONS)
@given(content=file_contents(EXPECTATIONS), suffix=SUFFIXES)
def test_expectations_files(folder: Path, small_csv: Path, content: bytes, suffix: str) -> None:
    """Loaded, planned against a small churn CSV and validated: a report (passed or failed) or one clean refusal."""
    from tasks.validation import load_expectations

    path = write_case(folder, content, suffix)
    if returns_or_refuses(lambda: load_expectations(path)) is None:
        return
    plan = plan_in_process(str(small_csv), "churned", expectations=path)
    if plan is not None:
        validate_in_process(plan)


@pytest.mark.slow
@fuzz_long(20_000)
@given(content=file_contents(EXPECTATIONS), suffix=SUFFIXES)
def test_expectations_files_long(folder: Path, small_csv: Path, content: bytes, suffix: str) -> None:
    test_expectations_files.hypothesis.inner_test(folder, small_csv, content, suffix)


# ----------------------------------------------------------------------------- CSV contents

HEADER_NAMES = st.sampled_from(["a", "b", "c", "x1", "", " y", "y ", "é", "1", "nan", "__x__", "__label__", "a.1", "Unnamed: 0", "y"]) | st.text(max_size=6)
JUNK_CELLS = [
    "", "nan", "NaN", "inf", "-inf", "Infinity", "n/a", "NULL", "True", "false", "1e309", "0x10", " 1", "1,5", '"', "a\nb", "\x00", "é",
    "\ufeff", "x" * 200_000, "-999", "1_000", "٣", "¼",
]
CELL = st.one_of(st.integers(-10, 10).map(str), st.floats().map(repr), st.sampled_from(JUNK_CELLS), st.text(max_size=5))
ENCODINGS = ["utf-8", "utf-8", "utf-8", "utf-8-sig", "utf-16", "latin-1", "cp1252"]


def _csv_text(header: list[str], rows: list[list[str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


@st.composite
def csv_cases(draw: st.DrawFn) -> tuple[bytes, str, str, str]:
    """(content, suffix, target, task): a small clean table (numbers, a category, a 0/1 or 3-class
    target) with some of: junk cells, a duplicate or reserved or odd header, ragged or cut rows, a
    BOM, another encoding, gzip, many columns; or random bytes, or a header alone."""
    task = draw(st.sampled_from(["binary", "binary", "multiclass", "regression"]))
    kind = draw(st.sampled_from(["table", "table", "table", "table", "bytes", "header", "wide"]))
    if kind == "bytes":
        return draw(st.binary(max_size=400)), ".csv", draw(st.sampled_from(["y", "a", ""])), task
    n_rows = draw(st.integers(0 if kind == "header" else 1, 60))
    n_cols = 150 if kind == "wide" else draw(st.integers(1, 5))
    header = [f"f{i}" for i in range(n_cols)] + ["cat", "y"]
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    classes = 3 if task == "multiclass" else 2
    rows = [[f"{v:.4g}" for v in rng.normal(size=n_cols)] + [str(rng.choice(["u", "v", "w"])), str(rng.integers(0, classes))] for _ in range(n_rows)]
    if task == "regression":
        for row in rows:
            row[-1] = f"{rng.normal():.4g}"
    target = "y"
    for _ in range(draw(st.integers(0, 4))):  # damage
        damage = draw(st.sampled_from(["cell", "cell", "header", "rename", "ragged", "short", "target"]))
        if damage == "cell" and rows:
            row = rows[draw(st.integers(0, len(rows) - 1))]
            if row:
                row[draw(st.integers(0, len(row) - 1))] = draw(CELL)
        elif damage == "header":
            header[draw(st.integers(0, len(header) - 1))] = draw(HEADER_NAMES)
        elif damage == "rename":
            header[draw(st.integers(0, len(header) - 2))] = header[draw(st.integers(0, len(header) - 1))]  # a duplicate
        elif damage == "ragged" and rows:
            rows[draw(st.integers(0, len(rows) - 1))].append(draw(CELL))
        elif damage == "short" and rows:
            row = rows[draw(st.integers(0, len(rows) - 1))]
            if row:
                row.pop()
        elif damage == "target":
            target = draw(HEADER_NAMES)
    text = "" if kind == "header" and draw(st.booleans()) and not rows else _csv_text(header, rows)
    if draw(st.integers(0, 9)) == 0:
        text = text[: draw(st.integers(0, len(text)))]  # cut anywhere
    encoding = draw(st.sampled_from(ENCODINGS))
    content = text.encode(encoding, errors="replace")
    if draw(st.integers(0, 9)) == 0:
        return gzip.compress(content), ".csv.gz", target, task
    return content, ".csv", target, task


def shard_in_process(plan: Any, report: dict[str, Any], store: Path) -> None:
    """The shard step after a passed validation: a dataset version with its manifest, or one clean
    refusal that leaves no manifest (so no dataset version) behind."""
    from tasks.data import inputs, shard

    try:
        with dask.config.set(scheduler="sync"):
            manifest = shard.shard_dataset(
                inputs.read_dataset(plan.files, plan.schema, plan.data_options), plan.files, plan.schema, report["profile"], store=str(store),
                name=plan.name, fp=plan.fingerprint, seed=0, fractions=shard.DEFAULT_FRACTIONS, row_key=None, storage_options={},
            )
    except TuneflowError as exc:
        refused_cleanly(exc)
        assert not list(store.rglob("_manifest.json")), "a refused shard step left a dataset version"
        return
    assert list(store.rglob("_manifest.json")) and sum(s["rows"] for s in manifest["splits"].values()) > 0
    for part in store.rglob("*.parquet"):  # what validation let through trains: no infinity in the float32 shards
        numbers = pd.read_parquet(part).select_dtypes("number").to_numpy(dtype="float64")
        assert not np.isinf(numbers).any(), part


@fuzz(ci=40, long=3000)
@example(case=(b"a,y\n1,0\n1e300,1\n2,0\n3,1\n", ".csv", "y", "binary"))  # passed validation, then inf in the float32 shards
@example(case=(b"a,y\n1,0\n2,1\n", ".csv", "\r", "binary"))  # a --target with a line break: a two-line error
@given(case=csv_cases())
def test_csv_contents(folder: Path, case: tuple[bytes, str, str, str]) -> None:
    """Planned, validated and (when validation passed) sharded in-process: each step works or
    refuses cleanly, and only data that passed validation becomes a dataset version."""
    content, suffix, target, task = case
    path = write_case(folder, content, suffix)
    plan = plan_in_process(path, target, task=task)
    if plan is None:
        return
    report = validate_in_process(plan)
    store = folder / f"store-{next(_counter)}"
    if report is not None and report["success"]:
        shard_in_process(plan, report, store)
    assert report is not None and report["success"] or not store.exists()


@pytest.mark.slow
@fuzz_long(10_000)
@given(case=csv_cases())
def test_csv_contents_long(folder: Path, case: tuple[bytes, str, str, str]) -> None:
    test_csv_contents.hypothesis.inner_test(folder, case)


# ----------------------------------------------------------------------------- the CLI's numeric options

NUMERIC_OPTIONS = ["--n-trials", "--parallelism", "--timeout", "--max-rounds", "--stop-at", "--patience", "--max-cost", "--sample",
                   "--seed", "--min-delta", "--early-stopping-rounds", "--population"]
OPTION_TEXTS = [
    "nan", "NaN", "inf", "-inf", "1e309", "-1e309", "-0", "0", "1", "2", "5", "0.5", "-1", "-0.5", "10%", "100%", "0%", "1e3", "1E-3",
    "١٢", "+3", " 4", "1_000", "0x10", "", " ", "9" * 40, "-" + "9" * 40, "2147483648", "4294967295", "1.0", "true", "1,5", "0.1%",
]
OPTION_VALUE = st.one_of(st.sampled_from(OPTION_TEXTS), st.integers().map(str), st.integers(-3, 50).map(str), st.floats().map(repr), st.text(max_size=6))
OPTION_ARGS = st.lists(st.tuples(st.sampled_from(NUMERIC_OPTIONS), OPTION_VALUE), min_size=1, max_size=3)


class _Reached(Exception):
    """Raised where `tuneflow run` leaves its checks for the flow: the options were accepted."""

    def __init__(self, values: dict[str, Any]) -> None:
        super().__init__("the checks passed")
        self.values = values


@pytest.fixture(scope="module")
def cli_in_process(tmp_path_factory: pytest.TempPathFactory):
    """`tuneflow run` in this process (typer's CliRunner) up to the end of its checks: the flow module
    is a stand-in that stops the command there, with the checked values, before Prefect starts."""
    from typer.testing import CliRunner

    from flows.cli import app

    def stop_here(name: str) -> Any:
        if name != "tune_xgboost":
            raise AttributeError(name)
        raise _Reached(dict(sys._getframe(1).f_locals))  # the run command's frame: `from flows.tune_xgboost import tune_xgboost`

    def no_server() -> None:
        raise _Reached(dict(sys._getframe(1).f_locals))

    import flows.cli

    fake = types.ModuleType("flows.tune_xgboost")
    fake.__getattr__ = stop_here
    saved = sys.modules.get("flows.tune_xgboost")
    sys.modules["flows.tune_xgboost"] = fake
    server = getattr(flows.cli, "_start_temporary_prefect_server", None)
    if server is not None:  # whichever comes first after the checks stops the command
        flows.cli._start_temporary_prefect_server = no_server
    home = tmp_path_factory.mktemp("cli-home")
    runner = CliRunner()
    try:
        yield lambda *args: runner.invoke(app, ["run", *args], env={"TUNEFLOW_HOME": str(home)}, catch_exceptions=True, prog_name="tuneflow")
    finally:
        if server is not None:
            flows.cli._start_temporary_prefect_server = server
        if saved is None:
            sys.modules.pop("flows.tune_xgboost", None)
        else:
            sys.modules["flows.tune_xgboost"] = saved


def one_error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in output, output[-3000:]
    return lines[0]


def check_accepted(values: dict[str, Any]) -> None:
    """What the checks let through is usable by the flow: finite numbers where they count, a seed
    Optuna's samplers take, and the sampler the run will build."""
    import optuna

    from tasks.tuning.samplers import build_sampler

    assert values["timeout"] is None or values["timeout"] > 0, values["timeout"]  # not NaN
    assert values["n_trials"] is None or values["n_trials"] >= 1
    for name in ("stop_at", "max_cost", "min_delta"):
        assert values[name] is None or math.isfinite(values[name]), (name, values[name])
    assert values["parallelism"] >= 1 and values["max_rounds"] >= 1
    plan, tuning = values["plan"], values["tuning"]
    study = optuna.create_study(sampler=build_sampler(tuning.sampler, plan.space, values["seed"]))
    plan.space.suggest(study.ask())


@fuzz(ci=100, long=4000)
@example(args=[("--seed", "-1")])  # passed the checks, then Optuna refused the seed after sharding (a traceback)
@example(args=[("--timeout", "nan")])  # a NaN timeout passed: the run never timed out
@example(args=[("--n-trials", "abc")])  # click's usage box: exit 2 but no `error:` line
@given(args=OPTION_ARGS)
def test_numeric_options(cli_in_process, small_csv: Path, args: list[tuple[str, str]]) -> None:
    result = cli_in_process("--data", str(small_csv), "--target", "churned", *itertools.chain.from_iterable(args))
    if isinstance(result.exception, _Reached):
        _event("accepted")
        check_accepted(result.exception.values)
        return
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    _event("refused")
    assert result.exit_code == 2, result.output[-3000:]
    one_error_line(result.output)


@pytest.mark.slow
@fuzz_long(20_000)
@given(args=OPTION_ARGS)
def test_numeric_options_long(cli_in_process, small_csv: Path, args: list[tuple[str, str]]) -> None:
    test_numeric_options.hypothesis.inner_test(cli_in_process, small_csv, args)


# ----------------------------------------------------------------------------- through the real CLI


def written(home: Path) -> list[str]:
    """What a refused run must not leave: a dataset version, shards, a model, a study."""
    return [str(p) for pattern in ("_manifest.json", "*.parquet", "*.ubj", "*.journal") for p in home.rglob(pattern)]


def registered_versions(home: Path) -> int:
    import sqlite3

    db = home / "mlflow.db"
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT COUNT(*) FROM model_versions").fetchone()[0]


@st.composite
def plan_time_refusals(draw: st.DrawFn) -> tuple[str, bytes, str]:
    """(what, content, suffix): one bad input: a space, expectations or enqueue file, a CSV, or options."""
    what = draw(st.sampled_from(["--space", "--expectations", "--enqueue", "--data", "options"]))
    if what == "--space":
        return what, draw(file_contents(SPACES)), draw(SUFFIXES)
    if what == "--expectations":
        return what, draw(file_contents(EXPECTATIONS)), draw(SUFFIXES)
    if what == "--enqueue":
        return what, draw(file_contents(CONFIGS)), draw(SUFFIXES)
    if what == "--data":
        content, suffix, _, _ = draw(csv_cases())
        return what, content, suffix
    return what, json.dumps(list(itertools.chain.from_iterable(draw(OPTION_ARGS)))).encode(), ""


@fuzz(ci=3, long=150)
@given(case=plan_time_refusals())
def test_refusals_through_the_cli(cli_in_process, folder: Path, small_csv: Path, case: tuple[str, bytes, str]) -> None:
    """A case the checks refuse in-process is refused by the real command the same way: exit 2, the
    same one `error:` line, no traceback, nothing written (Prefect never starts)."""
    from hypothesis import assume

    what, content, suffix = case
    args = ["--data", str(small_csv), "--target", "churned"]
    if what == "options":
        args += json.loads(content)
    elif what == "--data":
        args = ["--data", write_case(folder, content, suffix), "--target", "y"]
    else:
        args += [what, write_case(folder, content, suffix)]
    in_process = cli_in_process(*args)
    assume(not isinstance(in_process.exception, _Reached))  # an accepted case would start a whole run
    expected = one_error_line(in_process.output)
    home = Path(tempfile.mkdtemp(dir=folder, prefix="home-"))
    proc = run_cli("run", *args, env={"TUNEFLOW_HOME": str(home)}, timeout=120)
    note(proc.stderr[-2000:])
    assert proc.returncode == 2 and one_error_line(proc.stderr) == expected
    assert not written(home)


@pytest.mark.slow
@fuzz_long(150)
@given(case=plan_time_refusals())
def test_refusals_through_the_cli_long(cli_in_process, folder: Path, small_csv: Path, case: tuple[str, bytes, str]) -> None:
    test_refusals_through_the_cli.hypothesis.inner_test(cli_in_process, folder, small_csv, case)


DEFECTS = ["none", "inf", "one_class", "text_in_numbers", "below_min", "null_target"]


@st.composite
def small_datasets(draw: st.DrawFn) -> tuple[pd.DataFrame, str, str | None]:
    """(frame, defect, expectations): a small churn table, clean or with one defect validation must catch."""
    from tasks.data.sample import make_churn

    frame = make_churn(draw(st.integers(300, 600)), draw(st.integers(0, 1000)))
    defect = draw(st.sampled_from(DEFECTS))
    rows = draw(st.lists(st.integers(0, len(frame) - 1), min_size=1, max_size=5, unique=True))
    expectations = None
    if defect == "inf":
        frame.loc[rows, "age"] = draw(st.sampled_from([math.inf, -math.inf]))
    elif defect == "one_class":
        frame["churned"] = draw(st.sampled_from([0, 1]))
    elif defect == "text_in_numbers":
        frame = frame.astype({"tenure_months": object})
        frame.loc[rows, "tenure_months"] = draw(st.sampled_from(["abc", "unknown", "n/a"]))
    elif defect == "below_min":
        frame.loc[rows, "age"] = -draw(st.integers(1, 50))
        expectations = "columns:\n  age: {min: 0, max: 120}\n"
    elif defect == "null_target":
        frame["churned"] = frame["churned"].astype(float)
        frame.loc[rows, "churned"] = math.nan
        expectations = "columns:\n  churned: {not_null: true}\n"
    return frame, defect, expectations


def _inf_frame() -> pd.DataFrame:
    from tasks.data.sample import make_churn

    frame = make_churn(400, 3)
    frame.loc[[5, 50], "monthly_charges"] = math.inf
    return frame


@fuzz(ci=1, long=12)  # one run in CI (~25 s); the refusal after validation through the CLI is also in tests/test_bad_data.py
@given(dataset=small_datasets())
def test_full_runs_register_a_model_only_for_data_that_passed_validation(folder: Path, dataset: tuple[pd.DataFrame, str, str | None]) -> None:
    """`--n-trials 1 --max-rounds 5` on a small CSV: a registered model exactly when validation (run
    here in-process too) passed; otherwise exit 2, one `error:` line, no dataset version, no model."""
    frame, defect, expectations = dataset
    run_dir = Path(tempfile.mkdtemp(dir=folder, prefix="run-"))
    data = run_dir / "churn.csv"
    frame.to_csv(data, index=False)
    args = ["--data", str(data), "--target", "churned", "--n-trials", "1", "--max-rounds", "5", "--parallelism", "1"]
    if expectations:
        (run_dir / "e.yaml").write_text(expectations)
        args += ["--expectations", str(run_dir / "e.yaml")]
    plan = plan_in_process(str(data), "churned", expectations=str(run_dir / "e.yaml") if expectations else None)
    report = validate_in_process(plan) if plan is not None else None
    passed = report is not None and report["success"]
    assert passed == (defect == "none"), (defect, report and [r for r in report["results"] if not r["success"]])
    home = run_dir / "home"
    proc = run_cli("run", *args, env={"TUNEFLOW_HOME": str(home)}, timeout=300)
    note(proc.stderr[-3000:])
    if passed:
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert registered_versions(home) == 1 and list(home.rglob("_manifest.json"))
    else:
        assert proc.returncode == 2, proc.stderr[-3000:]
        assert "Validation failed" in one_error_line(proc.stderr)
        assert registered_versions(home) == 0 and not written(home), written(home)


@pytest.mark.slow
@fuzz_long(12)
@example(dataset=(_inf_frame(), "inf", None))  # besides the generated ones: a run that must stop at validation
@given(dataset=small_datasets())
def test_full_runs_long(folder: Path, dataset: Any) -> None:
    test_full_runs_register_a_model_only_for_data_that_passed_validation.hypothesis.inner_test(folder, dataset)
