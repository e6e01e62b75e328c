"""Bad data through the real CLI (issue 11 items 1, 2, 8, 9, 10): each is refused with one `error:`
line naming the problem and the fix, exit code 2, nothing written and the raw data unchanged; and
Spark-style hive-partitioned Parquet trains with its partition columns as features."""

from __future__ import annotations

import json
import os
from pathlib import Path

import dask
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.data import inputs
from tasks.errors import TuneflowError
from tasks.validation import validate_dataset
from tests.conftest import REPO, make_csv
from tests.test_bad_input import assert_clean_failure, cli, digest, raw_digests


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def churn(rows: int = 3000) -> pd.DataFrame:
    from tasks.data.sample import make_churn

    return make_churn(rows, 7)


def keep(path: Path) -> Path:
    raw_digests[path] = digest(path)
    return path


def no_traceback(proc) -> None:
    """No traceback of the refusal: none at all, or (under load) only distributed's own shutdown
    noise, one that passes through none of tuneflow's code and names no tuneflow error."""
    lines, blocks = proc.stderr.splitlines(), []
    for i, line in enumerate(lines):
        if line.startswith("Traceback (most recent call last):"):
            j = i + 1
            while j < len(lines) and lines[j].startswith(" "):
                j += 1
            blocks.append("\n".join(lines[i : j + 1]))  # the frames and the exception line
    ours = [b for b in blocks if any(mark in b for mark in (f"{REPO}/tasks/", f"{REPO}/flows/", "TuneflowError", "DataValidationError"))]
    assert not ours, ours[0]
    assert "Compute Failed" not in proc.stderr, "a worker task failed (and logged its traceback) on the way to the refusal"


# ----------------------------------------------------------------------------- 1: reserved column names


def test_a_column_named_like_the_internal_label_column_is_refused_at_plan_time(home: Path, tmp_path: Path) -> None:
    df = churn()
    df["__label__"] = 1.0
    raw = tmp_path / "reserved.csv"
    df.to_csv(raw, index=False)
    proc = cli(home, "--data", str(keep(raw)), "--target", "churned")
    assert_clean_failure(proc, home, raw, "'__label__'", "reserved", "rename it")
    no_traceback(proc)
    assert not home.exists() or not list(home.rglob("*.journal")), "refused after the tuning started"


