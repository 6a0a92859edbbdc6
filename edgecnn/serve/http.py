"""The HTTP outlet: ``GET /state``, ``/snapshot.jpg``, ``/event.jpg``, ``/healthz``, ``/metrics``; ``POST /classify``.

- ``/state``: JSON, every source's debounced state, its history of changes, its attributes and counters, the model.
- ``/snapshot.jpg`` (``?source=NAME``; the first source by default): the newest classified frame, its region of
  interest outlined; ``/event.jpg``: the frame that made the last state change. 503 before there is one.
- ``/healthz``: 200 while every source has classified a frame within ``stale_after`` seconds, else 503; both with a
  JSON body that says each source's age and why.
- ``/metrics``: the Prometheus text format (``metrics.py``).
- ``POST /classify``: an image (JPEG, PNG, BMP, WebP; at most 16 MB) as the body; answers the model's top-k as JSON,
  the same record ``classify``'s jsonl sink writes. A body that is not a sound image gets 400 and the reason.

The server runs in threads of its own (one per connection, each with a 10 s socket timeout): a slow or stuck client
holds its own thread, never a capture loop. JPEGs are encoded here, on the client's thread, from the frame the loop
left (a reference, no copy on the loop's side).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from edgecnn import images
from edgecnn.errors import ConfigError, StreamError
from edgecnn.serve.config import parse_listen

MAX_UPLOAD = 16 << 20


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = 10.0  # seconds a client may take per read: a stalled upload frees its thread
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        url = urlparse(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        service = self.server.service
        route = {
            "/state": lambda: self._json(200, service.state()),
            "/healthz": lambda: self._health(service),
            "/metrics": lambda: self._metrics(service),
            "/snapshot.jpg": lambda: self._jpeg(service, query, "latest"),
            "/event.jpg": lambda: self._jpeg(service, query, "event"),
            "/": lambda: self._json(
                200, {"endpoints": ["/state", "/snapshot.jpg", "/event.jpg", "/healthz", "/metrics", "POST /classify"]}
            ),
        }.get(url.path)
        if route is None:
            self._json(404, {"error": f"no such page: {url.path}"})
        else:
            route()

    def do_POST(self) -> None:  # noqa: N802
        if urlparse(self.path).path != "/classify":
            self._json(404, {"error": "POST goes to /classify"})
            return
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self._json(411, {"error": "send the image as the body, with its Content-Length"})
            return
        if int(length) > MAX_UPLOAD:
            self._json(413, {"error": f"an image of {int(length):,} bytes; at most {MAX_UPLOAD >> 20} MB"})
            self.close_connection = True
            return
        try:
            data = self.rfile.read(int(length))
        except OSError:
            return
        code, body = self.server.service.classify_upload(data)
        self._json(code, body)

    def _health(self, service: Any) -> None:
        ok, body = service.health()
        self._json(200 if ok else 503, body)

    def _metrics(self, service: Any) -> None:
        body, ctype = service.metrics.render()
        self._send(200, body, ctype)

    def _jpeg(self, service: Any, query: dict[str, str], which: str) -> None:
        runner = service.runner(query.get("source"))
        if runner is None:
            self._json(404, {"error": f"no source named {query.get('source')!r}", "sources": [r.name for r in service.runners]})
            return
        jpeg = service.jpeg(runner, which)
        if not jpeg:
            self._json(503, {"error": "no frame yet" if which == "latest" else "no state change yet"})
            return
        self._send(200, jpeg, "image/jpeg")

    def _json(self, code: int, body: Any) -> None:
        self._send(code, json.dumps(body, default=str).encode(), "application/json")

    def _send(self, code: int, body: bytes, ctype: str) -> None:
        try:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)
        except OSError:  # the client went away
            self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    service: Any


class HttpOutlet:
    """Binds at construction (a taken port or a bad address is an error before any frame), serves from ``start``."""

    def __init__(self, listen: str, service: Any) -> None:
        self.host, port = parse_listen(listen)
        try:
            self.server = _Server((self.host, port), _Handler)
        except OSError as exc:
            raise StreamError(
                f"cannot serve HTTP on {self.host}:{port}: {exc.strerror}",
                hint="choose another --http port (0: any free one), or stop what listens there",
            ) from None
        except OverflowError:
            raise ConfigError(f"--http: the port must be from 0 to 65535; received {port}") from None
        self.server.service = service
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
        self._thread.name = "edgecnn-http"

    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> None:
        self._thread.start()

    def changed(self, runner: Any, change: Any, image: Any) -> None:
        pass  # the service keeps the event's frame; served on request

    def frame(self, runner: Any) -> None:
        pass

    def model_changed(self) -> None:
        pass

    def close(self) -> None:
        if self._thread.is_alive():
            self.server.shutdown()
        self.server.server_close()


def decode_upload(data: bytes) -> tuple[Any, str | None]:
    """(BGR image, None), or (None, why it is not a sound image)."""
    from edgecnn.stream.frames import normalise_frame

    image, reason = images.decode(data)
    if image is None:
        return None, reason
    try:
        return normalise_frame(image), None
    except StreamError as exc:
        return None, exc.message
