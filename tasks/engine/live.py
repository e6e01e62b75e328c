"""Boosters a worker keeps live between a trial's units (rungs, PBT segments), in both placements.

A live booster keeps its prediction cache for the matrices it trained on, so the next unit
continues it for the cost of its new rounds only. It is used only by a unit that resumes from the
checkpoint it equals and trains on the same matrix; anything else loads the checkpoint.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

import xgboost as xgb

from tasks.contracts import TrialRequest

MAX_LIVE = 32  # a live booster holds its trees and a prediction cache per matrix (floats per row)


@dataclass
class LiveBooster:
    booster: xgb.Booster
    checkpoint_uri: str  # the saved copy this booster equals
    matrix: Hashable  # the key of the matrix it was trained on


class LiveBoosters:
    """Live boosters by `live_key`, least recently used first, at most `limit`."""

    def __init__(self, limit: int = MAX_LIVE) -> None:
        self.limit = limit
        self._items: OrderedDict[str, LiveBooster] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, request: TrialRequest, matrix: Hashable) -> xgb.Booster | None:
        """The live booster for this request if it is the one saved at `resume_from`, on `matrix`."""
        if not (request.live_key and request.resume_from):
            return None
        with self._lock:
            live = self._items.pop(request.live_key, None)
        if live is None or live.checkpoint_uri != request.resume_from or live.matrix != matrix:
            return None
        return live.booster

    def keep(self, request: TrialRequest, booster: xgb.Booster, matrix: Hashable) -> None:
        """Keep `booster` for the trial's next unit, if the request asked for a checkpoint of it."""
        if not (request.live_key and request.checkpoint_uri):
            return
        with self._lock:
            self._items[request.live_key] = LiveBooster(booster, request.checkpoint_uri, matrix)
            while len(self._items) > self.limit:
                self._items.popitem(last=False)

    def drop(self, where: Callable[[LiveBooster], bool] = lambda _: True) -> int:
        """Forget the boosters `where` selects (all by default); returns how many."""
        with self._lock:
            keys = [k for k, v in self._items.items() if where(v)]
            for k in keys:
                del self._items[k]
        return len(keys)

    def keys(self) -> list[str]:
        with self._lock:
            return list(self._items)
