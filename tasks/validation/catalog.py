"""Which Great Expectations 1.x expectations can be checked partition by partition, and building them.

Great Expectations is imported inside the functions: it takes seconds to import, and a worker only
needs it when the suite holds an expectation that rules.py does not evaluate itself.
"""

from __future__ import annotations

import difflib
from typing import Any

from tasks.errors import TuneflowError
from tasks.validation.values import first_line

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


def expectation_class(etype: str, where: str) -> type:
    """The GX class for a snake_case type name, if it can be checked partition by partition."""
    from great_expectations.exceptions import ExpectationNotFoundError
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
    if not (is_map_expectation(cls) or etype in SCHEMA_LEVEL):
        raise TuneflowError(
            f"{where}: {etype} is computed over a whole column or table, but the data is validated partition by "
            "partition, so it cannot be checked exactly.",
            "use row-level expectations (expect_column_values_to_...), the columns: rules (min, max, allowed, "
            "not_null) or min_rows instead.",
        )
    return cls


def is_map_expectation(cls: type) -> bool:
    """A row-level expectation: its counts over the whole data are the sums of its counts per partition."""
    from great_expectations.expectations import expectation as gx_expectation

    bases = (gx_expectation.ColumnMapExpectation, gx_expectation.ColumnPairMapExpectation, gx_expectation.MulticolumnMapExpectation)
    return issubclass(cls, bases)


def build_expectation(etype: str, kwargs: dict[str, Any], where: str, meta: dict[str, Any] | None = None) -> Any:
    """The GX expectation object; bad kwargs become a TuneflowError naming them."""
    from great_expectations.expectations.registry import get_expectation_impl

    cls = get_expectation_impl(etype)
    try:
        return cls(**{**kwargs, "meta": {**(kwargs.get("meta") or {}), **(meta or {})}})
    except (ValueError, TypeError) as exc:  # pydantic's ValidationError is a ValueError
        detail = "; ".join(line.strip() for line in str(exc).splitlines()[1:] if line.strip()) or first_line(exc)
        raise TuneflowError(
            f"{where}: invalid kwargs for {etype}: {detail}.",
            f"give the keyword arguments of {cls.__name__} from the Great Expectations 1.x docs.",
        ) from exc
