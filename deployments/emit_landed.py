"""Tell Prefect that new data has landed, which triggers the `tune-xgboost/on-new-data` deployment.

    python deployments/emit_landed.py s3://bucket/landing/2026-11/ churned
"""

from __future__ import annotations

import sys

from prefect.events import emit_event


def emit_landed(data_uri: str, target: str) -> None:
    """Emit the tuneflow.data.landed event for `data_uri` (its resource carries data and target)."""
    emit_event(
        event="tuneflow.data.landed",
        resource={
            "prefect.resource.id": f"tuneflow.dataset.{data_uri}",
            "tuneflow.data.uri": data_uri,
            "tuneflow.target": target,
        },
    )


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python deployments/emit_landed.py DATA_URI TARGET")
    emit_landed(sys.argv[1], sys.argv[2])
    print(f"emitted tuneflow.data.landed for {sys.argv[1]}")
