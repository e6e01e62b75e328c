"""The run plan: checked once, reused by the flow only while the inputs are the same files."""

from __future__ import annotations

from pathlib import Path

from tasks.plan import plan_run
from tests.conftest import make_csv


def test_plan_is_reused_until_the_inputs_change(tmp_path: Path) -> None:
    csv = make_csv(tmp_path / "churn.csv", 500)
    args = (str(csv), "churned", "binary", None, None, None, 0, None, 4, None, 2)
    first = plan_run(*args)
    assert plan_run(*args) is first  # the CLI's plan, reused by the flow
    assert plan_run(*args[:-1], 3) is not first  # other arguments: planned again
    make_csv(csv, 600)  # the same path, other content
    changed = plan_run(*args)
    assert changed is not first and changed.fingerprint != first.fingerprint
