"""The common column rules evaluated with pandas directly, exactly as Great Expectations' pandas engine does.

GX spends about a second per 300k-row partition on its metric graph (and seconds to import) for
three rules that are one vectorised comparison each. For those, with plain kwargs, this module
repeats what GX 1.x computes (`ColumnValuesBetween._pandas_vectorized`, `ColumnValuesInSet._pandas`,
`ColumnValuesNonNull._pandas`, then `ColumnMapExpectation._validate` / `_format_map_output` in the
SUMMARY result format): the same condition on the same rows, the same element/missing/unexpected
counts and the first 20 unexpected values in row order. Anything else (other kwargs, a column dtype
GX would not compare vectorised) is left to GX. tests/test_validate.py compares both on edge cases.

Imports pandas only (it runs on Dask workers).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from tasks.validation.records import Outcome, Rule
from tasks.validation.values import examples, is_number

PARTIAL_UNEXPECTED = 20  # GX's partial_unexpected_count in the SUMMARY result format
_KWARGS: dict[str, set[str]] = {
    "expect_column_values_to_be_between": {"column", "min_value", "max_value", "strict_min", "strict_max", "mostly"},
    "expect_column_values_to_be_in_set": {"column", "value_set", "mostly"},
    "expect_column_values_to_not_be_null": {"column", "mostly"},
}
_RULES: dict[str, Rule] = {
    "expect_column_values_to_be_between": "between",
    "expect_column_values_to_be_in_set": "in_set",
    "expect_column_values_to_not_be_null": "not_null",
}


def rule_for(etype: str, kwargs: dict[str, Any]) -> Rule | None:
    """The rule that evaluates this expectation here, or None to leave it to GX."""
    if etype not in _RULES or not set(kwargs) <= _KWARGS[etype] or not isinstance(kwargs.get("column"), str):
        return None
    if kwargs.get("mostly") is not None and not is_number(kwargs["mostly"]):
        return None
    if etype == "expect_column_values_to_be_between":
        low, high = kwargs.get("min_value"), kwargs.get("max_value")
        if any(v is not None and not is_number(v) for v in (low, high)) or (low is None and high is None):
            return None  # strings, dates and suite parameters: GX; neither bound: GX's own error
        if low is not None and high is not None and low > high:
            return None  # GX's own error
        if any(kwargs.get(k) not in (None, True, False) for k in ("strict_min", "strict_max")):
            return None
    if etype == "expect_column_values_to_be_in_set" and not isinstance(kwargs.get("value_set"), list):
        return None
    return _RULES[etype]


def evaluate(df: pd.DataFrame, rule: Rule, kwargs: dict[str, Any]) -> Outcome | None:
    """The outcome GX would report for this partition; None where GX would take another code path."""
    column = df[kwargs["column"]]
    mostly = float(kwargs["mostly"]) if kwargs.get("mostly") is not None else 1.0
    nulls = column.isnull()
    if rule == "not_null":  # ExpectColumnValuesToNotBeNull: no missing count, success over all rows
        unexpected = int(nulls.sum())
        success = len(df) == 0 or (len(df) - unexpected) / len(df) >= mostly
        return Outcome(success, len(df), 0, unexpected, examples(column[nulls][:PARTIAL_UNEXPECTED]))
    present = column[~nulls]  # filter_column_isnull: nulls are missing, not unexpected
    if rule == "between":
        if present.dtype not in [int, float]:  # GX's test for its vectorised comparison
            return None
        meets = _between(present, kwargs.get("min_value"), kwargs.get("max_value"), kwargs.get("strict_min"), kwargs.get("strict_max"))
    else:
        meets = present.isin(kwargs["value_set"])
    bad = present[~meets]
    nonnull = len(present)
    success = len(df) == 0 or nonnull == 0 or (float(nonnull) - float(len(bad))) / float(nonnull) >= mostly
    return Outcome(success, len(df), len(df) - nonnull, len(bad), examples(bad[:PARTIAL_UNEXPECTED]))


def _between(column: pd.Series, low: Any, high: Any, strict_min: Any, strict_max: Any) -> pd.Series:
    if low is None:
        return column < high if strict_max else column <= high
    if high is None:
        return low < column if strict_min else low <= column
    above = low < column if strict_min else low <= column
    below = column < high if strict_max else column <= high
    return above & below
