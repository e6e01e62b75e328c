"""The suite plan: the built-in checks and the user's expectations as typed, per-partition expectations.

Runs on the driver; checks every column the expectations name against the schema before any data is read.
"""

from __future__ import annotations

import difflib
import json
from typing import Any

from tasks.errors import TuneflowError
from tasks.validation import rules
from tasks.validation.catalog import expectation_class, is_map_expectation
from tasks.validation.records import PlannedExpectation, SuitePlan

COLUMN_KWARGS = ("column", "column_A", "column_B")


def plan_suite(schema: dict[str, Any], expectations: dict[str, Any], category_cap: int) -> SuitePlan:
    """What every partition runs: the suite, and which aggregates to collect for the global checks."""
    target, task, columns = schema["target"], schema["task"], schema["columns"]
    items = tuple(_planned(item["type"], item["kwargs"]) for item in suite_spec(schema, expectations))
    coerce: tuple[str, ...] = ()
    if task == "regression" and columns[target]["kind"] != "numeric":
        coerce = (target,)  # read as text: count the values that are not numbers
    # numeric columns whose sample held a few texts (tasks/data/inputs._kind): read as text too, so
    # the texts are counted over the whole dataset instead of failing the read on a worker
    coerce += tuple(c for c, info in columns.items() if info.get("text_in_sample") and c not in coerce)
    return SuitePlan(
        key=json.dumps([[i.type, i.kwargs, i.map, i.rule] for i in items], sort_keys=True, default=str),
        expectations=items,
        numeric=tuple(c for c, info in columns.items() if info["kind"] == "numeric"),
        coerce=coerce,
        categorical=tuple(c for c, info in columns.items() if info["kind"] == "categorical"),
        target=target,
        classification=task in ("binary", "multiclass"),
        category_cap=category_cap,
    )


def _planned(etype: str, kwargs: dict[str, Any]) -> PlannedExpectation:
    rule = rules.rule_for(etype, kwargs)
    if rule is not None:  # column map expectations, known without importing GX (seconds) on the driver
        return PlannedExpectation(etype, kwargs, map=True, rule=rule)
    return PlannedExpectation(etype, kwargs, map=is_map_expectation(expectation_class(etype, "Expectations")))


def suite_spec(schema: dict[str, Any], expectations: dict[str, Any]) -> list[dict[str, Any]]:
    """Plain-data expectations (built-in, then from the file), checked against the schema's columns."""
    target, columns = schema["target"], schema["columns"]
    spec = [{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": target}}]
    for name, rules_ in (expectations.get("columns") or {}).items():
        spec += _column_rules(columns, name, rules_)
    for i, entry in enumerate(expectations.get("expectations") or []):
        kwargs = entry.get("kwargs") or {}
        for key in COLUMN_KWARGS:
            if key in kwargs:
                _column_kind(columns, kwargs[key], f"expectations[{i}] ({entry['type']}) {key}")
        for name in kwargs.get("column_list") or []:
            _column_kind(columns, name, f"expectations[{i}] ({entry['type']}) column_list")
        spec.append({"type": entry["type"], "kwargs": kwargs})
    return spec


def _column_rules(columns: dict[str, Any], name: str, rules_: dict[str, Any]) -> list[dict[str, Any]]:
    """The expectations of one `columns:` entry (min/max, allowed, not_null)."""
    kind = _column_kind(columns, name, f"columns.{name}")
    spec = []
    if "min" in rules_ or "max" in rules_:
        if kind != "numeric":
            raise TuneflowError(
                f"Expectations: columns.{name} has min/max but '{name}' is not numeric (it is {kind}).",
                f"use 'allowed' for a {kind} column, or fix the column's values so it reads as numbers.",
            )
        spec.append(
            {
                "type": "expect_column_values_to_be_between",
                "kwargs": {"column": name, "min_value": rules_.get("min"), "max_value": rules_.get("max")},
            }
        )
    if "allowed" in rules_:
        allowed = list(rules_["allowed"])
        if kind != "numeric":  # non-numeric columns are read as strings: 0/1 in YAML must match "0"/"1"
            allowed = [str(v) for v in allowed]
        spec.append({"type": "expect_column_values_to_be_in_set", "kwargs": {"column": name, "value_set": allowed}})
    if rules_.get("not_null"):
        spec.append({"type": "expect_column_values_to_not_be_null", "kwargs": {"column": name}})
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
