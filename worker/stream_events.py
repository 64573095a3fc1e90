"""Aggregates a stream's count events (line crossings, zone entries and exits) into few webhooks.

A herd walking through a gate crosses its line 300 times in a minute: its receiver should get
a summary, not 300 calls. Two rules, both per stream:

- cooldown (STREAM_EVENT_COOLDOWN_S), per line or zone: the first event of a quiet line is
  sent at once; the ones that follow within the cooldown wait and go out together, as one
  summary, when the cooldown since that line's previous summary has passed;
- a cap (STREAM_EVENTS_PER_MINUTE) on the webhooks sent in any 60 s: past it, summaries keep
  accumulating until a slot frees. Nothing is dropped, only merged.

Each webhook carries every summary due at that moment. Pure logic with an injectable clock;
the worker (worker/streams.py) sends what ``due`` returns through the durable outbox.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

RATE_WINDOW_S = 60.0


class CountEventLike(Protocol):
    """The engine's CountEvent (ml_engine.live.run), as far as the aggregator reads it."""

    kind: str  # "line_crossing" | "zone_entry" | "zone_exit"
    name: str
    direction: str | None
    class_name: str
    at: str  # ISO time


@dataclass
class _Pending:
    """The events of one line or zone since its last summary."""

    first_at: str
    last_at: str
    events: int = 0
    by_bucket: dict[str, Counter[str]] = field(default_factory=dict)  # "in"/"out"/"entries"/"exits" -> class -> n


def _target(kind: str) -> str:
    return "line" if kind == "line_crossing" else "zone"


def _bucket(event: CountEventLike) -> str:
    if event.kind == "line_crossing":
        return event.direction or "crossed"
    return "entries" if event.kind == "zone_entry" else "exits"


class EventAggregator:
    def __init__(self, cooldown_s: float, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._cooldown_s = cooldown_s
        self._per_minute = per_minute
        self._clock = clock
        self._pending: dict[tuple[str, str], _Pending] = {}
        self._last_summary: dict[tuple[str, str], float] = {}  # target -> when its last summary went out
        self._sent: deque[float] = deque()  # when each webhook of the last minute went out

    def add(self, event: CountEventLike) -> None:
        key = (_target(event.kind), event.name)
        pending = self._pending.get(key)
        if pending is None:
            pending = self._pending[key] = _Pending(first_at=event.at, last_at=event.at)
        pending.last_at = event.at
        pending.events += 1
        pending.by_bucket.setdefault(_bucket(event), Counter())[event.class_name] += 1

    @property
    def pending(self) -> int:
        """Events not yet in a summary."""
        return sum(p.events for p in self._pending.values())

    def due(self, final: bool = False) -> list[dict[str, Any]]:
        """The summaries to send now, as one webhook (empty: send nothing). ``final``: the
        stream ends, so everything pending goes, past cooldown and cap."""
        now = self._clock()
        while self._sent and now - self._sent[0] >= RATE_WINDOW_S:
            self._sent.popleft()
        if not final and len(self._sent) >= self._per_minute:
            return []
        ready = [key for key in self._pending
                 if final or now - self._last_summary.get(key, float("-inf")) >= self._cooldown_s]
        if not ready:
            return []
        summaries = [self._summary(key, self._pending.pop(key)) for key in sorted(ready)]
        for key in ready:
            self._last_summary[key] = now
        self._sent.append(now)
        return summaries

    @staticmethod
    def _summary(key: tuple[str, str], pending: _Pending) -> dict[str, Any]:
        target, name = key
        return {
            "target": target,
            "name": name,
            "from": pending.first_at,
            "to": pending.last_at,
            "events": pending.events,
            **{bucket: dict(sorted(counts.items())) for bucket, counts in sorted(pending.by_bucket.items())},
        }
