"""One source of the service: its capture loop (``stream.loop.run_loop``, the same as ``classify``) in a thread, its
region of interest, its debounced state, its health log, and what the outlets read from it.

The loop thread does only the frame's own work (classify, count, debounce) and hands what it has to the outlets,
which keep it and do their work (JPEG, JSON, network) on threads of their own.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np

from edgecnn.errors import EdgeCNNError, StreamError
from edgecnn.redact import redact
from edgecnn.serve.config import ServeConfig, SourceConfig, health_path
from edgecnn.serve.state import Debouncer
from edgecnn.stream.capture import Capture, Interrupted
from edgecnn.stream.loop import _Rate, run_loop
from edgecnn.stream.sources import SourceOptions, open_source


class RegionView:
    """The model, seen through a source's region of interest: ``classify`` crops the frame first."""

    def __init__(self, model: Any, roi: tuple[int, ...] | None, source: str) -> None:
        self.model, self.roi, self.source = model, roi, source

    def classify(self, image: np.ndarray, *, source_order: str = "BGR") -> Any:
        if self.roi is not None:
            x, y, w, h = self.roi
            height, width = image.shape[:2]
            if x + w > width or y + h > height:
                raise StreamError(
                    f"source {self.source!r}: the region {x},{y},{w},{h} (x,y,w,h) does not fit its {width}x{height} frames",
                    hint=f"give a --roi inside 0,0,{width},{height}",
                )
            image = image[y : y + h, x : x + w]
        return self.model.classify(image, source_order=source_order)


class ServiceHealth:
    """classify's health log (``stream.health.HealthLog``, the same lines), begun afresh when a new model replaces the
    old one: deploy reads a log's start (a line's ``time`` less its ``t_s``) as when the serving process started, and
    a reloaded model is a new start in that sense. A refused reload leaves the log alone, so a deploy that reloads
    sees no new start and rolls back."""

    def __init__(self, path: str, every: float) -> None:
        from edgecnn.stream.health import HealthLog

        self._make = lambda: HealthLog(path, every)
        self._lock = threading.Lock()
        self.log = self._make()

    def observe(self, timings: dict[str, float]) -> None:
        with self._lock:
            self.log.observe(timings)

    def due(self, now: float) -> bool:
        with self._lock:
            return self.log.due(now)

    def write(self, now: float, loop: Any, capture: Any, **kw: Any) -> dict[str, Any]:
        with self._lock:
            return self.log.write(now, loop, capture, **kw)

    def restart(self) -> None:
        with self._lock:
            old = self.log
            old.close()
            self.log = self._make()
            # the first line's fps counts from the old log's last line, not from frame 0
            self.log._last_classified, self.log._last_t = old._last_classified, old._last_t

    def close(self) -> None:
        with self._lock:
            self.log.close()


