"""validate_dataset: the suite per partition on Dask, the global checks on the combined aggregates.

Great Expectations 1.x has no Dask engine, so each partition is validated inside a Dask task (see
partitions.py); the tasks return small typed partial results that the driver combines. Properties of
the whole dataset (row count, number of classes, a numeric regression target, one header across
files) are checked on those aggregates. Raw data is only read, never modified.
"""

from __future__ import annotations

from typing import Any

import dask
import dask.dataframe as dd

from tasks.data.inputs import read_dataset
from tasks.validation import values
from tasks.validation.combine import combine, global_results, result_row
from tasks.validation.headers import file_columns, header_problem
from tasks.validation.partitions import validate_partition
from tasks.validation.records import PartitionResult, Report, ReportRow, SuitePlan
from tasks.validation.suite import plan_suite
from tasks.validation.values import EXAMPLES, first_line


def validate_dataset(
    ddf: dd.DataFrame | None,
    files: list[dict[str, Any]],
    schema: dict[str, Any],
    expectations: dict[str, Any],
    storage_options: dict[str, Any],
) -> Report:
    """Run the suite per partition on Dask and the global checks; return a JSON-ready report."""
    plan = plan_suite(schema, expectations, values.CATEGORY_CAP)
    if any(info.get("text_in_sample") for info in schema["columns"].values()):
        ddf = None  # those columns are read as text (and counted), not as the given frame's numbers
    headers, first = _one_pass(ddf, files, schema, storage_options, plan)
    share, good_files = _shared_columns(files, headers, schema)
    results: list[ReportRow] = [share]
    if first is not None and len(good_files) == len(files):
        (partials, npartitions), type_results = first, []
    else:  # step by step: a file or a value did not read, or some files do not share the first one's header
        if len(good_files) < len(files):
            ddf = None  # the given frame spans the odd files, whose reads would fail: validate the others
        partials, npartitions, type_results = _run_partitions(ddf, good_files, schema, storage_options, plan)
    totals = combine(partials, plan)
    typed = {r["column"] for r in type_results}
    type_results += [  # numeric columns read as text: their texts (the target's are the global check's)
        result_row("expect_column_values_to_be_of_type", col, {"column": col, "type_": "float64"}, False, unexpected=bad.count, examples_=bad.examples)
        for col, bad in totals.coerced.items()
        if bad.count and col != schema["target"] and col not in typed
    ]
    results += type_results
    results += totals.results
    results += global_results(totals, plan, schema, expectations)
    profile: dict[str, Any] = {}
    if plan.classification:
        profile["classes"] = totals.classes
    profile["categories"] = totals.categories
    profile["categories_truncated"] = totals.categories_truncated
    profile["nulls"] = totals.nulls
    profile["numeric_ranges"] = totals.numeric_ranges
    return {
        "success": all(r["success"] for r in results),
        "rows": totals.rows,
        "files": len(files),
        "partitions": npartitions,
        "results": results,
        "profile": profile,
    }


def _one_pass(
    ddf: dd.DataFrame | None, files: list[dict[str, Any]], schema: dict[str, Any], storage_options: dict[str, Any], plan: SuitePlan
) -> tuple[list[list[str] | str], tuple[list[PartitionResult], int] | None]:
    """Each file's header and, hoping every file is fine, every partition's result, in one Dask computation
    (so the first tasks start on all workers at once). The partitions are None where that fails."""
    header_tasks = [dask.delayed(file_columns)(f["uri"], storage_options) for f in files]
    try:
        frame = ddf if ddf is not None else read_dataset(files, _read_schema(schema, plan), storage_options)
        headers, partials = dask.compute(header_tasks, _partition_tasks(frame, plan))
        return _with_partitions(files, list(headers)), (list(partials), frame.npartitions)
    except Exception:  # noqa: BLE001 - a bad file or value: validate_dataset's step-by-step path reports it
        return _with_partitions(files, list(dask.compute(*header_tasks))), None


def _with_partitions(files: list[dict[str, Any]], headers: list[list[str] | str]) -> list[list[str] | str]:
    """Each file's columns with its partition folders' keys (key=value above it), which are columns too."""
    return [
        h + [k for k in f.get("partitions", {}) if k not in h] if isinstance(h, list) else h
        for f, h in zip(files, headers)
    ]


