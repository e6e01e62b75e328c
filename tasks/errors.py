"""User-facing errors: each names the problem and how to fix it."""

from __future__ import annotations

from tasks.redact import redact


class TuneflowError(Exception):
    """A problem the user can fix; rendered as one line, never as a traceback; passwords masked."""

    def __init__(self, problem: str, fix: str) -> None:
        self.problem = redact(problem)  # a URL's password never reaches a message (tasks/redact.py)
        self.fix = redact(fix)
        super().__init__(f"{self.problem} Fix: {self.fix}")


class DataValidationError(TuneflowError):
    """The dataset failed its expectation suite; `report` holds the details."""

    def __init__(self, problem: str, fix: str, report: dict) -> None:
        super().__init__(problem, fix)
        self.report = report


class ServiceError(TuneflowError):
    """Not the user's input: a service tuneflow starts for itself (the temporary Prefect server)
    did not come up after bounded retries. One line too, but exit code 3 instead of 2."""

    exit_code = 3


class TransientError(Exception):
    """A failure worth retrying (object store hiccup, lost worker, collective timeout)."""


# XGBoost reports a peer that vanished mid-training (data-parallel) as an XGBoostError.
_COLLECTIVE_HINTS = ("socket", "connection", "timed out", "timeout", "peer", "tracker", "rabit", "collective")


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: a lost worker, a network/storage error or a timeout, not a bug or bad input."""
    if isinstance(exc, TuneflowError):
        return False
    if isinstance(exc, (TransientError, OSError, TimeoutError)):  # OSError covers comm and S3 errors
        return not isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError))
    name = type(exc).__name__
    if name in ("KilledWorker", "CommClosedError", "FutureCancelledError", "ClientConnectorError", "ServerDisconnectedError"):
        return True
    if name == "XGBoostError":
        return any(h in str(exc).lower() for h in _COLLECTIVE_HINTS)
    return "botocore" in type(exc).__module__ or "aiobotocore" in type(exc).__module__
