"""A health line every few seconds for long camera runs: memory, threads, descriptors, buffers, latency.

``edgecnn classify ... --health health.jsonl`` writes one JSON object per interval, so a run that must last
for weeks can be watched (and a leak caught) without a debugger: tools/soak.py plots it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.errors import StreamError


def process_stats() -> dict[str, Any]:
    """RSS (MB), OS threads and open file descriptors of this process (psutil; fds are None where unsupported)."""
    import psutil

    p = psutil.Process()
    with p.oneshot():
        rss = p.memory_info().rss / 1e6
        threads = p.num_threads()
        try:
            fds = p.num_fds()
        except AttributeError:  # Windows
            fds = None
    return {"rss_mb": round(rss, 2), "threads": threads, "fds": fds}


class HealthLog:
    """Collects per-frame timings and writes a summary line every ``every`` seconds to ``target``."""

    def __init__(self, target: str | Path, every: float = 10.0) -> None:
        if every <= 0:
            raise StreamError(f"the health interval must be positive; received {every:g} s")
        self.path, self.every = Path(target), every
        try:
            self.f = open(self.path, "w", encoding="utf-8", buffering=1)
        except OSError as exc:
            raise StreamError(f"cannot write the health log {self.path}: {exc.strerror}") from None
        self.t0 = time.monotonic()
        self._next = self.t0 + every
        self._window: dict[str, list[float]] = {"total": [], "inference": [], "capture_age": []}
        self._last_classified = 0
        self._last_t = self.t0

    def observe(self, timings: dict[str, float]) -> None:
        w = self._window
        w["total"].append(timings.get("preprocess", 0.0) + timings.get("inference", 0.0) + timings.get("postprocess", 0.0))
        w["inference"].append(timings.get("inference", 0.0))
        w["capture_age"].append(timings.get("capture_age", 0.0))

    def due(self, now: float) -> bool:
        return now >= self._next

    def write(self, now: float, loop: Any, capture: Any, *, ended_by: str | None = None) -> dict[str, Any]:
        """One record from the loop's and the capture's counters; the latency window starts afresh. The last record
        of a run says why it ended (``ended_by``: source, max_frames, duration, stop)."""
        c = capture.stats
        dt = max(now - self._last_t, 1e-9)
        record: dict[str, Any] = {
            "t_s": round(now - self.t0, 2),
            "time": round(time.time(), 3),
            **process_stats(),
            "classified": loop.classified,
            "fps": round((loop.classified - self._last_classified) / dt, 2),
            "frames_read": c.read,
            "dropped": c.dropped,
            "corrupt": c.corrupt,
            "reconnects": c.reconnects,
            "frozen_events": c.frozen_events,
            "latency_ms": {
                k: {"n": len(v), "p50": round(float(np.percentile(v, 50)), 3), "p99": round(float(np.percentile(v, 99)), 3)}
                for k, v in self._window.items()
                if v
            },
            "buffers": {  # everything that could grow with uptime, and its bound
                "capture_pending": capture.pending(),  # newest-frame slot: 0 or 1
                "stage_window": max((len(v) for v in loop.stages.values()), default=0),  # <= 10,000
                "error_log": len(c.errors),  # <= 20
                "event_log": len(c.events),  # <= 100
            },
        }
        if ended_by is not None:
            record["ended_by"] = ended_by
        self.f.write(json.dumps(record, separators=(",", ":")) + "\n")
        for v in self._window.values():
            v.clear()
        self._last_classified, self._last_t = loop.classified, now
        while self._next <= now:
            self._next += self.every
        return record

    def close(self) -> None:
        self.f.close()