def _read_schema(schema: dict[str, Any], plan: SuitePlan) -> dict[str, Any]:
    """The schema validation reads with: the columns it coerces (plan.coerce) as text."""
    if not plan.coerce:
        return schema
    return {**schema, "columns": {c: ({**info, "kind": "text"} if c in plan.coerce else info) for c, info in schema["columns"].items()}}


def _shared_columns(files: list[dict[str, Any]], headers: list[list[str] | str], schema: dict[str, Any]) -> tuple[ReportRow, list[dict[str, Any]]]:
    """The one-header check (on just the header of each file), and the files that pass it."""
    reference = headers[0]
    mismatches, good_files = [], []
    for f, header in zip(files, headers):
        problem = header_problem(header, reference, list(schema["columns"]))
        if problem:
            mismatches.append(f"{f['uri']}: {problem}")
        else:
            good_files.append(f)
    row = result_row(
        "expect_files_to_share_columns",
        None,
        {"reference": files[0]["uri"], "columns": reference if isinstance(reference, list) else []},
        not mismatches,
        unexpected=len(mismatches),
        examples_=mismatches[:EXAMPLES],
        observed=f"{len(files) - len(mismatches)} of {len(files)} files match",
    )
    return row, good_files


def _run_partitions(
    ddf: dd.DataFrame | None,
    files: list[dict[str, Any]],
    schema: dict[str, Any],
    storage_options: dict[str, Any],
    plan: SuitePlan,
) -> tuple[list[PartitionResult], int, list[ReportRow]]:
    """Partials per partition; a non-number in a numeric column becomes a failed type check, not a traceback."""
    if not files:
        return [], 0, []
    try:
        if ddf is None:
            ddf = read_dataset(files, _read_schema(schema, plan), storage_options)
        return _compute(ddf, plan), ddf.npartitions, []
    except ValueError as exc:
        error = exc
    # Re-read the numeric columns as text and count, per column, the values that are not numbers.
    numeric = list(plan.numeric)
    text_schema = {**schema, "columns": {c: ({**info, "kind": "text"} if c in numeric else info) for c, info in schema["columns"].items()}}
    retry_plan = plan.coercing(numeric)
    try:
        text_ddf = read_dataset(files, text_schema, storage_options)
        partials = _compute(text_ddf, retry_plan)
        npartitions = text_ddf.npartitions
    except ValueError:
        partials, npartitions = [], 0
    coerced = combine(partials, retry_plan).coerced if partials else {}
    type_results = [
        result_row("expect_column_values_to_be_of_type", col, {"column": col, "type_": "float64"}, False, unexpected=bad.count, examples_=bad.examples)
        for col, bad in coerced.items()
        if bad.count and col in numeric
    ]
    if not type_results:  # not a numeric column after all: name the files that fail to read
        culprits = [f"{f['uri']}: {first_line(e)}" for f, e in _failing_files(files, schema, storage_options)]
        type_results.append(
            result_row(
                "expect_column_values_to_be_of_type",
                None,
                {"schema": {c: info["kind"] for c, info in schema["columns"].items()}},
                False,
                unexpected=len(culprits),
                examples_=culprits[:EXAMPLES] or [first_line(error)],
                error=first_line(error),
            )
        )
    return partials, npartitions, type_results


def _partition_tasks(ddf: dd.DataFrame, plan: SuitePlan) -> list[Any]:
    return [dask.delayed(validate_partition)(part, plan) for part in ddf.to_delayed()]


def _compute(ddf: dd.DataFrame, plan: SuitePlan) -> list[PartitionResult]:
    """One task per partition; dask.compute uses the active distributed Client if there is one."""
    return list(dask.compute(*_partition_tasks(ddf, plan)))


def _failing_files(files: list[dict[str, Any]], schema: dict[str, Any], storage_options: dict[str, Any]) -> list[tuple[dict[str, Any], Exception]]:
    failing = []
    for f in files:
        try:
            read_dataset([f], schema, storage_options).map_partitions(len).compute()
        except (ValueError, OSError) as exc:
            failing.append((f, exc))
    return failing
