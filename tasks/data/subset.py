"""`--sample FRACTION|ROWS` ("start small"): a deterministic, uniform subset of the labelled rows,
sharded as its own dataset version, for a quick smoke run of the whole pipeline.

- Spec: a fraction `0 < f < 1` (`0.1`, or `10%`) or a whole row count `>= 1` (`50000`). Its
  normalised text (`"0.1"`, `"50000"`) is what `RunPlan.sample`, the fingerprint and the manifest hold.
- Rows kept: a row is in the sample when a seeded hash of its row key (or of its position in its
  input partition, as for the split) falls below the fraction. The hash is salted apart from the
  split's, so the sample spreads over train/valid/test in the usual proportions, and each kept row
  keeps the split it has in the full dataset. Smaller samples (same seed) nest inside larger ones.
- ROWS: becomes the fraction N / labelled rows once that total is known. The flow knows it from
  validation (`report["rows"]` minus the target's nulls, `report["profile"]["nulls"]`) and passes
  `report["rows"]` to the shard step; without it, the shard step counts the labelled rows in one
  extra pass. N at or above the total keeps every row: the manifest says so (`all_rows: true`).
  The result is about N rows (binomial: +- ~sqrt(N)), not exactly N: exact would need a global
  threshold, i.e. another pass over all the data.

Validation runs on all rows, not on the subset. A smoke run is there to fail fast on what the full
run would fail on, and the data problems are exactly what a subset hides: a bad value in a few rows,
a rare category or class, the row-count and null-share expectations (which are about the dataset,
not about a 1% draw). The shard step reads every row anyway to pick the sample, so validating all of
them adds a pass over data that is being read, not a different cost class; the savings of a smoke
run are in sharding less and training on less, which is where its time goes. It also gives ROWS its
total for free, and the profile (every category, every class) is the full data's, so the subset's
encoding matches the full run's. Validation does not depend on the sample: keyed on the unsampled
fingerprint, the full run after a smoke run reuses its validation report.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tasks.errors import TuneflowError

_FIX = "use --sample with a fraction between 0 and 1 (0.1 or 10%) or a whole row count of at least 1 (50000)."
_INTEGER = re.compile(r"[+-]?\d+(?:_\d+)*")


@dataclass(frozen=True)
class SampleSpec:
    """A checked `--sample`: exactly one of `fraction` and `rows` is set."""

    text: str  # normalised, as in RunPlan.sample, the fingerprint and the manifest: "0.1" or "50000"
    fraction: float | None = None
    rows: int | None = None

    def fraction_of(self, total: int) -> float:
        """The share of `total` labelled rows to keep (1.0: all of them)."""
        if self.fraction is not None:
            return self.fraction
        assert self.rows is not None
        return 1.0 if total <= self.rows else self.rows / total


def parse_sample(value: str | None) -> SampleSpec | None:
    """Check and normalise `--sample`; None stays None (all rows). Raises TuneflowError on a bad value."""
    if value is None:
        return None
    text = str(value).strip()
    bad = TuneflowError(f"Bad --sample {value!r}.", _FIX)
    if _INTEGER.fullmatch(text):  # a whole number: a row count
        rows = int(text)
        if rows < 1:
            raise TuneflowError(f"Bad --sample {value!r}: a row count must be at least 1.", _FIX)
        return SampleSpec(str(rows), rows=rows)
    percent = text.endswith("%")
    try:
        number = float(text[:-1] if percent else text)
    except ValueError:
        raise bad from None
    fraction = number / 100 if percent else number
    if not math.isfinite(fraction) or not 0 < fraction < 1:
        if not percent and number >= 1 and math.isfinite(number):
            raise TuneflowError(f"Bad --sample {value!r}: not a fraction below 1, nor a whole row count.", _FIX)
        raise TuneflowError(f"Bad --sample {value!r}: a fraction must be above 0 and below 1.", _FIX)
    return SampleSpec(repr(fraction), fraction=fraction)


def normalise_sample(value: str | None) -> str | None:
    """The normalised text of `--sample` ('10%' -> '0.1'), or None."""
    spec = parse_sample(value)
    return spec.text if spec else None


def sampled_rows(sample: str | None, rows: int) -> int:
    """About how many of `rows` labelled rows the sample keeps (`rows` itself without a sample)."""
    spec = parse_sample(sample)
    return rows if spec is None else round(rows * spec.fraction_of(rows))


def _seed_mix(seed: int) -> np.uint64:
    return np.uint64(int.from_bytes(hashlib.sha256(f"tuneflow-sample:{seed}".encode()).digest()[:8], "little"))


def sample_mask(row_hashes: np.ndarray, *, seed: int, fraction: float) -> np.ndarray:
    """Which rows are in the sample, from the same per-row base hashes the split uses.

    Salted with its own seed mix and read from the high 32 bits (the split reads the low 32),
    so being sampled says nothing about a row's split."""
    if fraction >= 1:
        return np.ones(len(row_hashes), dtype=bool)
    hashes = pd.util.hash_array(np.asarray(row_hashes, dtype=np.uint64) ^ _seed_mix(seed))
    u = (hashes >> np.uint64(32)).astype(np.float64) / float(1 << 32)
    return u < fraction


def sample_record(spec: SampleSpec, fraction: float, of_rows: int, kept_rows: int, seed: int, row_key: str | None) -> dict[str, Any]:
    """The manifest's `sample`: what was asked, the fraction used and the rows it kept."""
    return {
        "spec": spec.text,
        "kind": "rows" if spec.rows is not None else "fraction",
        "fraction": fraction,
        "of_rows": of_rows,  # labelled rows in the full data
        "rows": kept_rows,
        "all_rows": fraction >= 1,
        "seed": seed,
        "method": "row_key hash" if row_key else "row position hash",
    }