class SourceRunner:
    """A source's loop thread and the figures the outlets read (``counters``, ``latest``, ``state``)."""

    def __init__(self, scfg: SourceConfig, cfg: ServeConfig, service: Any) -> None:
        self.cfg, self.name, self.service = scfg, scfg.name, service
        self.source = open_source(scfg.uri, SourceOptions(cfg.open_timeout, cfg.read_timeout))  # checked, not opened
        if scfg.loop:
            if not hasattr(self.source, "loop"):
                raise StreamError(f"source {scfg.name!r}: --loop applies to a video file; received {redact(scfg.uri)}")
            self.source.loop = True
        self.uri = redact(scfg.uri)
        self.debouncer = Debouncer(scfg.name, scfg.debounce, scfg.min_confidence, scfg.min_dwell)
        self.health = (health_path(cfg, scfg.name), cfg.health_every) if cfg.health else None
        self.view = RegionView(service.model, scfg.roi, scfg.name)
        self.sinks = self._open_sinks(scfg.sinks)
        self.capture: Capture | None = None
        self.health_log: ServiceHealth | None = None
        self.classified = 0
        self.fps = 0.0
        self.latest: tuple[np.ndarray, Any, int, float] | None = None  # (frame, prediction, index, wall time)
        self.last_frame = time.monotonic()  # the last classified frame (the start until there is one)
        self.report: dict[str, Any] = {}
        self.error: EdgeCNNError | None = None
        self.opened = threading.Event()
        self.done = threading.Event()
        self._rate = _Rate()
        self._thread: threading.Thread | None = None

    def _open_sinks(self, uris: list[str]) -> list[Any]:
        """classify's sinks, checked now (before any frame); the live page shows this source's state too."""
        from edgecnn.stream.sinks import open_sink

        sinks: list[Any] = []
        try:
            for uri in uris:
                sinks.append(open_sink(uri))
                if hasattr(sinks[-1], "service_state"):
                    sinks[-1].service_state = self.debouncer.to_dict
        except BaseException:
            self.close_sinks(sinks)
            raise
        return sinks

    def announce(self) -> list[str]:
        return [f"{self.name}: {line}" for s in self.sinks for line in s.announce()]

    @staticmethod
    def close_sinks(sinks: list[Any]) -> None:
        for s in sinks:
            s.close()

    # ---- the loop thread -------------------------------------------------------------------
    @property
    def started(self) -> bool:
        return self._thread is not None

    def start(self, stop: threading.Event) -> None:
        self._thread = threading.Thread(target=self._run, args=(stop,), name=f"edgecnn-serve-{self.name}", daemon=True)
        self._thread.start()

    def _run(self, stop: threading.Event) -> None:
        log = None
        try:
            self.capture = Capture(self.source)
            try:
                self.capture.start(stop)
            except Interrupted:
                return
            if not self.source.live:  # a recording plays at its own frame rate, as a camera would
                self.capture.pace(self.source.watch_fps() or 25.0)
            self.last_frame = time.monotonic()
            self.opened.set()
            if self.health is not None:
                log = self.health_log = ServiceHealth(*self.health)
            self.report = run_loop(self.view, self.capture, self.sinks, stop=stop, on_prediction=self._on_prediction, health=log)
        except EdgeCNNError as exc:
            self.error = exc
        finally:
            if log is not None:
                log.close()
            if self.capture is not None:
                self.capture.stop()
            self.close_sinks(self.sinks)
            self.opened.set()
            self.done.set()
            self.service.source_done(self)

    def _on_prediction(self, frame: Any, pred: Any) -> None:
        now = time.monotonic()
        wall = time.time()
        self.classified += 1
        self.fps = self._rate.tick(now)
        self.last_frame = now
        self.latest = (frame.image, pred, frame.index, wall)
        self.service.metrics_observe(self.name, pred.timings_ms.get("inference", 0.0) / 1e3, now - frame.t_capture)
        captured = wall - (now - frame.t_capture)
        change = self.debouncer.update(pred.top, frame=frame.index, now=now, wall=wall, captured=captured)
        if change is not None:
            self.service.changed(self, change, frame.image)
        self.service.frame(self)

    def model_replaced(self) -> None:
        if self.health_log is not None:
            self.health_log.restart()

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    # ---- what the outlets read ---------------------------------------------------------
    def age(self) -> float:
        return time.monotonic() - self.last_frame

    def counters(self) -> dict[str, Any]:
        c = self.capture.stats if self.capture is not None else None
        return {
            "read": c.read if c else 0,
            "classified": self.classified,
            "dropped": c.dropped if c else 0,
            "corrupt": c.corrupt if c else 0,
            "reconnects": c.reconnects if c else 0,
            "fps": round(self.fps, 2),
            "age_s": round(self.age(), 3),
            "state": self.debouncer.state,
        }

    def attributes(self) -> dict[str, Any]:
        """The state's attributes: confidence, top-k of the latest frame, fps, latency, the model."""
        d = self.debouncer
        latest = self.latest
        top = [{"label": lab, "p": round(p, 4)} for lab, p in latest[1].top] if latest else []
        latency = {k: round(v, 3) for k, v in latest[1].timings_ms.items()} if latest else {}
        return {
            "state": d.state,
            "confidence": round(d.confidence, 4),
            "since": round(d.since, 3) if d.state is not None else None,
            "changes": d.changes,
            "top": top,
            "frame": latest[2] if latest else None,
            "fps": round(self.fps, 2),
            "latency_ms": latency,
            "model_digest": self.service.model.digest,
            "roi": list(self.cfg.roi) if self.cfg.roi else None,
        }

    def final(self) -> dict[str, Any]:
        return {"source": self.name, "uri": self.uri, **self.debouncer.to_dict()}
