"""Small value helpers shared by the driver and the workers: JSON-ready values, example lists, errors.

Imports numpy and pandas only (it runs on Dask workers).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

EXAMPLES = 5  # example values kept per expectation
CATEGORY_CAP = 1000  # distinct values kept per categorical column (and per label column)


def plain(value: Any) -> Any:
    """A JSON-ready copy: numpy/pandas scalars to Python, NaN/NA to None, containers recursively."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, np.ndarray, pd.Index, pd.Series)):
        return [plain(v) for v in list(value)]
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def examples(values: Any) -> list[Any]:
    """Up to EXAMPLES distinct plain values, in the order given."""
    return merge_examples([], [plain(v) for v in list(values)])


def merge_examples(have: list[Any], more: list[Any]) -> list[Any]:
    out = list(have)
    for v in more:
        if len(out) >= EXAMPLES:
            break
        v = plain(v)
        if v not in out:
            out.append(v)
    return out


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def first_line(exc: BaseException) -> str:
    """The first meaningful line of an exception's message (GX and pydantic wrap theirs)."""
    text = str(exc).strip()
    for line in text.splitlines():
        if line.strip() and not line.startswith("An error occurred while calling"):
            return line.strip().removeprefix("Original Message: ")
    return type(exc).__name__
