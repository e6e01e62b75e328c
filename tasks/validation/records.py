"""The typed records of validation: what the driver sends to the workers, what comes back, the report.

Standard library only: a Dask worker unpickles these.

- `SuitePlan` (driver -> workers): the expectations to run on every partition and which partial
  aggregates to collect.
- `PartitionResult` (worker -> driver): one partition's outcome per expectation and its aggregates.
- `Totals`: the partitions combined (driver).
- `ReportRow` / `Report`: the JSON report `validate_dataset` returns (plain dicts, cached as JSON).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

Rule = Literal["between", "in_set", "not_null"]  # see rules.py


@dataclass(frozen=True)
class PlannedExpectation:
    type: str  # a Great Expectations 1.x expectation, snake_case
    kwargs: dict[str, Any]
    map: bool  # row-level: counts add up over partitions (else schema-level: the same on every partition)
    rule: Rule | None = None  # evaluated by rules.py the way GX's pandas engine does; None: by GX itself


@dataclass(frozen=True)
class SuitePlan:
    key: str  # identifies the suite in the workers' caches
    expectations: tuple[PlannedExpectation, ...]
    numeric: tuple[str, ...]  # numeric columns: min/max per partition
    coerce: tuple[str, ...]  # columns read as text, to convert to numbers, counting what does not convert
    categorical: tuple[str, ...]  # distinct values per partition
    target: str
    classification: bool  # count the target's classes
    category_cap: int  # distinct values kept per categorical column (and per label column)

    def coercing(self, columns: list[str]) -> SuitePlan:
        return dataclasses.replace(self, coerce=tuple(sorted(set(self.coerce) | set(columns))))


@dataclass
class Outcome:
    """One expectation on one partition, as GX reports it (SUMMARY result format)."""

    success: bool
    element_count: int = 0
    missing_count: int = 0
    unexpected_count: int = 0
    examples: list[Any] = field(default_factory=list)
    observed: Any = None
    error: str | None = None


@dataclass
class BadValues:
    """Values of a column that are not numbers (count and a few examples)."""

    count: int = 0
    examples: list[Any] = field(default_factory=list)


@dataclass
class PartitionResult:
    rows: int
    nulls: dict[str, int]
    coerced: dict[str, BadValues]
    outcomes: list[Outcome | None]  # by index in plan.expectations; empty when the plan has none
    numeric_ranges: dict[str, list[Any] | None]  # [min, max], None where the column is all null
    categories: dict[str, list[str]]
    classes: dict[str, int]
    truncated: list[str]  # columns whose distinct values were capped
    infinite: dict[str, BadValues] = field(default_factory=dict)  # numeric columns holding inf/-inf: how many rows, which signs


class ReportRow(TypedDict):
    expectation: str
    column: str | None
    kwargs: dict[str, Any]
    success: bool
    unexpected_count: int
    examples: list[Any]
    observed: Any
    error: str | None


@dataclass
class Totals:
    rows: int
    nulls: dict[str, int]
    numeric_ranges: dict[str, list[Any] | None]
    categories: dict[str, list[str]]
    categories_truncated: list[str]
    classes: dict[str, int]
    coerced: dict[str, BadValues]
    results: list[ReportRow]
    infinite: dict[str, BadValues] = field(default_factory=dict)


class Report(TypedDict):
    success: bool
    rows: int
    files: int
    partitions: int
    results: list[ReportRow]
    profile: dict[str, Any]  # classes (classification), categories, categories_truncated, nulls, numeric_ranges
