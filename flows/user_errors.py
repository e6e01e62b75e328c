"""A user's error (a TuneflowError: bad input, a failed validation) is one line, never a traceback.

Prefect's flow and task engines log a failed run's exception with its traceback (`logger.exception`);
the CLI then prints the same error as its one `error:` line. For a TuneflowError the traceback only
hides that line among engine frames, so this filter drops it (the message stays in the log).
"""

from __future__ import annotations

import logging

from tasks.errors import TuneflowError

ENGINE_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")


class NoTracebackForUserErrors(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], TuneflowError):
            record.exc_info = None
            record.exc_text = None
        return True


_FILTER = NoTracebackForUserErrors()


def install() -> None:
    """Idempotent; logger filters outlive Prefect's logging setup (dictConfig keeps them)."""
    for name in ENGINE_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
