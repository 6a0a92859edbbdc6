"""A debounced state per source: what the camera *sees*, not what one frame says.

A label becomes the state once it wins ``debounce`` consecutive classifications, each with a confidence of at least
``min_confidence``, over at least ``min_dwell`` seconds (from its first win to its last). A frame with another label,
or one below the confidence floor, starts the count again: a single-frame flip never reaches the state, and a
label that only sometimes wins never does either. Until the first label wins, the state is ``None`` (unknown).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from edgecnn.errors import ConfigError

HISTORY = 50  # state changes kept per source (the /state page, the live page)


@dataclass(frozen=True)
class StateChange:
    """One change of a source's state: when, to what, from what, and how sure (the frame that made it)."""

    source: str
    state: str
    previous: str | None
    confidence: float
    time: float  # epoch seconds of the frame that completed the streak
    frame: int  # that frame's capture index
    top: tuple[tuple[str, float], ...] = ()
    seq: int = 0  # 1 for a source's first change, then 2, 3...
    captured: float = 0.0  # epoch seconds that frame was captured (time less the capture-to-prediction latency)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "state": self.state,
            "previous": self.previous,
            "confidence": round(self.confidence, 4),
            "time": round(self.time, 3),
            "frame": self.frame,
            "seq": self.seq,
            "captured": round(self.captured or self.time, 4),
            "top": [{"label": lab, "p": round(p, 4)} for lab, p in self.top],
        }


@dataclass
class Debouncer:
    """The state of one source, fed one classification at a time (``update``)."""

    source: str
    debounce: int = 3
    min_confidence: float = 0.0
    min_dwell: float = 0.0
    state: str | None = None
    confidence: float = 0.0  # of the latest frame that agreed with the state
    since: float = 0.0  # epoch seconds the state began
    changes: int = 0
    history: deque[StateChange] = field(default_factory=lambda: deque(maxlen=HISTORY))
    _candidate: str | None = None
    _count: int = 0
    _first: float = 0.0  # monotonic time of the candidate's first win

    def __post_init__(self) -> None:
        if isinstance(self.debounce, bool) or not isinstance(self.debounce, int) or self.debounce < 1:
            raise ConfigError(
                f"source {self.source!r}: debounce must be a whole number of at least 1; received {self.debounce!r}"
            )
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ConfigError(f"source {self.source!r}: min_confidence must be from 0 to 1; received {self.min_confidence!r}")
        if self.min_dwell < 0:
            raise ConfigError(f"source {self.source!r}: min_dwell must be 0 or more seconds; received {self.min_dwell!r}")

    def update(
        self,
        top: list[tuple[str, float]],
        *,
        frame: int = 0,
        now: float | None = None,
        wall: float | None = None,
        captured: float = 0.0,
    ) -> StateChange | None:
        """Count one classification (its top-k, best first); the change it completes, or None."""
        now = time.monotonic() if now is None else now
        label, p = top[0]
        if p < self.min_confidence:
            self._candidate, self._count = None, 0
            return None
        if label == self.state:
            self._candidate, self._count = None, 0
            self.confidence = p
            return None
        if label != self._candidate:
            self._candidate, self._count, self._first = label, 0, now
        self._count += 1
        if self._count < self.debounce or now - self._first < self.min_dwell:
            return None
        wall = time.time() if wall is None else wall
        self.changes += 1
        change = StateChange(
            self.source, label, self.state, p, wall, frame, tuple((lab, float(q)) for lab, q in top), self.changes, captured
        )
        self.state, self.confidence, self.since = label, p, wall
        self._candidate, self._count = None, 0
        self.history.append(change)
        return change

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "state": self.state,
            "confidence": round(self.confidence, 4),
            "since": round(self.since, 3) if self.state is not None else None,
            "changes": self.changes,
            "history": [c.to_dict() for c in tuple(self.history)],  # one C-level copy: the loop thread may append meanwhile
        }
