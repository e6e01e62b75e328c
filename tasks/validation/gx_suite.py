"""Running expectations with Great Expectations' pandas engine on one partition (on a Dask worker).

Great Expectations is imported on first use only: a suite that rules.py evaluates entirely never
loads it on the workers.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from tasks.validation.catalog import build_expectation
from tasks.validation.records import Outcome, PlannedExpectation
from tasks.validation.values import examples, plain


class GxSuite:
    """An ephemeral GX context, a whole-dataframe batch definition and a suite of the given expectations."""

    def __init__(self, items: dict[int, PlannedExpectation]) -> None:
        import great_expectations as gx
        from great_expectations.data_context.types.base import DataContextConfig, InMemoryStoreBackendDefaults, ProgressBarsConfig

        config = DataContextConfig(
            analytics_enabled=False,
            progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
            store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        )
        context = gx.get_context(mode="ephemeral", project_config=config)
        self.batch_definition = (
            context.data_sources.add_pandas("tuneflow").add_dataframe_asset("partition").add_batch_definition_whole_dataframe("whole")
        )
        self.suite = gx.ExpectationSuite(name="tuneflow")
        for index, item in items.items():
            self.suite.add_expectation(build_expectation(item.type, item.kwargs, "Expectations", meta={"tuneflow_index": index}))

    def run(self, df: pd.DataFrame) -> dict[int, Outcome]:
        """Outcome per expectation index (the index in the plan)."""
        run = self.batch_definition.get_batch(batch_parameters={"dataframe": df}).validate(self.suite, result_format="SUMMARY")
        outcomes = {}
        for r in run.results:
            index = (r.expectation_config.meta or {}).get("tuneflow_index")
            if index is not None:
                outcomes[index] = _outcome(r)
        return outcomes


def _outcome(r: Any) -> Outcome:
    result = r.result or {}
    info = r.exception_info or {}
    raised = info.get("raised_exception") if "raised_exception" in info else any(
        isinstance(v, dict) and v.get("raised_exception") for v in info.values()
    )
    message = info.get("exception_message") or next(
        (v.get("exception_message") for v in info.values() if isinstance(v, dict) and v.get("exception_message")), None
    )
    return Outcome(
        success=bool(r.success),
        element_count=int(result.get("element_count") or 0),
        missing_count=int(result.get("missing_count") or 0),
        unexpected_count=int(result.get("unexpected_count") or 0),
        examples=examples(result.get("partial_unexpected_list") or []),
        observed=plain(result.get("observed_value")),
        error=str(message) if raised else None,
    )
