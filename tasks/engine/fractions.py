"""Data-fraction fidelity: nested, deterministic subsets of a split's rows.

The subset of fraction f is the first ceil(f * n) rows of one fixed permutation, seeded by the
dataset version (and, in data-parallel placement, the worker's slice): the same rows for every
trial and every run, and 1/9 of the rows inside 1/3 of them.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np


def check_fraction(fraction: float) -> float:
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"a data fraction must be in (0, 1], got {fraction}")
    return float(fraction)


def subset_rows(n: int, fraction: float, seed_text: str) -> np.ndarray | None:
    """Sorted row indices of the `fraction` subset of n rows (None: all of them)."""
    if check_fraction(fraction) >= 1.0:
        return None
    seed = int(hashlib.sha256(seed_text.encode()).hexdigest()[:16], 16)
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[: max(1, math.ceil(fraction * n))])
