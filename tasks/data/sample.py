"""Seeded generator of a realistic tabular binary task: customer churn with numeric and
categorical columns and missing values (the demo's data; tests and benchmarks use it too).
`python data/make_sample.py --rows 250000 --out data/generated/churn.csv` writes it as CSV.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

REGIONS = ["north", "south", "east", "west", "central"]
PLANS = ["free", "basic", "pro", "enterprise"]
DEVICES = ["android", "ios", "web", "desktop"]


def make_churn(rows: int, seed: int = 7) -> pd.DataFrame:
    """Churn-like data whose label depends non-linearly on numeric and categorical columns."""
    rng = np.random.default_rng(seed)
    tenure = rng.gamma(2.0, 12.0, rows)
    monthly = rng.normal(45, 18, rows).clip(5, None)
    support_calls = rng.poisson(1.5, rows).astype(float)
    usage_hours = rng.lognormal(2.5, 0.8, rows)
    late_payments = rng.poisson(0.4, rows).astype(float)
    discount = rng.uniform(0, 0.4, rows)
    age = rng.integers(18, 80, rows).astype(float)
    region = rng.choice(REGIONS, rows, p=[0.25, 0.2, 0.2, 0.2, 0.15])
    plan = rng.choice(PLANS, rows, p=[0.35, 0.35, 0.2, 0.1])
    device = rng.choice(DEVICES, rows)
    noise = rng.normal(0, 1, (rows, 6))

    plan_effect = pd.Series(plan).map({"free": 0.8, "basic": 0.2, "pro": -0.3, "enterprise": -0.9}).to_numpy()
    region_effect = pd.Series(region).map({"north": 0.1, "south": -0.2, "east": 0.3, "west": 0.0, "central": -0.1}).to_numpy()
    logit = (
        -1.0
        - 0.04 * tenure
        + 0.015 * (monthly - 45)
        + 0.35 * support_calls
        - 0.25 * np.log1p(usage_hours)
        + 0.6 * late_payments
        - 2.0 * discount
        + plan_effect
        + region_effect
        + 0.5 * np.sin(age / 8.0)
        + 0.3 * (device == "web") * (support_calls > 2)
    )
    churned = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)

    df = pd.DataFrame(
        {
            "customer_id": np.arange(rows),
            "tenure_months": tenure.round(1),
            "monthly_charges": monthly.round(2),
            "support_calls": support_calls,
            "usage_hours": usage_hours.round(2),
            "late_payments": late_payments,
            "discount": discount.round(3),
            "age": age,
            "region": region,
            "plan": plan,
            "device": device,
            **{f"signal_{i}": noise[:, i].round(4) for i in range(noise.shape[1])},
            "churned": churned,
        }
    )
    # Realistic gaps: missing values in a few columns.
    for col, share in [("monthly_charges", 0.02), ("usage_hours", 0.05), ("region", 0.03), ("age", 0.01)]:
        df.loc[rng.random(rows) < share, col] = None
    return df
