"""Validate a raw dataset: a Great Expectations suite run per partition on Dask workers, global checks on aggregates.

Great Expectations 1.x has no Dask engine, so each partition is validated with the pandas engine inside
a Dask task; the tasks return small partial results (unexpected counts, example values, row/null counts,
label counts, category sets, numeric ranges) that the driver combines. Properties of the whole dataset
(row count, number of classes, a numeric regression target, one header across files) are checked on
those aggregates. Raw data is only read, never modified.
"""

from __future__ import annotations

import os

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")  # before great_expectations is imported anywhere

import csv
import difflib
import gzip
import io
import json
import math
import threading
from typing import Any

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import yaml

from tasks.dataset import read_dataset
from tasks.errors import DataValidationError, TuneflowError
from tasks.storage import file_format, filesystem

CATEGORY_CAP = 1000  # distinct values kept per categorical column (and per label column)
EXAMPLES = 5  # example values kept per expectation
TOP_KEYS = ("min_rows", "columns", "expectations")
COLUMN_RULES = ("min", "max", "allowed", "not_null")
RAW_KEYS = ("type", "kwargs")
# Row-level expectations whose outcome on the whole column is NOT the sum of their outcomes per partition.
NOT_PER_PARTITION = {
    "expect_column_values_to_be_unique": "duplicates across partitions would be missed",
    "expect_compound_columns_to_be_unique": "duplicates across partitions would be missed",
    "expect_column_value_z_scores_to_be_less_than": "z-scores need the whole column's mean and deviation",
    "expect_column_values_to_not_be_outliers": "outliers need the whole column's distribution",
    "expect_column_values_to_be_increasing": "order across partition boundaries would not be checked",
    "expect_column_values_to_be_decreasing": "order across partition boundaries would not be checked",
}
# Table-level expectations that give the same answer on every partition (they look at the schema only).
SCHEMA_LEVEL = {
    "expect_column_to_exist",
    "expect_column_type_to_be",
    "expect_table_column_count_to_be_between",
    "expect_table_column_count_to_equal",
    "expect_table_columns_to_match_ordered_list",
    "expect_table_columns_to_match_set",
}
COLUMN_KWARGS = ("column", "column_A", "column_B")


# --------------------------------------------------------------------------------------------------
# The expectations file
# --------------------------------------------------------------------------------------------------


