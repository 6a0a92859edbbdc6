"""The classify loop: capture -> classify -> sinks, with stats, clean stop on Ctrl-C / SIGTERM.

``classify_stream`` is the one entry point (the CLI, the demo and the benchmarks call it): it takes the signals
first, so that Ctrl-C or SIGTERM stops within a second also while a camera is still connecting or reconnecting,
opens the source and the sinks, runs the loop and closes everything (one ExitStack), whatever happens.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgecnn.errors import StreamError
from edgecnn.stream.capture import Capture, Interrupted


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


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[dict[str, str]]:
    """While inside, SIGINT and SIGTERM set ``stop`` (and are recorded) instead of killing the process: through the
    CLI's signal thread where it runs (edgecnn.cleanup), else with handlers (a library caller's main thread)."""
    from edgecnn import cleanup

    if cleanup.watching():
        with cleanup.stopping(stop) as caught:
            yield caught
        return
    caught: dict[str, str] = {}
    handlers = {}
    if threading.current_thread() is threading.main_thread():

        def handle(signum: int, _frame: Any) -> None:
            caught.setdefault("signal", signal.Signals(signum).name)
            stop.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            handlers[sig] = signal.signal(sig, handle)
    try:
        yield caught
    finally:
        for sig, old in handlers.items():
            signal.signal(sig, old)


def classify_stream(
    classifier: Any,
    source: Any,
    sinks: list[str],
    *,
    max_frames: int | None = None,
    duration: float | None = None,
    health: tuple[str, float] | None = None,
    stop: threading.Event | None = None,
    on_prediction: Any = None,
) -> dict[str, Any]:
    """Classify the frames of ``source`` (an unopened FrameSource) into the ``sinks`` (URIs) and return the report.

    Sinks are made, and so checked, before the source is opened; ``health`` is (path, seconds between lines). A
    recorded source (file, folder) that yields nothing but corrupt frames is an error, not an empty success."""
    from edgecnn.stream.sinks import open_sink

    stop = stop or threading.Event()
    with ExitStack() as stack:
        caught = stack.enter_context(stop_on_signals(stop))
        opened = [stack.enter_context(_closing(open_sink(uri))) for uri in sinks]
        log = None
        if health is not None:
            from edgecnn.stream.health import HealthLog

            log = stack.enter_context(_closing(HealthLog(*health)))
        capture = Capture(source)
        try:
            capture.start(stop)
        except Interrupted:
            return _stopped_report(capture, caught, "while opening the source")
        stack.callback(capture.stop)
        report = run_loop(
            classifier,
            capture,
            opened,
            max_frames=max_frames,
            duration=duration,
            stop=stop,
            on_prediction=on_prediction,
            health=log,
        )
    if caught:
        report["stopped_by"] = caught["signal"]
    if not source.live and report["classified"] == 0 and report["corrupt"] > 0:
        raise StreamError(
            f"no decodable frame in {source.uri}: {report['corrupt']} corrupt ({report['recent_errors'][-1] if report['recent_errors'] else ''})"
        )
    return report


def _stopped_report(capture: Capture, caught: dict[str, str], when: str) -> dict[str, Any]:
    c = capture.stats
    return {
        "frames_read": c.read,
        "classified": 0,
        "dropped": c.dropped,
        "corrupt": c.corrupt,
        "reconnects": c.reconnects,
        "frozen_events": c.frozen_events,
        "fps": 0.0,
        "latency_ms": {},
        "recent_errors": list(c.errors),
        "stopped_by": caught.get("signal", "stop"),
        "stopped": when,
    }


@contextmanager
def _closing(thing: Any) -> Iterator[Any]:
    try:
        yield thing
    finally:
        thing.close()