def test_every_dunder_name_and_a_partition_folder_named_so_are_reserved(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("x,__row__,y\n1,2,0\n2,3,1\n")
    with pytest.raises(TuneflowError, match="'__row__'"):
        inputs.infer_schema(inputs.expand_inputs(str(tmp_path / "a.csv")), "y", "binary", {})
    part = tmp_path / "ds" / "__label__=1"
    part.mkdir(parents=True)
    (part / "p.csv").write_text("x,y\n1,0\n2,1\n")
    with pytest.raises(TuneflowError, match="'__label__'"):  # a glob: a folder listing skips _names
        inputs.infer_schema(inputs.expand_inputs(str(tmp_path / "ds" / "*" / "*.csv")), "y", "binary", {})


# ----------------------------------------------------------------------------- 2: infinite values


def test_infinite_values_in_a_csv_fail_validation_with_column_and_count(home: Path, tmp_path: Path) -> None:
    df = churn().astype({"usage_hours": object})
    df.loc[[3, 500, 2900], "usage_hours"] = ["inf", "-inf", "Infinity"]  # pandas reads all three as floats
    raw = tmp_path / "inf.csv"
    df.to_csv(raw, index=False)
    proc = cli(home, "--data", str(keep(raw)), "--target", "churned")
    assert_clean_failure(proc, home, raw, "Validation failed", "expect_column_values_to_be_finite(usage_hours) 3 rows", "infinite values")
    no_traceback(proc)


def test_infinite_floats_in_parquet_fail_validation(home: Path, tmp_path: Path) -> None:
    df = churn()
    df.loc[[10, 20], "monthly_charges"] = [np.inf, -np.inf]
    raw = tmp_path / "inf.parquet"
    df.to_parquet(raw, index=False)
    proc = cli(home, "--data", str(keep(raw)), "--target", "churned")
    assert_clean_failure(proc, home, raw, "expect_column_values_to_be_finite(monthly_charges) 2 rows", '"inf"', '"-inf"')
    no_traceback(proc)


def test_infinite_counts_add_up_over_partitions(tmp_path: Path) -> None:
    folder = tmp_path / "parts"
    folder.mkdir()
    for i in range(2):
        df = churn(400)
        df.loc[[1, 2], "age"] = [np.inf, np.inf]
        df.to_parquet(folder / f"p{i}.parquet", index=False)
    files = inputs.expand_inputs(str(folder))
    schema = inputs.infer_schema(files, "churned", "binary", {})
    with dask.config.set(scheduler="sync"):
        report = validate_dataset(None, files, schema, {}, {})
    rows = [r for r in report["results"] if r["expectation"] == "expect_column_values_to_be_finite"]
    assert not report["success"] and [(r["column"], r["unexpected_count"], r["examples"]) for r in rows] == [("age", 4, ["inf"])]
    assert report["profile"]["numeric_ranges"]["age"][1] < 100  # the range is over the finite values
    json.dumps(report, allow_nan=False)  # no inf left in the report


# ----------------------------------------------------------------------------- 8: a numeric column with a few texts


def numeric_with_text(rows: int = 10_000) -> pd.DataFrame:
    df = churn(rows).astype({"tenure_months": object})
    df.loc[[17, rows * 4 // 5], "tenure_months"] = ["abc", "unknown"]
    return df


def test_a_numeric_column_with_a_few_texts_is_refused_naming_column_count_values_and_fix(home: Path, tmp_path: Path) -> None:
    raw = tmp_path / "mixed.csv"
    numeric_with_text().to_csv(raw, index=False)
    proc = cli(home, "--data", str(keep(raw)), "--target", "churned")
    assert_clean_failure(
        proc, home, raw, "expect_column_values_to_be_of_type(tenure_months) 2 rows", '"abc"', '"unknown"', "missing_values", "kind: categorical",
    )
    no_traceback(proc)
    assert not list(home.rglob("mlflow.db")), "the registry was touched"


def test_mostly_numeric_means_95_percent_of_the_sample(tmp_path: Path) -> None:
    values = [str(v) for v in range(100)]
    for n_text, kind in ((5, "numeric"), (6, "categorical"), (0, "numeric")):
        col = values[: 100 - n_text] + [f"t{i}" for i in range(n_text)]
        path = tmp_path / f"k{n_text}.csv"
        pd.DataFrame({"c": col, "y": [0, 1] * 50}).to_csv(path, index=False)
        schema = inputs.infer_schema(inputs.expand_inputs(str(path)), "y", "binary", {})
        assert schema["columns"]["c"]["kind"] == kind, (n_text, schema)


def test_declared_missing_values_and_kind_are_honoured(tmp_path: Path) -> None:
    raw = tmp_path / "mixed.csv"
    df = numeric_with_text(2000)
    df.loc[5, "tenure_months"] = "-999"
    df.to_csv(raw, index=False)
    files = inputs.expand_inputs(str(raw))
    declared = {"tenure_months": {"missing_values": ["abc", "unknown", "-999"]}}
    schema = inputs.infer_schema(files, "churned", "binary", {}, declared=declared)
    assert schema["columns"]["tenure_months"] == {"kind": "numeric", "missing_values": ["abc", "unknown", "-999"]}
    assert inputs.infer_schema(files, "churned", "binary", {})["columns"]["tenure_months"] == {"kind": "numeric", "text_in_sample": True}
    with dask.config.set(scheduler="sync"):
        report = validate_dataset(None, files, schema, {}, {})
        frame = inputs.read_dataset(files, schema, {}).compute()
    assert report["success"], [r for r in report["results"] if not r["success"]]
    assert frame["tenure_months"].dtype == "float64" and frame["tenure_months"].isna().sum() == df["tenure_months"].isna().sum() + 3
    schema = inputs.infer_schema(files, "churned", "binary", {}, declared={"tenure_months": {"kind": "categorical"}})
    assert schema["columns"]["tenure_months"]["kind"] == "categorical"
    with pytest.raises(TuneflowError, match="for the target"):
        inputs.infer_schema(files, "churned", "binary", {}, declared={"churned": {"kind": "numeric"}})
    with pytest.raises(TuneflowError, match="'tenure_month' is not in the data"):
        inputs.infer_schema(files, "churned", "binary", {}, declared={"tenure_month": {"kind": "categorical"}})


def test_declarations_in_the_expectations_file_are_checked(tmp_path: Path) -> None:
    from tasks.validation import load_expectations

    path = tmp_path / "e.yaml"
    path.write_text("columns:\n  a: {kind: numeric, missing_values: [n/a, -999, '?']}\n")
    assert load_expectations(str(path)) == {"columns": {"a": {"kind": "numeric", "missing_values": ["n/a", "-999", "?"]}}}
    path.write_text("columns:\n  a: {kind: text}\n")
    with pytest.raises(TuneflowError, match="kind must be numeric or categorical"):
        load_expectations(str(path))
    path.write_text("columns:\n  a: {missing_values: []}\n")
    with pytest.raises(TuneflowError, match="missing_values must be a non-empty list"):
        load_expectations(str(path))


# ----------------------------------------------------------------------------- 9: hive-partitioned Parquet


def spark_layout(folder: Path, df: pd.DataFrame, partition_cols: list[str]) -> Path:
    """The layout Spark writes: key=value folders of part files, a _SUCCESS marker, .crc side files."""
    pq.write_to_dataset(pa.Table.from_pandas(df, preserve_index=False), str(folder), partition_cols=partition_cols,
                        basename_template="part-{i}-c000.snappy.parquet")
    (folder / "_SUCCESS").write_text("")
    for part in folder.rglob("part-*.parquet"):
        (part.parent / f".{part.name}.crc").write_bytes(b"crc")
    return folder


def test_hive_partitioned_parquet_trains_with_its_partition_columns(home: Path, tmp_path: Path) -> None:
    """Also: a text column of numbers with a few 'unknown's, declared missing in the expectations file, trains as numeric."""
    df = churn()
    df["cohort"] = np.where(df["customer_id"] % 2 == 0, 2024, 2025)
    df["tenure_months"] = df["tenure_months"].astype(str)
    df.loc[[4, 40], "tenure_months"] = "unknown"
    data = spark_layout(tmp_path / "churn_hive", df, ["region", "cohort"])
    before = {p: digest(p) for p in data.rglob("*") if p.is_file()}
    expectations = tmp_path / "expectations.yaml"
    expectations.write_text("columns:\n  tenure_months: {missing_values: [unknown], min: 0}\n  region: {allowed: [north, south, east, west, central]}\n")
    proc = cli(home, "--data", str(data), "--target", "churned", "--expectations", str(expectations))
    assert proc.returncode == 0, proc.stderr[-4000:]
    [manifest_path] = list(home.rglob("_manifest.json"))
    manifest = json.loads(manifest_path.read_text())
    features = {f["name"]: f for f in manifest["features"]}
    assert features["region"]["kind"] == "categorical" and features["region"]["categories"] == sorted(df["region"].dropna().unique())
    assert features["cohort"]["kind"] == "numeric"
    assert features["tenure_months"] == {"name": "tenure_months", "kind": "numeric", "missing_values": ["unknown"]}
    assert manifest["total_rows"] == len(df)
    assert {p: digest(p) for p in data.rglob("*") if p.is_file()} == before, "the raw data was modified"


def test_hive_partitions_are_columns_in_every_read(tmp_path: Path) -> None:
    df = churn(600)
    df.loc[df.index[:50], "plan"] = None  # a null partition value: __HIVE_DEFAULT_PARTITION__
    data = spark_layout(tmp_path / "ds", df, ["plan"])
    files = inputs.expand_inputs(str(data))
    assert all(f["uri"].endswith(".parquet") for f in files) and len(files) == 5
    assert {f["partitions"]["plan"] for f in files} == {None, "free", "basic", "pro", "enterprise"}
    schema = inputs.infer_schema(files, "churned", "binary", {})
    assert schema["columns"]["plan"] == {"kind": "categorical"}
    with dask.config.set(scheduler="sync"):
        frame = inputs.read_dataset(files, schema, {}).compute()
        report = validate_dataset(None, files, schema, {"columns": {"plan": {"allowed": ["free", "basic", "pro", "enterprise"]}}}, {})
    assert list(frame.columns) == list(schema["columns"]) and frame["plan"].isna().sum() == 50
    assert sorted(frame["plan"].dropna().unique()) == sorted(df["plan"].dropna().unique())
    assert report["success"], [r for r in report["results"] if not r["success"]]
    # the same layout in CSV, and a glob over it
    for value, part in df.groupby(df["plan"].fillna(inputs.HIVE_NULL)):
        folder = tmp_path / "csv" / f"plan={value}"
        folder.mkdir(parents=True)
        part.drop(columns=["plan"]).to_csv(folder / "part-0.csv", index=False)
    for uri in (tmp_path / "csv", tmp_path / "csv" / "*" / "*.csv"):
        files = inputs.expand_inputs(str(uri))
        schema = inputs.infer_schema(files, "churned", "binary", {})
        with dask.config.set(scheduler="sync"):
            frame = inputs.read_dataset(files, schema, {}).compute()
        assert frame["plan"].isna().sum() == 50 and len(frame) == len(df)


def test_files_that_disagree_on_their_partition_folders_are_refused(tmp_path: Path) -> None:
    (tmp_path / "ds" / "a=1").mkdir(parents=True)
    (tmp_path / "ds" / "a=1" / "p.csv").write_text("x,y\n1,0\n")
    (tmp_path / "ds" / "p.csv").write_text("x,y\n1,0\n")
    with pytest.raises(TuneflowError, match="mixes partition layouts"):
        inputs.expand_inputs(str(tmp_path / "ds"))
    (tmp_path / "ds" / "p.csv").unlink()
    (tmp_path / "ds" / "a=1" / "p.csv").write_text("x,a,y\n1,2,0\n")
    with pytest.raises(TuneflowError, match="also a partition folder"):
        inputs.infer_schema(inputs.expand_inputs(str(tmp_path / "ds")), "y", "binary", {})


# ----------------------------------------------------------------------------- 10: symbolic links


def test_a_symlink_to_a_file_outside_the_folder_is_refused(home: Path, tmp_path: Path) -> None:
    folder = tmp_path / "landing"
    inside = keep(make_csv(folder / "part-0.csv", 1500))
    outside = keep(make_csv(tmp_path / "elsewhere" / "secret.csv", 1500, seed=3))
    os.symlink(outside, folder / "part-1.csv")
    proc = cli(home, "--data", str(folder), "--target", "churned")
    assert_clean_failure(proc, home, outside, "part-1.csv", "symbolic link to", str(outside), "outside the folder")
    no_traceback(proc)
    assert digest(inside) == raw_digests[inside]


def test_symlinks_inside_the_folder_are_read_but_never_twice(tmp_path: Path) -> None:
    folder = tmp_path / "landing"
    make_csv(folder / "2026" / "a.csv", 10)
    os.symlink(folder / "2026" / "a.csv", folder / "latest.csv")
    with pytest.raises(TuneflowError, match="read twice"):
        inputs.expand_inputs(str(folder))
    (folder / "latest.csv").unlink()
    (tmp_path / "other").mkdir()
    os.symlink(tmp_path / "other", folder / "linked")
    with pytest.raises(TuneflowError, match="outside the folder given"):
        inputs.expand_inputs(str(folder))
    (folder / "linked").unlink()
    os.symlink(tmp_path / "gone.csv", folder / "gone.csv")
    with pytest.raises(TuneflowError, match="does not exist"):
        inputs.expand_inputs(str(folder))
    (folder / "gone.csv").unlink()
    make_csv(folder / "_staging" / "b.csv", 10)  # hidden (a leading _): listed only through the link
    os.symlink(folder / "_staging" / "b.csv", folder / "c.csv")
    assert [Path(f["uri"]).name for f in inputs.expand_inputs(str(folder))] == ["a.csv", "c.csv"]


def test_the_registered_model_reads_declared_missing_values_as_missing() -> None:
    from tasks.pyfunc_model import encode

    features = [{"name": "a", "kind": "numeric", "missing_values": ["n/a", "-999"]}, {"name": "b", "kind": "categorical", "categories": ["x"], "missing_values": ["?"]}]
    matrix = encode(pd.DataFrame({"a": ["1.5", "n/a", -999.0, 2], "b": ["x", "?", None, "x"]}), features)
    assert np.array_equal(matrix, np.array([[1.5, 0], [np.nan, np.nan], [np.nan, np.nan], [2, 0]], np.float32), equal_nan=True)
