"""Validate a raw dataset: a suite run per partition on Dask workers, global checks on aggregates.

The public API, re-exported from the modules that hold it:

- `expectations.py`: `load_expectations(path)`, the user's expectations file, read and checked.
- `run.py`: `validate_dataset(ddf_or_None, files, schema, expectations, storage_options)`, the JSON report.
- `report.py`: `report_markdown(report)` and `raise_if_failed(report)`.
- `partitions.py`: `SUITE_BUILDS`, the suites compiled in this process (read live, below).
- the other modules: `records.py` (the typed records), `suite.py` (the suite plan), `catalog.py`
  (GX expectation classes), `rules.py` (common rules evaluated as GX does), `gx_suite.py` (GX runs),
  `headers.py` (one header across files), `combine.py` (partials summed, global checks), `values.py`.
"""

from __future__ import annotations

from typing import Any

from tasks.validation import partitions
from tasks.validation.expectations import load_expectations
from tasks.validation.report import raise_if_failed, report_markdown
from tasks.validation.run import validate_dataset
from tasks.validation.values import CATEGORY_CAP, EXAMPLES

__all__ = ["CATEGORY_CAP", "EXAMPLES", "SUITE_BUILDS", "load_expectations", "raise_if_failed", "report_markdown", "validate_dataset"]


def __getattr__(name: str) -> Any:
    if name == "SUITE_BUILDS":  # a counter that changes: read it where it lives
        return partitions.SUITE_BUILDS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