def load_expectations(path: str | None) -> dict[str, Any]:
    """Read and check a user expectations file (YAML or JSON, local or any fsspec URI); None gives {}."""
    if path is None:
        return {}
    fix_format = "see data/expectations.yaml for the format (min_rows, columns, expectations)."
    try:
        fs, fpath = filesystem(path)
        if not fs.exists(fpath) or fs.isdir(fpath):
            raise TuneflowError(
                f"Expectations file {path} does not exist.",
                "pass the path or URI of an existing YAML/JSON expectations file, or leave it out to run only "
                "the built-in checks.",
            )
        with fs.open(fpath, "rb") as f:
            text = f.read().decode("utf-8-sig")
    except TuneflowError:
        raise
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise TuneflowError(f"Cannot read expectations file {path}: {_first_line(exc)}.", "check the path and its permissions.") from exc
    try:
        data = json.loads(text) if path.lower().endswith(".json") else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise TuneflowError(f"Expectations file {path} is not valid JSON: {exc}.", f"fix the syntax; {fix_format}") from exc
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        reason = getattr(exc, "problem", None) or _first_line(exc)
        raise TuneflowError(f"Expectations file {path} is not valid YAML{where}: {reason}.", f"fix the syntax; {fix_format}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise TuneflowError(f"Expectations file {path} holds a {type(data).__name__}, not a mapping.", fix_format)
    return _check_expectations(data, path, fix_format)


def _check_expectations(data: dict[str, Any], path: str, fix_format: str) -> dict[str, Any]:
    _reject_unknown(data.keys(), TOP_KEYS, f"{path}: unknown top-level key", fix_format)
    out: dict[str, Any] = {}
    if "min_rows" in data:
        min_rows = data["min_rows"]
        if not _is_int(min_rows) or min_rows < 0:
            raise TuneflowError(f"{path}: min_rows must be a whole number >= 0, not {min_rows!r}.", fix_format)
        out["min_rows"] = int(min_rows)
    columns = data.get("columns") or {}
    if not isinstance(columns, dict):
        raise TuneflowError(f"{path}: 'columns' must map column names to rules, not {type(columns).__name__}.", fix_format)
    out_columns: dict[str, dict[str, Any]] = {}
    for name, rules in columns.items():
        where = f"{path}: columns.{name}"
        if not isinstance(rules, dict):
            raise TuneflowError(f"{where} must be a mapping of rules ({', '.join(COLUMN_RULES)}).", fix_format)
        _reject_unknown(rules.keys(), COLUMN_RULES, f"{where}: unknown rule", fix_format)
        for bound in ("min", "max"):
            if bound in rules and not _is_number(rules[bound]):
                raise TuneflowError(f"{where}.{bound} must be a number, not {rules[bound]!r}.", fix_format)
        if "min" in rules and "max" in rules and rules["min"] > rules["max"]:
            raise TuneflowError(f"{where}: min {rules['min']} is greater than max {rules['max']}.", "swap them.")
        if "allowed" in rules:
            allowed = rules["allowed"]
            if not isinstance(allowed, list) or not allowed or any(isinstance(v, (list, dict)) for v in allowed):
                raise TuneflowError(f"{where}.allowed must be a non-empty list of values.", fix_format)
        if "not_null" in rules and not isinstance(rules["not_null"], bool):
            raise TuneflowError(f"{where}.not_null must be true or false, not {rules['not_null']!r}.", fix_format)
        out_columns[str(name)] = dict(rules)
    if out_columns:
        out["columns"] = out_columns
    raw = data.get("expectations") or []
    if not isinstance(raw, list):
        raise TuneflowError(f"{path}: 'expectations' must be a list of {{type, kwargs}} entries.", fix_format)
    out_raw = []
    for i, entry in enumerate(raw):
        where = f"{path}: expectations[{i}]"
        if not isinstance(entry, dict) or "type" not in entry:
            raise TuneflowError(f"{where} must be a mapping with a 'type' (and optional 'kwargs').", fix_format)
        _reject_unknown(entry.keys(), RAW_KEYS, f"{where}: unknown key", fix_format)
        kwargs = entry.get("kwargs") or {}
        if not isinstance(kwargs, dict):
            raise TuneflowError(f"{where}.kwargs must be a mapping of keyword arguments.", fix_format)
        etype = str(entry["type"])
        _expectation_class(etype, where)
        _build_expectation(etype, kwargs, where)  # checks the kwargs now, not on a worker
        out_raw.append({"type": etype, "kwargs": kwargs})
    if out_raw:
        out["expectations"] = out_raw
    return out


def _reject_unknown(keys: Any, known: tuple[str, ...], what: str, fix: str) -> None:
    for key in keys:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise TuneflowError(f"{what} '{key}' (known: {', '.join(known)}).", f"{hint}{fix}")


def _expectation_class(etype: str, where: str) -> type:
    """The GX class for a snake_case type name, if it can be checked partition by partition."""
    from great_expectations.exceptions import ExpectationNotFoundError
    from great_expectations.expectations import expectation as gx_expectation
    from great_expectations.expectations.registry import get_expectation_impl, list_registered_expectation_implementations

    try:
        cls = get_expectation_impl(etype)
    except ExpectationNotFoundError:
        known = sorted(list_registered_expectation_implementations())
        close = difflib.get_close_matches(etype, known, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise TuneflowError(
            f"{where}: unknown expectation type '{etype}'.",
            f"{hint}use a Great Expectations 1.x expectation name in snake_case, e.g. expect_column_values_to_be_between.",
        ) from None
    if etype in NOT_PER_PARTITION:
        raise TuneflowError(
            f"{where}: {etype} cannot be checked here: the data is validated partition by partition and "
            f"{NOT_PER_PARTITION[etype]}.",
            "remove it from the expectations file.",
        )
    if not (_is_map_expectation(cls, gx_expectation) or etype in SCHEMA_LEVEL):
        raise TuneflowError(
            f"{where}: {etype} is computed over a whole column or table, but the data is validated partition by "
            "partition, so it cannot be checked exactly.",
            "use row-level expectations (expect_column_values_to_...), the columns: rules (min, max, allowed, "
            "not_null) or min_rows instead.",
        )
    return cls


def _is_map_expectation(cls: type, gx_expectation: Any) -> bool:
    bases = (gx_expectation.ColumnMapExpectation, gx_expectation.ColumnPairMapExpectation, gx_expectation.MulticolumnMapExpectation)
    return issubclass(cls, bases)


def _build_expectation(etype: str, kwargs: dict[str, Any], where: str, meta: dict[str, Any] | None = None) -> Any:
    from great_expectations.expectations.registry import get_expectation_impl

    cls = get_expectation_impl(etype)
    try:
        return cls(**{**kwargs, "meta": {**(kwargs.get("meta") or {}), **(meta or {})}})
    except (ValueError, TypeError) as exc:  # pydantic's ValidationError is a ValueError
        detail = "; ".join(line.strip() for line in str(exc).splitlines()[1:] if line.strip()) or _first_line(exc)
        raise TuneflowError(
            f"{where}: invalid kwargs for {etype}: {detail}.",
            f"give the keyword arguments of {cls.__name__} from the Great Expectations 1.x docs.",
        ) from exc


# --------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------


def validate_dataset(
    ddf: dd.DataFrame | None,
    files: list[dict[str, Any]],
    schema: dict[str, Any],
    expectations: dict[str, Any],
    storage_options: dict[str, Any],
) -> dict[str, Any]:
    """Run the suite per partition on Dask and the global checks; return a JSON-ready report."""
    target, task, columns = schema["target"], schema["task"], schema["columns"]
    classification = task in ("binary", "multiclass")
    suite = _suite_spec(schema, expectations)
    numeric = [c for c, info in columns.items() if info["kind"] == "numeric"]
    coerce: list[str] = []
    if task == "regression" and columns[target]["kind"] != "numeric":
        coerce.append(target)  # read as text: count the values that are not numbers
    plan = {
        "key": json.dumps(suite, sort_keys=True, default=str),
        "expectations": suite,
        "numeric": numeric,
        "coerce": coerce,
        "categorical": [c for c, info in columns.items() if info["kind"] == "categorical"],
        "target": target,
        "classification": classification,
    }
    results: list[dict[str, Any]] = []

    # 1. One header across files (read just the header of each file).
    headers = dask.compute(*[dask.delayed(_file_columns)(f["uri"], storage_options) for f in files])
    reference = headers[0]
    mismatches = []
    good_files = []
    for f, header in zip(files, headers):
        problem = _header_problem(header, reference, list(columns))
        if problem:
            mismatches.append(f"{f['uri']}: {problem}")
        else:
            good_files.append(f)
    results.append(
        _result(
            "expect_files_to_share_columns",
            None,
            {"reference": files[0]["uri"], "columns": reference if isinstance(reference, list) else []},
            not mismatches,
            unexpected=len(mismatches),
            examples=mismatches[:EXAMPLES],
            observed=f"{len(files) - len(mismatches)} of {len(files)} files match",
        )
    )
    if mismatches:
        ddf = None  # the given frame spans the odd files, whose reads would fail: validate the others

    # 2. The suite and the partial aggregates, per partition on the workers.
    partials, npartitions, type_results = _run_partitions(ddf, good_files, schema, storage_options, plan, numeric)
    results.extend(type_results)
    totals = _combine(partials, plan)
    results.extend(totals["results"])

    # 3. Global checks on the aggregates.
    rows = totals["rows"]
    min_rows = int(expectations.get("min_rows", 1))
    results.append(
        _result(
            "expect_table_row_count_to_be_between",
            None,
            {"min_value": min_rows, "max_value": None},
            rows >= min_rows and rows > 0,
            observed=rows,
        )
    )
    if classification:
        classes = totals["classes"]
        results.append(
            _result(
                "expect_target_to_have_two_or_more_classes",
                target,
                {"column": target, "min_value": 2},
                len(classes) >= 2,
                examples=sorted(classes)[:EXAMPLES],
                observed=len(classes),
            )
        )
        if task == "binary" and len(classes) > 2:
            results.append(
                _result(
                    "expect_binary_target_to_have_two_classes",
                    target,
                    {"column": target, "value": 2},
                    False,
                    examples=sorted(classes)[:EXAMPLES],
                    observed=len(classes),
                )
            )
    else:
        bad = totals["coerced"].get(target, {"count": 0, "examples": []})
        results.append(
            _result(
                "expect_target_to_be_numeric",
                target,
                {"column": target},
                target not in coerce and target in numeric and bad["count"] == 0,
                unexpected=bad["count"],
                examples=bad["examples"],
                observed=columns[target]["kind"],
            )
        )

    profile: dict[str, Any] = {}
    if classification:
        profile["classes"] = totals["classes"]
    profile["categories"] = totals["categories"]
    profile["categories_truncated"] = totals["categories_truncated"]
    profile["nulls"] = totals["nulls"]
    profile["numeric_ranges"] = totals["numeric_ranges"]
    return {
        "success": all(r["success"] for r in results),
        "rows": rows,
        "files": len(files),
        "partitions": npartitions,
        "results": results,
        "profile": profile,
    }


def _suite_spec(schema: dict[str, Any], expectations: dict[str, Any]) -> list[dict[str, Any]]:
    """Plain-data expectations (built-in, then from the file), checked against the schema's columns."""
    target, columns = schema["target"], schema["columns"]
    spec = [{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": target}}]
    for name, rules in (expectations.get("columns") or {}).items():
        kind = _column_kind(columns, name, f"columns.{name}")
        if "min" in rules or "max" in rules:
            if kind != "numeric":
                raise TuneflowError(
                    f"Expectations: columns.{name} has min/max but '{name}' is not numeric (it is {kind}).",
                    f"use 'allowed' for a {kind} column, or fix the column's values so it reads as numbers.",
                )
            spec.append(
                {
                    "type": "expect_column_values_to_be_between",
                    "kwargs": {"column": name, "min_value": rules.get("min"), "max_value": rules.get("max")},
                }
            )
        if "allowed" in rules:
            allowed = list(rules["allowed"])
            if kind != "numeric":  # non-numeric columns are read as strings: 0/1 in YAML must match "0"/"1"
                allowed = [str(v) for v in allowed]
            spec.append({"type": "expect_column_values_to_be_in_set", "kwargs": {"column": name, "value_set": allowed}})
        if rules.get("not_null"):
            spec.append({"type": "expect_column_values_to_not_be_null", "kwargs": {"column": name}})
    for i, entry in enumerate(expectations.get("expectations") or []):
        kwargs = entry.get("kwargs") or {}
        for key in COLUMN_KWARGS:
            if key in kwargs:
                _column_kind(columns, kwargs[key], f"expectations[{i}] ({entry['type']}) {key}")
        for name in kwargs.get("column_list") or []:
            _column_kind(columns, name, f"expectations[{i}] ({entry['type']}) column_list")
        spec.append({"type": entry["type"], "kwargs": kwargs})
    from great_expectations.expectations import expectation as gx_expectation

    for item in spec:
        item["map"] = _is_map_expectation(_expectation_class(item["type"], "Expectations"), gx_expectation)
    return spec


def _column_kind(columns: dict[str, Any], name: Any, where: str) -> str:
    if name in columns:
        return columns[name]["kind"]
    close = difflib.get_close_matches(str(name), list(columns), n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise TuneflowError(
        f"Expectations: {where} names column '{name}', which is not in the data (columns: {', '.join(list(columns)[:20])}).",
        f"{hint}fix the column name in the expectations file.",
    )


def _run_partitions(
    ddf: dd.DataFrame | None,
    files: list[dict[str, Any]],
    schema: dict[str, Any],
    storage_options: dict[str, Any],
    plan: dict[str, Any],
    numeric: list[str],
) -> tuple[list[dict[str, Any]], int, list[dict[str, Any]]]:
    """Partials per partition; a non-number in a numeric column becomes a failed type check, not a traceback."""
    if not files:
        return [], 0, []
    try:
        if ddf is None:
            ddf = read_dataset(files, schema, storage_options)
        return _compute(ddf, plan), ddf.npartitions, []
    except ValueError as exc:
        error = exc
    # Re-read the numeric columns as text and count, per column, the values that are not numbers.
    text_schema = {**schema, "columns": {c: ({"kind": "text"} if c in numeric else info) for c, info in schema["columns"].items()}}
    retry_plan = {**plan, "coerce": sorted(set(plan["coerce"]) | set(numeric))}
    try:
        text_ddf = read_dataset(files, text_schema, storage_options)
        partials = _compute(text_ddf, retry_plan)
        npartitions = text_ddf.npartitions
    except ValueError:
        partials, npartitions = [], 0
    coerced = _combine(partials, retry_plan)["coerced"] if partials else {}
    type_results = [
        _result(
            "expect_column_values_to_be_of_type",
            col,
            {"column": col, "type_": "float64"},
            False,
            unexpected=bad["count"],
            examples=bad["examples"],
        )
        for col, bad in coerced.items()
        if bad["count"] and col in numeric
    ]
    if not type_results:  # not a numeric column after all: name the files that fail to read
        culprits = [f"{f['uri']}: {_first_line(e)}" for f, e in _failing_files(files, schema, storage_options)]
        type_results.append(
            _result(
                "expect_column_values_to_be_of_type",
                None,
                {"schema": {c: info["kind"] for c, info in schema["columns"].items()}},
                False,
                unexpected=len(culprits),
                examples=culprits[:EXAMPLES] or [_first_line(error)],
                error=_first_line(error),
            )
        )
    return partials, npartitions, type_results


def _compute(ddf: dd.DataFrame, plan: dict[str, Any]) -> list[dict[str, Any]]:
    """One task per partition; dask.compute uses the active distributed Client if there is one."""
    parts = ddf.to_delayed()
    return list(dask.compute(*[dask.delayed(_validate_partition)(part, plan) for part in parts]))


def _failing_files(files: list[dict[str, Any]], schema: dict[str, Any], storage_options: dict[str, Any]) -> list[tuple[dict[str, Any], Exception]]:
    failing = []
    for f in files:
        try:
            read_dataset([f], schema, storage_options).map_partitions(len).compute()
        except (ValueError, OSError) as exc:
            failing.append((f, exc))
    return failing


# --------------------------------------------------------------------------------------------------
# On the workers
# --------------------------------------------------------------------------------------------------

_local = threading.local()  # GX context + suite per worker thread (GX objects are not documented thread-safe)
SUITE_BUILDS = 0  # how many suites this process built (tests check the cache with it)


def _gx_suite(plan: dict[str, Any]) -> tuple[Any, Any]:
    """The (batch definition, suite) for this plan, built once per worker thread and reused."""
    global SUITE_BUILDS
    cache = getattr(_local, "suites", None)
    if cache is None:
        cache = _local.suites = {}
    if plan["key"] in cache:
        return cache[plan["key"]]
    import great_expectations as gx
    from great_expectations.data_context.types.base import DataContextConfig, InMemoryStoreBackendDefaults, ProgressBarsConfig

    config = DataContextConfig(
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
    )
    context = gx.get_context(mode="ephemeral", project_config=config)
    batch_definition = (
        context.data_sources.add_pandas("tuneflow").add_dataframe_asset("partition").add_batch_definition_whole_dataframe("whole")
    )
    suite = gx.ExpectationSuite(name="tuneflow")
    for i, item in enumerate(plan["expectations"]):
        suite.add_expectation(_build_expectation(item["type"], item["kwargs"], "Expectations", meta={"tuneflow_index": i}))
    cache[plan["key"]] = (batch_definition, suite)
    SUITE_BUILDS += 1
    return batch_definition, suite


def _validate_partition(df: pd.DataFrame, plan: dict[str, Any]) -> dict[str, Any]:
    """Suite outcome and partial aggregates of one partition (runs on a Dask worker)."""
    nulls = {str(c): int(n) for c, n in df.isna().sum().items()}
    coerced = {}
    if plan["coerce"]:
        df = df.copy()
        for col in plan["coerce"]:
            text = df[col]
            values = pd.to_numeric(text, errors="coerce").astype("float64")
            bad = text.notna() & values.isna()
            coerced[col] = {"count": int(bad.sum()), "examples": _examples(text[bad].unique()[: EXAMPLES * 4])}
            df[col] = values
    outcomes = []
    if plan["expectations"]:
        batch_definition, suite = _gx_suite(plan)
        run = batch_definition.get_batch(batch_parameters={"dataframe": df}).validate(suite, result_format="SUMMARY")
        outcomes = [None] * len(plan["expectations"])
        for r in run.results:
            index = (r.expectation_config.meta or {}).get("tuneflow_index")
            if index is None:
                continue
            result = r.result or {}
            info = r.exception_info or {}
            raised = info.get("raised_exception") if "raised_exception" in info else any(
                isinstance(v, dict) and v.get("raised_exception") for v in info.values()
            )
            message = info.get("exception_message") or next(
                (v.get("exception_message") for v in info.values() if isinstance(v, dict) and v.get("exception_message")), None
            )
            outcomes[index] = {
                "success": bool(r.success),
                "element_count": int(result.get("element_count") or 0),
                "missing_count": int(result.get("missing_count") or 0),
                "unexpected_count": int(result.get("unexpected_count") or 0),
                "examples": _examples(result.get("partial_unexpected_list") or []),
                "observed": _plain(result.get("observed_value")),
                "error": str(message) if raised else None,
            }
        for index, item in enumerate(plan["expectations"]):  # a non-number is the type check's, not a null
            column = item["kwargs"].get("column")
            if item["type"] == "expect_column_values_to_not_be_null" and column in coerced and outcomes[index]:
                outcome = outcomes[index]
                outcome["unexpected_count"] = max(0, outcome["unexpected_count"] - coerced[column]["count"])
                outcome["success"] = outcome["unexpected_count"] == 0
    numeric_ranges = {}
    for col in plan["numeric"] + [c for c in plan["coerce"] if c not in plan["numeric"]]:
        values = df[col]
        numeric_ranges[col] = [_plain(values.min()), _plain(values.max())] if values.notna().any() else None
    categories, truncated = {}, []
    for col in plan["categorical"]:
        distinct = df[col].dropna().unique()
        if len(distinct) > CATEGORY_CAP:
            truncated.append(col)
            distinct = sorted(map(str, distinct))[:CATEGORY_CAP]
        categories[col] = [str(v) for v in distinct]
    classes = {}
    if plan["classification"]:
        counts = df[plan["target"]].dropna().value_counts()
        if len(counts) > CATEGORY_CAP:
            truncated.append(plan["target"])
            counts = counts.iloc[:CATEGORY_CAP]
        classes = {str(k): int(v) for k, v in counts.items()}
    return {
        "rows": len(df),
        "nulls": nulls,
        "coerced": coerced,
        "outcomes": outcomes,
        "numeric_ranges": numeric_ranges,
        "categories": categories,
        "classes": classes,
        "truncated": truncated,
    }


# --------------------------------------------------------------------------------------------------
# On the driver: combining partials
# --------------------------------------------------------------------------------------------------


def _combine(partials: list[dict[str, Any]], plan: dict[str, Any]) -> dict[str, Any]:
    """Sum the partition partials into dataset totals and per-expectation results."""
    rows = sum(p["rows"] for p in partials)
    nulls: dict[str, int] = {}
    ranges: dict[str, list[Any] | None] = {}
    categories: dict[str, set[str]] = {c: set() for c in plan["categorical"]}
    truncated: set[str] = set()
    classes: dict[str, int] = {}
    coerced: dict[str, dict[str, Any]] = {}
    for p in partials:
        for col, n in p["nulls"].items():
            nulls[col] = nulls.get(col, 0) + n
        for col, span in p["numeric_ranges"].items():
            if span is None:
                ranges.setdefault(col, None)
            elif ranges.get(col) is None:
                ranges[col] = list(span)
            else:
                ranges[col] = [min(ranges[col][0], span[0]), max(ranges[col][1], span[1])]
        for col, values in p["categories"].items():
            categories[col].update(values)
        truncated.update(p["truncated"])
        for label, n in p["classes"].items():
            classes[label] = classes.get(label, 0) + n
        for col, bad in p["coerced"].items():
            total = coerced.setdefault(col, {"count": 0, "examples": []})
            total["count"] += bad["count"]
            total["examples"] = _merge_examples(total["examples"], bad["examples"])
    for col in list(categories):
        if len(categories[col]) > CATEGORY_CAP:
            truncated.add(col)
    if len(classes) > CATEGORY_CAP:
        truncated.add(plan["target"])
        classes = dict(sorted(classes.items(), key=lambda kv: -kv[1])[:CATEGORY_CAP])
    for col in plan["numeric"]:
        ranges.setdefault(col, None)

    results = []
    for i, item in enumerate(plan["expectations"]):
        outcomes = [p["outcomes"][i] for p in partials if p["outcomes"] and p["outcomes"][i] is not None]
        kwargs = item["kwargs"]
        errors = [o["error"] for o in outcomes if o["error"]]
        unexpected = sum(o["unexpected_count"] for o in outcomes)
        examples: list[Any] = []
        for o in outcomes:
            examples = _merge_examples(examples, o["examples"])
        observed = None
        if item["map"]:
            nonmissing = sum(o["element_count"] - o["missing_count"] for o in outcomes)
            mostly = kwargs.get("mostly")
            if mostly is not None and nonmissing:
                success = (nonmissing - unexpected) / nonmissing >= float(mostly)
            else:
                success = unexpected == 0
        else:  # schema-level: the same on every partition
            failing = [o for o in outcomes if not o["success"]]
            success = not failing
            observed = (failing or outcomes or [{"observed": None}])[0]["observed"]
        results.append(
            _result(
                item["type"],
                _column_of(kwargs),
                kwargs,
                success and not errors,
                unexpected=unexpected,
                examples=examples,
                observed=observed,
                error=errors[0] if errors else None,
            )
        )
    return {
        "rows": rows,
        "nulls": nulls,
        "numeric_ranges": ranges,
        "categories": {c: sorted(v)[:CATEGORY_CAP] for c, v in categories.items()},
        "categories_truncated": sorted(truncated),
        "classes": dict(sorted(classes.items())),
        "coerced": coerced,
        "results": results,
    }


def _column_of(kwargs: dict[str, Any]) -> str | None:
    if "column" in kwargs:
        return str(kwargs["column"])
    if "column_A" in kwargs and "column_B" in kwargs:
        return f"{kwargs['column_A']},{kwargs['column_B']}"
    if kwargs.get("column_list"):
        return ",".join(map(str, kwargs["column_list"]))
    return None


def _result(
    expectation: str,
    column: str | None,
    kwargs: dict[str, Any],
    success: bool,
    unexpected: int = 0,
    examples: list[Any] | None = None,
    observed: Any = None,
    error: str | None = None,
) -> dict[str, Any]:
    return {
        "expectation": expectation,
        "column": column,
        "kwargs": _plain(kwargs),
        "success": bool(success),
        "unexpected_count": int(unexpected),
        "examples": _examples(examples or []),
        "observed": _plain(observed),
        "error": error,
    }


def _file_columns(uri: str, storage_options: dict[str, Any]) -> list[str] | str:
    """The column names of one file, read from its header (CSV) or footer (Parquet); a string on error."""
    try:
        fs, path = filesystem(uri, storage_options)
        with fs.open(path, "rb") as raw:
            if file_format(uri) == "parquet":
                return [str(n) for n in pq.ParquetFile(raw).schema_arrow.names]
            stream = gzip.GzipFile(fileobj=raw) if uri.lower().endswith(".gz") else raw
            text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
            header = next(csv.reader(text), None)
            return [h for h in header] if header else "no header row (the file is empty)"
    except Exception as exc:  # noqa: BLE001 - reported per file, never raised
        return f"cannot read its header: {_first_line(exc)}"


def _header_problem(header: list[str] | str, reference: list[str] | str, schema_columns: list[str]) -> str | None:
    if isinstance(header, str):
        return header
    missing = [c for c in (reference if isinstance(reference, list) else schema_columns) if c not in header]
    missing += [c for c in schema_columns if c not in header and c not in missing]
    extra = [c for c in header if isinstance(reference, list) and c not in reference]
    parts = []
    if missing:
        parts.append(f"missing columns {missing}")
    if extra:
        parts.append(f"extra columns {extra}")
    return "; ".join(parts) or None


# --------------------------------------------------------------------------------------------------
# Report consumers
# --------------------------------------------------------------------------------------------------


def raise_if_failed(report: dict[str, Any]) -> None:
    """Raise DataValidationError naming each failed expectation and its bad-row count, if any failed."""
    failed = [r for r in report["results"] if not r["success"]]
    if report.get("success") and not failed:
        return
    parts = [_describe(r) for r in failed]
    fixes = []
    for r in failed:
        hint = _fix_hint(r)
        if hint not in fixes:
            fixes.append(hint)
    fixes.append("the raw data was not modified and nothing was written or trained")
    raise DataValidationError("Validation failed: " + "; ".join(parts) + ".", "; ".join(fixes) + ".", report)


def _describe(r: dict[str, Any]) -> str:
    name = f"{r['expectation']}({r['column']})" if r.get("column") else r["expectation"]
    if r.get("error"):
        return f"{name} error: {r['error']}"
    if r["unexpected_count"]:
        n = r["unexpected_count"]
        unit = "file" if r["expectation"] == "expect_files_to_share_columns" else "row"
        text = f"{name} {n} {unit}{'' if n == 1 else 's'}"
        return f"{text}, e.g. {_short(r['examples'])}" if r["examples"] else text
    if r["expectation"] == "expect_table_row_count_to_be_between":
        return f"{name} {r['observed']} rows (need at least {max(1, r['kwargs'].get('min_value') or 0)})"
    if r["expectation"] in ("expect_target_to_have_two_or_more_classes", "expect_binary_target_to_have_two_classes"):
        return f"{name} {r['observed']} class{'' if r['observed'] == 1 else 'es'} {_short(r['examples'])}"
    if r.get("observed") is not None:
        return f"{name} observed {_short(r['observed'])}"
    return name


def _fix_hint(r: dict[str, Any]) -> str:
    name = r["expectation"]
    if name == "expect_files_to_share_columns":
        return "give every input file the header of the first one, or point the dataset URI only at matching files"
    if name == "expect_table_row_count_to_be_between":
        return "point at a dataset with data rows, or lower min_rows in the expectations file"
    if name in ("expect_target_to_have_two_or_more_classes", "expect_binary_target_to_have_two_classes"):
        return "check the --target column and --task (binary needs 2 classes, multiclass 2 or more)"
    if name == "expect_target_to_be_numeric":
        return "clean the non-numeric target values, or use --task binary/multiclass for a label target"
    if name == "expect_column_values_to_be_of_type":
        return "clean the non-numeric values in the numeric columns named above (or make the column all text)"
    return "fix the data, or the rule in the expectations file if the data is right"


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 120 else text[:117] + "..."


def report_markdown(report: dict[str, Any]) -> str:
    """A Markdown summary of the report (for a Prefect artifact)."""
    status = "passed" if report["success"] else "FAILED"
    failed = sum(1 for r in report["results"] if not r["success"])
    lines = [
        f"# Data validation {status}",
        "",
        f"{report['rows']:,} rows in {report['files']} file(s), {report['partitions']} partition(s); "
        f"{len(report['results']) - failed} of {len(report['results'])} expectations met.",
        "",
        "| Expectation | Column | Success | Unexpected | Examples / observed |",
        "|---|---|---|---:|---|",
    ]
    for r in report["results"]:
        shown = r["examples"] if r["examples"] else r.get("observed")
        detail = _short(shown) if shown not in (None, []) else ""
        if r.get("error"):
            detail = f"error: {r['error']}"
        mark = "yes" if r["success"] else "**no**"
        lines.append(
            f"| {_md(r['expectation'])} | {_md(r['column'] or '')} | {mark} | {r['unexpected_count']:,} | {_md(detail)} |"
        )
    profile = report.get("profile", {})
    if profile.get("classes"):
        lines += ["", "## Classes", "", "| Label | Rows |", "|---|---:|"]
        lines += [f"| {_md(k)} | {v:,} |" for k, v in profile["classes"].items()]
    if profile.get("numeric_ranges"):
        lines += ["", "## Numeric columns", "", "| Column | Min | Max | Nulls |", "|---|---:|---:|---:|"]
        for col, span in profile["numeric_ranges"].items():
            low, high = span if span else ("", "")
            lines.append(f"| {_md(col)} | {low} | {high} | {profile['nulls'].get(col, 0):,} |")
    if profile.get("categories"):
        lines += ["", "## Categorical columns", "", "| Column | Distinct | Values | Nulls |", "|---|---:|---|---:|"]
        for col, values in profile["categories"].items():
            capped = "+" if col in profile.get("categories_truncated", []) else ""
            shown = ", ".join(values[:10]) + (", ..." if len(values) > 10 else "")
            lines.append(f"| {_md(col)} | {len(values)}{capped} | {_md(shown)} | {profile['nulls'].get(col, 0):,} |")
    return "\n".join(lines) + "\n"


def _md(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


# --------------------------------------------------------------------------------------------------
# Plain values
# --------------------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A JSON-ready copy: numpy/pandas scalars to Python, NaN/NA to None, containers recursively."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, np.ndarray, pd.Index, pd.Series)):
        return [_plain(v) for v in list(value)]
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _examples(values: Any) -> list[Any]:
    return _merge_examples([], [_plain(v) for v in list(values)])


def _merge_examples(have: list[Any], more: list[Any]) -> list[Any]:
    out = list(have)
    for v in more:
        if len(out) >= EXAMPLES:
            break
        v = _plain(v)
        if v not in out:
            out.append(v)
    return out


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    for line in text.splitlines():
        if line.strip() and not line.startswith("An error occurred while calling"):
            return line.strip().removeprefix("Original Message: ")
    return type(exc).__name__
