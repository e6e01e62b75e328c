"""What consumers do with a validation report: stop the flow with a one-line error, or render Markdown."""

from __future__ import annotations

import json
from typing import Any

from tasks.errors import DataValidationError


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
    if name == "expect_column_values_to_be_of_type" and r.get("column"):
        col = r["column"]
        return (
            f"clean the non-numeric values of '{col}' in the data, or declare them in the --expectations file: "
            f"columns: {{{col}: {{missing_values: [...]}}}} reads them as missing, columns: {{{col}: {{kind: categorical}}}} "
            "makes the column categorical"
        )
    if name == "expect_column_values_to_be_of_type":
        return "clean the non-numeric values in the numeric columns named above (or make the column all text)"
    if name == "expect_column_values_to_be_finite":
        return (f"replace the infinite values (inf, -inf, Infinity, or beyond +-3.4e38, which XGBoost's float32 cannot hold) of '{r['column']}' "
                "with finite numbers, or leave those cells empty (missing)")
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
    lines += _profile_markdown(report.get("profile", {}))
    return "\n".join(lines) + "\n"


def _profile_markdown(profile: dict[str, Any]) -> list[str]:
    lines: list[str] = []
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
    return lines


def _md(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")
