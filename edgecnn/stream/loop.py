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


class _Rate:
    """Frames per second over the last two seconds, for the overlay and the live page."""

    def __init__(self, window_s: float = 2.0) -> None:
        self.window_s = window_s
        self.times: deque[float] = deque()

    def tick(self, now: float) -> float:
        self.times.append(now)
        while self.times and now - self.times[0] > self.window_s:
            self.times.popleft()
        span = self.times[-1] - self.times[0]
        return (len(self.times) - 1) / span if len(self.times) > 1 and span > 0 else 0.0


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
    rate = _Rate()

    ended_by = ""

    def done() -> str:
        if stop.is_set():
            return "stop"
        if max_frames is not None and stats.classified >= max_frames:
            return "max_frames"
        return "duration" if duration is not None and time.monotonic() - stats.started >= duration else ""

    try:
        while not (ended_by := done()):
            try:
                frame = capture.get(timeout=0.5)
            except StopIteration:
                ended_by = "source"
                break
            if health is not None and health.due(time.monotonic()):
                health.write(time.monotonic(), stats, capture)
            if frame is not None:
                pred = _classify_one(classifier, frame, stats, health, sinks, rate)
                _update(sinks, stats, capture)
                if on_prediction:
                    on_prediction(frame, pred)
    finally:
        stats.ended = time.monotonic()
    if health is not None:  # the last line covers the frames since the previous one, however short the run
        health.write(stats.ended, stats, capture, ended_by=ended_by)
    return _summary(stats, capture) | {"ended_by": ended_by}


def _classify_one(classifier: Any, frame: Any, stats: LoopStats, health: Any, sinks: list[Any], rate: _Rate) -> Any:
    """One frame: classify it, record its timings, hand it to every sink."""
    age = (time.monotonic() - frame.t_capture) * 1e3
    pred = classifier.classify(frame.image, source_order="BGR")
    timings = {"capture_age": age, **pred.timings_ms}
    stats.classified += 1
    stats.add(timings)
    if health is not None:
        health.observe(timings)
    fps = rate.tick(time.monotonic())
    record = {"frame": frame.index, "time": round(time.time(), 4), **pred.to_dict()}
    record["latency_ms"] = {k: round(v, 3) for k, v in timings.items()}
    for sink in sinks:
        sink.write(frame.image, record, pred.top, fps)
    return pred


def _update(sinks: list[Any], stats: LoopStats, capture: Capture) -> None:
    """Hand the stream's counters to the sinks that show them (the live page)."""
    c = capture.stats
    counters = {"read": c.read, "classified": stats.classified, "dropped": c.dropped, "corrupt": c.corrupt,
                "reconnects": c.reconnects}
    for sink in sinks:
        if (update := getattr(sink, "update", None)) is not None:
            update(counters)


def _summary(stats: LoopStats, capture: Capture) -> dict[str, Any]:
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
    say: Any = None,
) -> dict[str, Any]:
    """Classify the frames of ``source`` (an unopened FrameSource) into the ``sinks`` (URIs) and return the report.

    Sinks are made, and so checked, before the source is opened; ``health`` is (path, seconds between lines). A
    recorded source (file, folder) that yields nothing but corrupt frames is an error, not an empty success. With a
    watched sink (the live page), a recorded source plays at its own frame rate and, once it ends, the page stays up
    with its last frame until ``stop`` (Ctrl-C). ``say`` gets the lines meant for the user (where the page is)."""
    say = say or _quiet
    stop = stop or threading.Event()
    with ExitStack() as stack:
        caught = stack.enter_context(stop_on_signals(stop))
        opened = _open_sinks(stack, sinks, say)
        _describe_run(opened, classifier, source)
        log = _open_health(stack, health)
        capture = Capture(source)
        try:
            capture.start(stop)
        except Interrupted:
            return _stopped_report(capture, caught, "while opening the source")
        stack.callback(capture.stop)
        watched = [s for s in opened if s.watched]
        if watched:
            capture.pace(source.watch_fps())
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
        if watched and report["ended_by"] == "source":
            _hold_page(watched, report, say, stop)
    if caught:
        report["stopped_by"] = caught["signal"]
    _refuse_undecodable(source, report)
    return report


def _open_sinks(stack: ExitStack, uris: list[str], say: Any) -> list[Any]:
    """Open every sink before the source (so a bad sink fails before the first frame) and pass on what they announce."""
    from edgecnn.stream.sinks import open_sink

    opened = [stack.enter_context(_closing(open_sink(uri))) for uri in uris]
    for line in (line for s in opened for line in s.announce()):
        say(line)
    return opened


def _describe_run(sinks: list[Any], classifier: Any, source: Any) -> None:
    """Tell the sinks what is classified: the artifact and runtime, and the source (a URL's password left out)."""
    from edgecnn.redact import redact

    d = classifier.describe() if hasattr(classifier, "describe") else {}
    model = ""
    if d.get("artifact"):
        from pathlib import Path

        where = Path(d["artifact"])
        model = f"{where.parent.name}/{where.name} ({d.get('format')}/{d.get('precision')}, {d.get('runtime')} on {d.get('accelerator')})"
    info = {"model": model, "source": redact(str(getattr(source, "uri", source)))}
    for sink in sinks:
        if (describe := getattr(sink, "describe_run", None)) is not None:
            describe(info)


def _open_health(stack: ExitStack, health: tuple[str, float] | None) -> Any:
    if health is None:
        return None
    from edgecnn.stream.health import HealthLog

    return stack.enter_context(_closing(HealthLog(*health)))


def _hold_page(watched: list[Any], report: dict[str, Any], say: Any, stop: threading.Event) -> None:
    """The recorded source has ended: the watched sinks keep showing the last frame until ``stop`` (Ctrl-C)."""
    for sink in watched:
        sink.ended()
    say(f"the source ended after {report['classified']} frames; the live page stays up: Ctrl-C to stop")
    stop.wait()


def _refuse_undecodable(source: Any, report: dict[str, Any]) -> None:
    """A recorded source that yielded nothing but corrupt frames is an error, not an empty success."""
    if source.live or report["classified"] or not report["corrupt"]:
        return
    last = report["recent_errors"][-1] if report["recent_errors"] else ""
    raise StreamError(f"no decodable frame in {source.uri}: {report['corrupt']} corrupt ({last})")


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
        "ended_by": "stop",
        "stopped": when,
    }


def _quiet(line: str) -> None:
    pass


@contextmanager
def _closing(thing: Any) -> Iterator[Any]:
    try:
        yield thing
    finally:
        thing.close()
