"""The service: the model, one runner per source, the outlets, supervision; ``run`` until stopped or the sources end.

Order of start: the model opens and passes its self-check; the HTTP port is bound and the broker connected (each
refuses clearly: a taken port, an unreachable broker, refused credentials); every source opens; then systemd hears
``READY=1``. While running, the main thread reloads the model on SIGHUP or when the artifact path leads elsewhere
(deploy switched ``current``), updates ``STATUS=``, and waits. On SIGTERM (or Ctrl-C) the loops stop within a second,
MQTT publishes the final states and ``offline``, and the process ends within two. When every source has ended (a
video file without --loop), the same happens and the exit status is 0; a source that fails ends it with its error.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from edgecnn.errors import EdgeCNNError
from edgecnn.serve.config import ServeConfig
from edgecnn.serve.source import SourceRunner
from edgecnn.serve.systemd import Notifier, Watchdog, monotonic_usec, status_line

UPLOADS = 2  # POST /classify requests classified at once


class Service:
    def __init__(
        self,
        cfg: ServeConfig,
        *,
        say: Callable[[str], None] | None = None,
        environ: dict | None = None,
        reload: threading.Event | None = None,
    ) -> None:
        from edgecnn.serve.model import Model

        self.cfg = cfg
        self.say = say or (lambda line: None)
        self.model = Model(cfg)
        self.metrics: Any = None
        self.outlets: list[Any] = []
        self.http: Any = None
        self.mqtt: Any = None
        self._events: dict[str, Any] = {}  # source -> the frame of its last change
        self._uploads = threading.BoundedSemaphore(UPLOADS)
        self._stop = threading.Event()
        self._reload = reload or threading.Event()
        self.notifier = Notifier(environ)
        self.watchdog = Watchdog(self.notifier, self.healthy)
        self.reloads: list[dict[str, Any]] = []
        try:
            self.runners = [SourceRunner(s, cfg, self) for s in cfg.sources]
            self._open_outlets()
        except BaseException:
            self.close()
            raise

    def _open_outlets(self) -> None:
        cfg = self.cfg
        if cfg.http is not None:
            from edgecnn.serve.http import HttpOutlet
            from edgecnn.serve.metrics import Metrics

            self.metrics = Metrics(lambda: {r.name: r.counters() for r in self.runners})
            self.metrics.set_model(self.model.info)
            self.http = HttpOutlet(cfg.http, self)
            self.outlets.append(self.http)
        if cfg.mqtt is not None:
            from edgecnn.serve.mqtt import MqttOutlet

            self.mqtt = MqttOutlet(cfg.mqtt, cfg.name, self)
            self.mqtt.connect()
            self.outlets.append(self.mqtt)

    # ---- called from the loop threads (must not block) ----------------------------------
    def metrics_observe(self, source: str, inference_s: float, end_to_end_s: float) -> None:
        if self.metrics is not None:
            self.metrics.observe(source, inference_s, end_to_end_s)

    def changed(self, runner: SourceRunner, change: Any, image: Any) -> None:
        self._events[runner.name] = image
        if self.metrics is not None:
            self.metrics.changes.labels(runner.name, change.state).inc()
        self.say(
            f"{runner.name}: {change.previous or 'unknown'} -> {change.state} ({change.confidence:.2f}, frame {change.frame})"
        )
        for outlet in self.outlets:
            outlet.changed(runner, change, image)

    def frame(self, runner: SourceRunner) -> None:
        for outlet in self.outlets:
            outlet.frame(runner)

    def source_done(self, runner: SourceRunner) -> None:
        if runner.error is not None or all(r.done.is_set() for r in self.runners):
            self._stop.set()

    # ---- read by the outlets -------------------------------------------------------------
    def runner(self, name: str | None) -> SourceRunner | None:
        if name is None:
            return self.runners[0]
        return next((r for r in self.runners if r.name == name), None)

    def healthy(self) -> bool:
        return self.health()[0]

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Every source classified a frame within ``stale_after`` seconds (and none has failed)."""
        sources = {}
        for r in self.runners:
            age = r.age()
            fresh = r.error is None and not r.done.is_set() and age <= self.cfg.stale_after
            why = "" if fresh else (r.error.message if r.error else "ended" if r.done.is_set() else f"no frame for {age:.1f} s")
            sources[r.name] = {"ok": fresh, "age_s": round(age, 3), "stale_after_s": self.cfg.stale_after} | (
                {"why": why} if why else {}
            )
        ok = all(s["ok"] for s in sources.values())
        return ok, {"ok": ok, "sources": sources, "model_digest": self.model.digest}

    def state(self) -> dict[str, Any]:
        return {
            "name": self.cfg.name,
            "model": self.model.info,
            "healthy": self.healthy(),
            "reloads": self.reloads[-10:],
            "sources": {r.name: r.final() | {"attributes": r.attributes(), "counters": r.counters()} for r in self.runners},
        }

    def jpeg(self, runner: SourceRunner, which: str) -> bytes:
        from edgecnn.serve.mqtt import snapshot_jpeg

        image = runner.latest[0] if which == "latest" and runner.latest else self._events.get(runner.name)
        return snapshot_jpeg(image, runner.cfg.roi) if image is not None else b""

    def classify_upload(self, data: bytes) -> tuple[int, dict[str, Any]]:
        """POST /classify: at most ``UPLOADS`` at once (uploads share the model with the cameras; a flood of them must
        not starve a camera's loop), the others get 503."""
        from edgecnn.serve import http

        if not self._uploads.acquire(blocking=False):
            return 503, {"error": f"busy: {UPLOADS} uploaded images are being classified; try again"}
        try:
            image, why = http.decode_upload(data)
            if image is None:
                return 400, {"error": f"not a usable image: {why}"}
            pred = self.model.classify(image)
        finally:
            self._uploads.release()
        return 200, pred.to_dict() | {"model_digest": self.model.digest, "width": image.shape[1], "height": image.shape[0]}

    # ---- the main thread ------------------------------------------------------------------
    def request_reload(self) -> None:
        self._reload.set()

    def run(self, stop: threading.Event | None = None) -> dict[str, Any]:
        """Run until ``stop`` is set (SIGTERM) or every source has ended; returns the final report."""
        stop = stop or threading.Event()
        try:
            for outlet in self.outlets:
                outlet.start()
            self._announce()
            for r in self.runners:
                r.start(self._stop)
            self._wait_opened(stop)
            if not self._stop.is_set():
                self.notifier.send(ready=1, status=f"serving {len(self.runners)} source(s)", mainpid=os.getpid())
                self.watchdog.start()
                self._supervise(stop)
        finally:
            self._stop.set()
            self.watchdog.stop()  # no ping after STOPPING=1
            self.notifier.send(stopping=1)
            deadline = time.monotonic() + 1.5  # SIGTERM ends the process within 2 s, however many sources
            for r in self.runners:
                r.join(max(0.0, deadline - time.monotonic()))
            self.close()
        failed = next((r.error for r in self.runners if r.error is not None), None)
        if failed is not None:
            raise failed
        return self.report()

    def _announce(self) -> None:
        """Where the outlets are, before the first frame (and the sinks' own lines: the live page's address)."""
        if self.http is not None:
            self.say(f"http: {self.http.url()}/state, /healthz, /metrics, /snapshot.jpg, POST /classify")
        if self.mqtt is not None:
            self.say(f"mqtt: {self.mqtt.where}, topics {self.mqtt.base}/..., availability {self.mqtt.availability}")
        for line in (line for r in self.runners for line in r.announce()):
            self.say(line)

    def _wait_opened(self, stop: threading.Event) -> None:
        while not all(r.opened.is_set() for r in self.runners) and not self._stop.is_set():
            if stop.wait(0.05):
                self._stop.set()

    def _supervise(self, stop: threading.Event) -> None:
        next_status = next_look = 0.0
        while not self._stop.is_set():
            if stop.wait(0.1):
                break
            now = time.monotonic()
            watch = self.cfg.watch_artifact
            if self._reload.is_set() or (watch and now >= next_look and self.model.changed_on_disk()):
                self._reload.clear()
                self._do_reload()
            if watch and now >= next_look:
                next_look = now + watch
            if now >= next_status:
                next_status = now + 5.0
                fps = sum(r.fps for r in self.runners)
                self.notifier.send(status=status_line({r.name: {"state": r.debouncer.state} for r in self.runners}, fps))

    def _do_reload(self) -> None:
        self.notifier.send(reloading=1, monotonic_usec=monotonic_usec())
        outcome = self.model.reload()
        self.reloads.append(outcome.__dict__)
        if self.metrics is not None:
            self.metrics.reloads.labels("ok" if outcome.ok else "refused").inc()
            if outcome.ok:
                self.metrics.set_model(self.model.info)
        self.say(outcome.line())
        self.notifier.send(ready=1, status=outcome.line())
        if outcome.ok:
            for r in self.runners:
                r.model_replaced()
            for outlet in self.outlets:
                outlet.model_changed()

    def report(self) -> dict[str, Any]:
        return {
            "sources": {
                r.name: r.final() | {"counters": r.counters(), "ended_by": r.report.get("ended_by", "")} for r in self.runners
            },
            "model": self.model.info,
            "reloads": self.reloads,
            "mqtt": {"published": self.mqtt.published, "connects": self.mqtt.connects} if self.mqtt else None,
        }

    def close(self) -> None:
        self.watchdog.stop()
        for outlet in reversed(self.outlets):
            try:
                outlet.close()
            except EdgeCNNError as exc:
                self.say(f"while closing: {exc.message}")
        self.outlets = []
        for r in getattr(self, "runners", []):
            if not r.started:  # its loop thread closes its sinks; a runner that never ran has its own to close
                r.close_sinks(r.sinks)
        self.notifier.close()
        self.model.close()


def serve(cfg: ServeConfig, *, say: Callable[[str], None] | None = None, stop: threading.Event | None = None) -> dict[str, Any]:
    """Run ``edgecnn serve`` with ``cfg`` until SIGTERM/Ctrl-C (or ``stop``) or the sources' end; SIGHUP reloads."""
    from edgecnn.stream.loop import stop_on_signals

    stop = stop or threading.Event()
    reload = threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():  # before the model opens: SIGHUP's default is to end
        previous = signal.signal(signal.SIGHUP, lambda *_: reload.set())
    try:
        with stop_on_signals(stop) as caught:
            service = Service(cfg, say=say, reload=reload)
            report = service.run(stop)
    finally:
        if previous is not None:
            signal.signal(signal.SIGHUP, previous)
    if caught:
        report["stopped_by"] = caught["signal"]
    return report
