"""What a Dask worker runs for one partition: the suite's outcomes and the partial aggregates.

Imports pandas and this package's worker-side modules only (no Prefect, MLflow or pydantic; Great
Expectations only once a suite needs it, see gx_suite.py).
"""

from __future__ import annotations

import os

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")  # before great_expectations is imported anywhere

import threading

import numpy as np
import pandas as pd

from tasks.validation import rules
from tasks.validation.gx_suite import GxSuite  # imports Great Expectations only when a GxSuite is built
from tasks.validation.records import BadValues, Outcome, PartitionResult, SuitePlan
from tasks.validation.values import EXAMPLES, examples, plain

_local = threading.local()  # compiled suites per worker thread (GX objects are not documented thread-safe)
SUITE_BUILDS = 0  # how many suites this process compiled (tests check the cache with it)

FLOAT32_MAX = float(np.finfo(np.float32).max)  # the shards and XGBoost hold features as float32


class CompiledSuite:
    """A plan's expectations ready to run: rules.py's here, the others by a GX suite built on first need."""

    def __init__(self, plan: SuitePlan) -> None:
        self.plan = plan
        self._gx: dict[tuple[int, ...], GxSuite] = {}  # per set of expectation indices

    def outcomes(self, df: pd.DataFrame) -> list[Outcome | None]:
        items = self.plan.expectations
        outcomes = [rules.evaluate(df, item.rule, item.kwargs) if item.rule else None for item in items]
        rest = tuple(i for i, outcome in enumerate(outcomes) if outcome is None)
        if rest:
            for index, outcome in self._gx_suite(rest).run(df).items():
                outcomes[index] = outcome
        return outcomes

    def _gx_suite(self, indices: tuple[int, ...]) -> GxSuite:
        if indices not in self._gx:
            self._gx[indices] = GxSuite({i: self.plan.expectations[i] for i in indices})
        return self._gx[indices]


def compiled_suite(plan: SuitePlan) -> CompiledSuite:
    """The compiled suite for this plan, built once per worker thread and reused."""
    global SUITE_BUILDS
    cache = getattr(_local, "suites", None)
    if cache is None:
        cache = _local.suites = {}
    if plan.key not in cache:
        cache[plan.key] = CompiledSuite(plan)
        SUITE_BUILDS += 1
    return cache[plan.key]


def validate_partition(df: pd.DataFrame, plan: SuitePlan) -> PartitionResult:
    """Suite outcome and partial aggregates of one partition (runs on a Dask worker)."""
    nulls = {str(c): int(n) for c, n in df.isna().sum().items()}
    coerced: dict[str, BadValues] = {}
    if plan.coerce:
        df = df.copy()
        for col in plan.coerce:
            text = df[col]
            values = pd.to_numeric(text, errors="coerce").astype("float64")
            bad = text.notna() & values.isna()
            coerced[col] = BadValues(int(bad.sum()), examples(text[bad].unique()[: EXAMPLES * 4]))
            df[col] = values
    outcomes: list[Outcome | None] = []
    if plan.expectations:
        outcomes = compiled_suite(plan).outcomes(df)
        for item, outcome in zip(plan.expectations, outcomes):  # a non-number is the type check's, not a null
            column = item.kwargs.get("column")
            if item.type == "expect_column_values_to_not_be_null" and column in coerced and outcome is not None:
                outcome.unexpected_count = max(0, outcome.unexpected_count - coerced[column].count)
                outcome.success = outcome.unexpected_count == 0
    numeric_ranges, infinite = {}, {}
    for col in list(plan.numeric) + [c for c in plan.coerce if c not in plan.numeric]:
        values = df[col]
        inf = np.abs(values.to_numpy(dtype="float64", na_value=np.nan)) > FLOAT32_MAX
        if inf.any():  # CSV inf/-inf/Infinity, Parquet float infinities, and numbers the float32 shards would turn into them: XGBoost cannot train on them
            signs = [("inf" if v > 0 else "-inf") if np.isinf(v) else repr(float(v)) for v in values[inf].unique()]
            infinite[col] = BadValues(int(inf.sum()), sorted(signs, reverse=True))
            values = values[~inf]
        numeric_ranges[col] = [plain(values.min()), plain(values.max())] if values.notna().any() else None
    categories, truncated = {}, []
    for col in plan.categorical:
        distinct = df[col].dropna().unique()
        if len(distinct) > plan.category_cap:
            truncated.append(col)
            distinct = sorted(map(str, distinct))[: plan.category_cap]
        categories[col] = [str(v) for v in distinct]
    classes = {}
    if plan.classification:
        counts = df[plan.target].dropna().value_counts()
        if len(counts) > plan.category_cap:
            truncated.append(plan.target)
            counts = counts.iloc[: plan.category_cap]
        classes = {str(k): int(v) for k, v in counts.items()}
    return PartitionResult(len(df), nulls, coerced, outcomes, numeric_ranges, categories, classes, truncated, infinite)
