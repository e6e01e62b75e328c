"""In-process listeners for trial events (the CLI's live display subscribes here)."""

from __future__ import annotations

from collections.abc import Callable

from tasks.tuning.loop import TrialEvent

_listeners: list[Callable[[TrialEvent], None]] = []


def subscribe(listener: Callable[[TrialEvent], None]) -> Callable[[], None]:
    """Add a listener; returns the function that removes it."""
    _listeners.append(listener)
    return lambda: _listeners.remove(listener)


def publish(event: TrialEvent) -> None:
    for listener in list(_listeners):
        listener(event)
