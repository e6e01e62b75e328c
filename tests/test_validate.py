"""tasks.validation against real Great Expectations, real Dask and real files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dask
import pandas as pd
import pytest

from tasks import validation as v
from tasks.data.inputs import expand_inputs, infer_schema, read_dataset
from tasks.data.sample import make_churn
from tasks.errors import DataValidationError, TuneflowError
from tasks.validation import values

ROOT = Path(__file__).resolve().parents[1]
EXPECTATIONS = ROOT / "data" / "expectations.yaml"


@pytest.fixture
def sync_dask():
    with dask.config.set(scheduler="sync"):
        yield


def _write_csvs(folder: Path, frames: list[pd.DataFrame]) -> list[dict[str, Any]]:
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        frame.to_csv(folder / f"part-{i:03d}.csv", index=False)
    return expand_inputs(str(folder))


def _run(files: list[dict[str, Any]], target: str, task: str, expectations: dict | None = None) -> dict[str, Any]:
    schema = infer_schema(files, target, task, {})
    ddf = read_dataset(files, schema, {})
    report = v.validate_dataset(ddf, files, schema, expectations or {}, {})
    json.dumps(report, allow_nan=False)  # plain, strictly JSON-serialisable types only
    return report


def _result(report: dict[str, Any], expectation: str, column: str | None = None) -> dict[str, Any]:
    found = [r for r in report["results"] if r["expectation"] == expectation and r["column"] == column]
    assert len(found) == 1, (expectation, column, report["results"])
    return found[0]


def _small(n: int = 40, offset: int = 0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "age": [20.0 + (i % 50) for i in range(n)],
            "plan": [["free", "basic", "pro"][i % 3] for i in range(n)],
            "score": [i * 0.5 for i in range(n)],
            "label": [i % 2 for i in range(n)],
        },
        index=range(offset, offset + n),
    )


# ------------------------------------------------------------------------------------ clean data


def test_clean_sample_passes_on_a_local_cluster(tmp_path):
    distributed = pytest.importorskip("distributed")
    churn = make_churn(3000)
    files = _write_csvs(tmp_path / "churn", [churn.iloc[:1500], churn.iloc[1500:]])
    expectations = v.load_expectations(str(EXPECTATIONS))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            report = _run(files, "churned", "binary", expectations)
            again = _run(files, "churned", "binary", expectations)
            builds = client.run(lambda: __import__("tasks.validation", fromlist=["x"]).SUITE_BUILDS)

    assert report["success"], v.report_markdown(report)
    assert again == report
    # The suite is built once per worker process (one thread each), not once per partition or call.
    assert builds and all(n <= 1 for n in builds.values()), builds
    assert sum(builds.values()) >= 1
    assert report["rows"] == 3000 and report["files"] == 2 and report["partitions"] == 2
    classes = report["profile"]["classes"]
    assert set(classes) == {"0", "1"}
    assert sum(classes.values()) == 3000
    assert classes == {str(k): int(n) for k, n in churn["churned"].value_counts().items()}
    assert report["profile"]["categories"]["plan"] == sorted(["free", "basic", "pro", "enterprise"])
    assert report["profile"]["categories_truncated"] == []
    assert report["profile"]["nulls"]["region"] == int(churn["region"].isna().sum()) > 0
    low, high = report["profile"]["numeric_ranges"]["customer_id"]
    assert (low, high) == (0.0, 2999.0)
    # Every rule of the example file ran, plus the built-in and global checks.
    names = {(r["expectation"], r["column"]) for r in report["results"]}
    assert ("expect_column_values_to_not_be_null", "churned") in names
    assert ("expect_column_values_to_be_between", "age") in names
    assert ("expect_column_values_to_be_in_set", "plan") in names
    assert ("expect_column_values_to_be_between", "signal_0") in names
    assert ("expect_files_to_share_columns", None) in names
    assert _result(report, "expect_table_row_count_to_be_between")["observed"] == 3000
    v.raise_if_failed(report)  # does not raise
    markdown = v.report_markdown(report)
    assert "# Data validation passed" in markdown
    assert "| expect_column_values_to_be_in_set | plan | yes | 0 |" in markdown


# ------------------------------------------------------------------------------------ bad values


def test_out_of_range_and_not_in_set_values_are_counted_exactly(tmp_path, sync_dask):
    first, second = _small(40), _small(40, offset=40)
    first.loc[[1, 5, 9], "age"] = [5.0, 7.0, 150.0]
    second.loc[[41, 42], "age"] = [5.0, 3.0]
    second.loc[[50, 51, 52, 53], "plan"] = ["gold", "gold", "platinum", "gold"]
    first.loc[[2], "age"] = None  # a null is not "out of range"
    files = _write_csvs(tmp_path / "d", [first, second])
    expectations = {
        "columns": {"age": {"min": 18, "max": 100}, "plan": {"allowed": ["free", "basic", "pro", "enterprise"]}},
    }
    report = _run(files, "label", "binary", expectations)

    assert not report["success"]
    assert report["rows"] == 80 and report["partitions"] == 2
    age = _result(report, "expect_column_values_to_be_between", "age")
    assert not age["success"]
    assert age["unexpected_count"] == 5
    assert set(age["examples"]) == {5.0, 7.0, 150.0, 3.0}
    assert age["kwargs"] == {"column": "age", "min_value": 18, "max_value": 100}
    plan = _result(report, "expect_column_values_to_be_in_set", "plan")
    assert plan["unexpected_count"] == 4
    assert sorted(plan["examples"]) == ["gold", "platinum"]
    assert report["profile"]["categories"]["plan"] == ["basic", "free", "gold", "platinum", "pro"]
    assert report["profile"]["nulls"]["age"] == 1
    assert report["profile"]["numeric_ranges"]["age"] == [3.0, 150.0]
    assert _result(report, "expect_column_values_to_not_be_null", "label")["success"]

    with pytest.raises(DataValidationError) as caught:
        v.raise_if_failed(report)
    problem = caught.value.problem
    assert problem.startswith("Validation failed: ")
    assert "expect_column_values_to_be_between(age) 5 rows, e.g. [" in problem
    assert "expect_column_values_to_be_in_set(plan) 4 rows" in problem
    assert "\n" not in problem
    assert "expectations file" in caught.value.fix
    assert caught.value.report is report
    markdown = v.report_markdown(report)
    assert "# Data validation FAILED" in markdown
    assert "| expect_column_values_to_be_between | age | **no** | 5 |" in markdown


def test_mostly_is_judged_over_the_whole_dataset(tmp_path, sync_dask):
    first, second = _small(50), _small(50, offset=50)
    second.loc[[50, 51, 52, 53, 54], "score"] = -1.0  # 5 bad rows of 100: 50% of one partition, 95% overall
    files = _write_csvs(tmp_path / "d", [first, second])
    raw = [{"type": "expect_column_values_to_be_between", "kwargs": {"column": "score", "min_value": 0, "mostly": 0.9}}]
    report = _run(files, "label", "binary", {"expectations": raw})
    score = _result(report, "expect_column_values_to_be_between", "score")
    assert score["unexpected_count"] == 5 and score["success"]
    assert report["success"]


def test_non_numeric_value_in_a_numeric_column_is_a_failed_type_check(tmp_path, sync_dask):
    clean, dirty = _small(30), _small(30, offset=30)
    dirty["age"] = dirty["age"].astype(object)
    dirty.loc[[33, 40], "age"] = ["unknown", "sixty"]  # ("n/a" would read as a null)
    files = _write_csvs(tmp_path / "d", [clean, dirty])  # the schema is inferred from the clean first file
    schema = infer_schema(files, "label", "binary", {})
    assert schema["columns"]["age"]["kind"] == "numeric"
    report = v.validate_dataset(read_dataset(files, schema, {}), files, schema, {"columns": {"age": {"max": 60}}}, {})
    json.dumps(report, allow_nan=False)

    assert not report["success"]
    typed = _result(report, "expect_column_values_to_be_of_type", "age")
    assert typed["unexpected_count"] == 2
    assert sorted(typed["examples"]) == ["sixty", "unknown"]
    # The rest of the report is still computed, on the numbers that did parse.
    assert report["rows"] == 60
    assert _result(report, "expect_column_values_to_be_between", "age")["success"]
    assert report["profile"]["numeric_ranges"]["age"] == [20.0, 49.0]
    with pytest.raises(DataValidationError, match=r"expect_column_values_to_be_of_type\(age\) 2 rows"):
        v.raise_if_failed(report)


def test_non_numeric_value_found_while_reading_when_no_frame_is_given(tmp_path, sync_dask):
    frame = _small(20).astype({"age": object})
    frame.loc[3, "age"] = "old"
    files = _write_csvs(tmp_path / "d", [frame])
    schema = {
        "target": "label",
        "task": "binary",
        "columns": {"age": {"kind": "numeric"}, "plan": {"kind": "categorical"}, "score": {"kind": "numeric"}, "label": {"kind": "label"}},
    }
    with pytest.raises(ValueError):  # what the flow would get from reading the data itself
        read_dataset(files, schema, {}).compute()
    report = v.validate_dataset(None, files, schema, {}, {})
    typed = _result(report, "expect_column_values_to_be_of_type", "age")
    assert (typed["unexpected_count"], typed["examples"]) == (1, ["old"])
    assert report["rows"] == 20 and not report["success"]


# ------------------------------------------------------------------------------------ global checks


def test_empty_file_fails_clearly(tmp_path, sync_dask):
    folder = tmp_path / "d"
    folder.mkdir()
    # two header-only files: one alone is already refused by schema inference (tasks.data.inputs)
    (folder / "empty-1.csv").write_text("age,plan,label\n")
    (folder / "empty-2.csv").write_text("age,plan,label\n")
    files = expand_inputs(str(folder))
    report = _run(files, "label", "binary")

    assert not report["success"]
    assert report["rows"] == 0
    rows = _result(report, "expect_table_row_count_to_be_between")
    assert not rows["success"] and rows["observed"] == 0
    assert not _result(report, "expect_target_to_have_two_or_more_classes", "label")["success"]
    with pytest.raises(DataValidationError) as caught:
        v.raise_if_failed(report)
    assert "expect_table_row_count_to_be_between 0 rows (need at least 1)" in caught.value.problem


def test_min_rows_from_the_expectations_file(tmp_path, sync_dask):
    files = _write_csvs(tmp_path / "d", [_small(30)])
    report = _run(files, "label", "binary", {"min_rows": 31})
    rows = _result(report, "expect_table_row_count_to_be_between")
    assert not rows["success"] and rows["observed"] == 30 and rows["kwargs"]["min_value"] == 31


def test_one_class_target_fails(tmp_path, sync_dask):
    frame = _small(30)
    frame["label"] = 1
    files = _write_csvs(tmp_path / "d", [frame])
    report = _run(files, "label", "binary")

    assert not report["success"]
    assert report["profile"]["classes"] == {"1": 30}
    classes = _result(report, "expect_target_to_have_two_or_more_classes", "label")
    assert not classes["success"] and classes["observed"] == 1 and classes["examples"] == ["1"]
    with pytest.raises(DataValidationError, match="expect_target_to_have_two_or_more_classes"):
        v.raise_if_failed(report)


def test_binary_target_with_three_classes_fails(tmp_path, sync_dask):
    frame = _small(30)
    frame["label"] = [i % 3 for i in range(30)]
    files = _write_csvs(tmp_path / "d", [frame])
    report = _run(files, "label", "binary")
    assert _result(report, "expect_target_to_have_two_or_more_classes", "label")["success"]
    assert not _result(report, "expect_binary_target_to_have_two_classes", "label")["success"]
    assert report["profile"]["classes"] == {"0": 10, "1": 10, "2": 10}


def test_non_numeric_regression_target_fails(tmp_path, sync_dask):
    frame = _small(30)
    frame["price"] = [str(10.0 + i) for i in range(30)]
    frame.loc[[4, 8, 9], "price"] = ["high", "low", "high"]
    files = _write_csvs(tmp_path / "d", [frame])
    report = _run(files, "price", "regression")

    assert not report["success"]
    target = _result(report, "expect_target_to_be_numeric", "price")
    assert not target["success"]
    assert target["unexpected_count"] == 3
    assert sorted(target["examples"]) == ["high", "low"]
    assert target["observed"] == "text"
    # The three non-numbers are reported once, by the type check, not again as nulls.
    assert _result(report, "expect_column_values_to_not_be_null", "price")["success"]
    assert "classes" not in report["profile"]
    assert report["profile"]["numeric_ranges"]["price"] == [10.0, 39.0]


def test_numeric_regression_target_passes(tmp_path, sync_dask):
    files = _write_csvs(tmp_path / "d", [_small(30)])
    report = _run(files, "score", "regression")
    assert report["success"]
    assert _result(report, "expect_target_to_be_numeric", "score")["success"]
    assert report["profile"]["numeric_ranges"]["score"] == [0.0, 14.5]


def test_second_csv_with_different_columns_is_named(tmp_path, sync_dask):
    first, second = _small(30), _small(20, offset=30)
    second = second.rename(columns={"plan": "tier"})
    second["extra"] = 1
    files = _write_csvs(tmp_path / "d", [first, second])
    report = _run(files, "label", "binary")

    assert not report["success"]
    shared = _result(report, "expect_files_to_share_columns")
    assert not shared["success"] and shared["unexpected_count"] == 1
    (example,) = shared["examples"]
    assert example.startswith(files[1]["uri"]) and "missing columns ['plan']" in example and "'extra'" in example
    assert files[0]["uri"] not in example
    # The matching file is still validated.
    assert report["rows"] == 30 and report["files"] == 2
    with pytest.raises(DataValidationError) as caught:
        v.raise_if_failed(report)
    assert "expect_files_to_share_columns 1 file, e.g. [" in caught.value.problem
    assert files[1]["uri"] in caught.value.problem
    assert "header of the first" in caught.value.fix


def test_columns_in_another_order_are_fine(tmp_path, sync_dask):
    first, second = _small(30), _small(20, offset=30)
    files = _write_csvs(tmp_path / "d", [first, second[["label", "score", "plan", "age"]]])
    report = _run(files, "label", "binary")
    assert report["success"] and report["rows"] == 50


def test_parquet_file_with_a_missing_column_is_named(tmp_path, sync_dask):
    folder = tmp_path / "pq"
    folder.mkdir()
    _small(30).to_parquet(folder / "a.parquet", index=False)
    _small(10, offset=30).drop(columns=["score"]).to_parquet(folder / "b.parquet", index=False)
    files = expand_inputs(str(folder))
    report = _run(files, "label", "binary")
    shared = _result(report, "expect_files_to_share_columns")
    assert not shared["success"]
    assert shared["examples"] == [f"{files[1]['uri']}: missing columns ['score']"]
    assert report["rows"] == 30


def test_categories_are_capped(tmp_path, sync_dask, monkeypatch):
    monkeypatch.setattr(values, "CATEGORY_CAP", 5)  # read by validate_dataset, sent to the workers in the plan
    frame = _small(30)
    frame["plan"] = [f"p{i:02d}" for i in range(30)]
    files = _write_csvs(tmp_path / "d", [frame])
    report = _run(files, "label", "binary")
    assert report["profile"]["categories"]["plan"] == ["p00", "p01", "p02", "p03", "p04"]
    assert report["profile"]["categories_truncated"] == ["plan"]


# ------------------------------------------------------------------------------------ the expectations file


def test_example_expectations_file_loads():
    loaded = v.load_expectations(str(EXPECTATIONS))
    assert loaded["min_rows"] == 1000
    assert loaded["columns"]["age"] == {"min": 18, "max": 100}
    assert loaded["expectations"][0]["type"] == "expect_column_values_to_be_between"
    assert v.load_expectations(None) == {}


def test_json_expectations_file_loads(tmp_path):
    path = tmp_path / "e.json"
    path.write_text(json.dumps({"min_rows": 5, "columns": {"plan": {"allowed": ["free"]}}}))
    assert v.load_expectations(str(path)) == {"min_rows": 5, "columns": {"plan": {"allowed": ["free"]}}}
    assert v.load_expectations(path.as_uri()) == v.load_expectations(str(path))


@pytest.mark.parametrize(
    ("text", "problem", "fix"),
    [
        ("columns:\n  age: {min: 18\n", "is not valid YAML at line", "fix the syntax"),
        ("- just\n- a list\n", "holds a list, not a mapping", "data/expectations.yaml"),
        ("min_row: 5\n", "unknown top-level key 'min_row'", "did you mean 'min_rows'?"),
        ("columns:\n  age: {minimum: 3}\n", "columns.age: unknown rule 'minimum'", "did you mean 'min'?"),
        ("columns:\n  age: {min: ten}\n", "columns.age.min must be a number", "data/expectations.yaml"),
        ("columns:\n  age: {min: 9, max: 3}\n", "min 9 is greater than max 3", "swap them"),
        ("min_rows: -1\n", "min_rows must be a whole number", "data/expectations.yaml"),
    ],
)
def test_malformed_expectations_file(tmp_path, text, problem, fix):
    path = tmp_path / "e.yaml"
    path.write_text(text)
    with pytest.raises(TuneflowError) as caught:
        v.load_expectations(str(path))
    assert problem in caught.value.problem
    assert fix in caught.value.fix


def test_malformed_json_expectations_file(tmp_path):
    path = tmp_path / "e.json"
    path.write_text('{"min_rows": 5,}')
    with pytest.raises(TuneflowError, match="is not valid JSON"):
        v.load_expectations(str(path))


def test_missing_expectations_file(tmp_path):
    with pytest.raises(TuneflowError) as caught:
        v.load_expectations(str(tmp_path / "nope.yaml"))
    assert "does not exist" in caught.value.problem and "nope.yaml" in caught.value.problem
    assert "existing YAML/JSON" in caught.value.fix


def test_unknown_expectation_type(tmp_path):
    path = tmp_path / "e.yaml"
    path.write_text("expectations:\n  - type: expect_column_values_to_be_betwen\n    kwargs: {column: age, min_value: 1}\n")
    with pytest.raises(TuneflowError) as caught:
        v.load_expectations(str(path))
    assert "unknown expectation type 'expect_column_values_to_be_betwen'" in caught.value.problem
    assert "did you mean 'expect_column_values_to_be_between'?" in caught.value.fix


def test_expectation_with_bad_kwargs_or_not_checkable_per_partition(tmp_path):
    path = tmp_path / "e.yaml"
    path.write_text("expectations:\n  - type: expect_column_values_to_be_between\n    kwargs: {column: age, min_valu: 1}\n")
    with pytest.raises(TuneflowError, match="invalid kwargs for expect_column_values_to_be_between.*min_valu"):
        v.load_expectations(str(path))
    path.write_text("expectations:\n  - type: expect_column_mean_to_be_between\n    kwargs: {column: age, min_value: 1}\n")
    with pytest.raises(TuneflowError, match="computed over a whole column"):
        v.load_expectations(str(path))
    path.write_text("expectations:\n  - type: expect_column_values_to_be_unique\n    kwargs: {column: age}\n")
    with pytest.raises(TuneflowError, match="duplicates across partitions"):
        v.load_expectations(str(path))


def test_column_not_in_the_data(tmp_path, sync_dask):
    files = _write_csvs(tmp_path / "d", [_small(10)])
    schema = infer_schema(files, "label", "binary", {})
    ddf = read_dataset(files, schema, {})
    with pytest.raises(TuneflowError) as caught:
        v.validate_dataset(ddf, files, schema, {"columns": {"ages": {"min": 1}}}, {})
    assert "'ages', which is not in the data" in caught.value.problem
    assert "did you mean 'age'?" in caught.value.fix
    raw = [{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "plann"}}]
    with pytest.raises(TuneflowError, match="'plann', which is not in the data"):
        v.validate_dataset(ddf, files, schema, {"expectations": raw}, {})
    with pytest.raises(TuneflowError, match="has min/max but 'plan' is not numeric"):
        v.validate_dataset(ddf, files, schema, {"columns": {"plan": {"min": 1}}}, {})


def test_raw_expectations_run_and_label_allowed_values_match_as_text(tmp_path, sync_dask):
    frame = _small(30)
    frame.loc[[0, 1], "plan"] = ["FREE", "Pro"]
    files = _write_csvs(tmp_path / "d", [frame])
    expectations = {
        "columns": {"label": {"allowed": [0, 1]}},
        "expectations": [
            {"type": "expect_column_values_to_match_regex", "kwargs": {"column": "plan", "regex": "^[a-z]+$"}},
            {"type": "expect_table_columns_to_match_set", "kwargs": {"column_set": ["age", "plan", "score", "label"]}},
        ],
    }
    report = _run(files, "label", "binary", expectations)
    assert _result(report, "expect_column_values_to_be_in_set", "label")["success"]
    regex = _result(report, "expect_column_values_to_match_regex", "plan")
    assert regex["unexpected_count"] == 2 and sorted(regex["examples"]) == ["FREE", "Pro"]
    assert _result(report, "expect_table_columns_to_match_set")["success"]


# ------------------------------------------------------------------------------------ rules evaluated without GX


def _edge_frame() -> pd.DataFrame:
    n = 60
    # GX keeps the first 20 unexpected values: here they are all alike, and new ones come after them.
    number = [-1.0] * 20 + [-2.0, -3.0, -4.0, -5.0, 500.0, 600.0] + [float(i) for i in range(26, n)]
    number[30], number[31], number[32], number[33] = float("nan"), float("inf"), float("-inf"), 200.0
    text = pd.array(["gold"] * 22 + [["free", "basic", "silver", None, "FREE", "1"][i % 6] for i in range(22, n)], dtype="string")
    return pd.DataFrame(
        {"number": number, "whole": list(range(n)), "text": text, "empty": [float("nan")] * n},
        index=range(100, 100 + n),
    )


@pytest.mark.parametrize(
    ("etype", "kwargs"),
    [
        ("expect_column_values_to_be_between", {"column": "number", "min_value": 0, "max_value": 50}),
        ("expect_column_values_to_be_between", {"column": "number", "min_value": -1, "max_value": 59, "strict_min": True, "strict_max": True}),
        ("expect_column_values_to_be_between", {"column": "number", "min_value": 0.5, "mostly": 0.6}),
        ("expect_column_values_to_be_between", {"column": "number", "max_value": 10, "strict_max": True}),
        ("expect_column_values_to_be_between", {"column": "number", "min_value": -1, "strict_min": True}),
        ("expect_column_values_to_be_between", {"column": "number", "min_value": -1, "max_value": 26, "strict_min": True}),
        ("expect_column_values_to_be_between", {"column": "number", "min_value": -5, "max_value": 26, "strict_max": True}),
        ("expect_column_values_to_be_between", {"column": "whole", "min_value": 5, "max_value": 50}),
        ("expect_column_values_to_be_between", {"column": "empty", "min_value": 0}),
        ("expect_column_values_to_be_in_set", {"column": "text", "value_set": ["free", "basic"]}),
        ("expect_column_values_to_be_in_set", {"column": "text", "value_set": ["free", 1, "1"], "mostly": 0.5}),
        ("expect_column_values_to_be_in_set", {"column": "number", "value_set": [1, 2.0, 3.5, -1]}),
        ("expect_column_values_to_be_in_set", {"column": "text", "value_set": []}),
        ("expect_column_values_to_not_be_null", {"column": "text"}),
        ("expect_column_values_to_not_be_null", {"column": "number", "mostly": 0.9}),
        ("expect_column_values_to_not_be_null", {"column": "empty"}),
        ("expect_column_values_to_not_be_null", {"column": "whole"}),
    ],
)
@pytest.mark.parametrize("rows", [slice(None), slice(0, 0), slice(20, 60)])
def test_common_rules_match_great_expectations(etype, kwargs, rows):
    from tasks.validation.catalog import expectation_class, is_map_expectation
    from tasks.validation.gx_suite import GxSuite
    from tasks.validation.records import PlannedExpectation
    from tasks.validation.rules import evaluate, rule_for

    df = _edge_frame().iloc[rows]
    rule = rule_for(etype, kwargs)
    assert rule is not None
    assert is_map_expectation(expectation_class(etype, "test"))  # combined over partitions as a row-level check
    by_gx = GxSuite({0: PlannedExpectation(etype, kwargs, map=True)}).run(df)[0]
    assert evaluate(df, rule, kwargs) == by_gx


def test_rules_leave_other_kwargs_and_dtypes_to_great_expectations():
    from tasks.validation.rules import evaluate, rule_for

    assert rule_for("expect_column_values_to_be_between", {"column": "a", "min_value": 1, "row_condition": "b>1"}) is None
    assert rule_for("expect_column_values_to_be_between", {"column": "a", "min_value": "2020-01-01"}) is None
    assert rule_for("expect_column_values_to_be_between", {"column": "a"}) is None
    assert rule_for("expect_column_values_to_be_between", {"column": "a", "min_value": 3, "max_value": 1}) is None
    assert rule_for("expect_column_values_to_be_in_set", {"column": "a", "value_set": {"$PARAMETER": "x"}}) is None
    assert rule_for("expect_column_values_to_match_regex", {"column": "a", "regex": "x"}) is None
    rule = rule_for("expect_column_values_to_be_between", {"column": "text", "min_value": 1})
    assert evaluate(_edge_frame(), rule, {"column": "text", "min_value": 1}) is None  # strings: GX's own code path
