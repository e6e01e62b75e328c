"""User-facing errors: each names the problem and how to fix it."""

from __future__ import annotations


class TuneflowError(Exception):
    """A problem the user can fix; rendered as one line, never as a traceback."""

    def __init__(self, problem: str, fix: str) -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem} Fix: {fix}")


class DataValidationError(TuneflowError):
    """The dataset failed its expectation suite; `report` holds the details."""

    def __init__(self, problem: str, fix: str, report: dict) -> None:
        super().__init__(problem, fix)
        self.report = report


class TransientError(Exception):
    """A failure worth retrying (object store hiccup, lost worker, collective timeout)."""
