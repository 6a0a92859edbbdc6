"""The classify loop: capture -> classify -> sinks, with stats, clean stop on Ctrl-C / SIGTERM."""

from __future__ import annotations

import signal
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgecnn.stream.capture import Capture


@dataclass
class LoopStats:
    classified: int = 0
    started: float = field(default_factory=time.monotonic)
    ended: float = 0.0
    stages: dict[str, list[float]] = field(
        default_factory=lambda: {"capture_age": [], "preprocess": [], "inference": [], "postprocess": []}
    )

    def add(self, timings: dict[str, float]) -> None:
        for k, v in timings.items():
            values = self.stages.setdefault(k, [])
            values.append(v)
            if len(values) > 10_000:  # bounded for week-long runs: keep a recent window
                del values[:5_000]

    @property
    def fps(self) -> float:
        dt = (self.ended or time.monotonic()) - self.started
        return self.classified / dt if dt > 0 else 0.0

    def percentiles(self) -> dict[str, dict[str, float]]:
        return {k: {"p50": float(np.percentile(v, 50)), "p90": float(np.percentile(v, 90))} for k, v in self.stages.items() if v}


def run_loop(
    classifier: Any,
    capture: Capture,
    sinks: list[Any],
    *,
    max_frames: int | None = None,
    duration: float | None = None,
    stop: threading.Event | None = None,
    on_prediction: Any = None,
    health: Any = None,
) -> dict[str, Any]:
    """Classify frames until the source ends, ``max_frames``/``duration`` is reached, or ``stop`` is set."""
    stop = stop or threading.Event()
    stats = LoopStats()
    handlers = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            handlers[sig] = signal.signal(sig, lambda *_: stop.set())
    fps_window: deque[float] = deque()
    try:
        while not stop.is_set():
            if max_frames is not None and stats.classified >= max_frames:
                break
            if duration is not None and time.monotonic() - stats.started >= duration:
                break
            try:
                frame = capture.get(timeout=0.5)
            except StopIteration:
                break
            if health is not None and health.due(time.monotonic()):
                health.write(time.monotonic(), stats, capture)
            if frame is None:
                continue
            age = (time.monotonic() - frame.t_capture) * 1e3
            pred = classifier.classify(frame.image, source_order="BGR")
            timings = {"capture_age": age, **pred.timings_ms}
            stats.classified += 1
            stats.add(timings)
            if health is not None:
                health.observe(timings)
            now = time.monotonic()
            fps_window.append(now)
            while fps_window and now - fps_window[0] > 2.0:
                fps_window.popleft()
            fps = (len(fps_window) - 1) / (fps_window[-1] - fps_window[0]) if len(fps_window) > 1 else 0.0
            record = {"frame": frame.index, "time": round(time.time(), 4), **pred.to_dict()}
            record["latency_ms"] = {k: round(v, 3) for k, v in timings.items()}
            for sink in sinks:
                sink.write(frame.image, record, pred.top, fps)
            if on_prediction:
                on_prediction(frame, pred)
    finally:
        stats.ended = time.monotonic()
        for sig, old in handlers.items():
            signal.signal(sig, old)
    c = capture.stats
    return {
        "frames_read": c.read,
        "classified": stats.classified,
        "dropped": c.dropped,
        "corrupt": c.corrupt,
        "reconnects": c.reconnects,
        "frozen_events": c.frozen_events,
        "fps": stats.fps,
        "latency_ms": stats.percentiles(),
        "recent_errors": list(c.errors),
    }
