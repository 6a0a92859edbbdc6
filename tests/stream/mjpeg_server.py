"""A real MJPEG-over-HTTP server on loopback for stream fault tests."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np


class MJPEGServer:
    """Serves numbered frames at ``fps``. The first connection sends ``stall_after`` frames, then goes silent
    for ``stall`` seconds and closes; later connections stream normally.

    With ``frames`` (JPEG bytes, e.g. a video's) it serves those in a loop instead; with ``drop_every`` it closes
    every connection after that many seconds (a camera or network dropping out, for soak tests)."""

    def __init__(
        self,
        fps: float = 20.0,
        stall_after: int | None = None,
        stall: float = 0.0,
        *,
        frames: list[bytes] | None = None,
        drop_every: float | None = None,
    ) -> None:
        self.fps, self.stall_after, self.stall = fps, stall_after, stall
        self.frames, self.drop_every = frames, drop_every
        self.drops: list[float] = []  # time.time() of each connection the server closed on purpose
        self.connections = 0
        self.sent = 0
        self.stall_started: float | None = None
        self.resumed_at: float | None = None
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                server.connections += 1
                conn_id = server.connections
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                n = 0
                opened = time.monotonic()
                try:
                    while not server._stop.is_set():
                        if server.drop_every is not None and time.monotonic() - opened >= server.drop_every:
                            server.drops.append(time.time())
                            self.close_connection = True
                            return
                        if conn_id == 1 and server.stall_after is not None and n >= server.stall_after:
                            server.stall_started = time.monotonic()
                            server._stop.wait(server.stall)
                            return
                        if conn_id > 1 and server.resumed_at is None:
                            server.resumed_at = time.monotonic()
                        if server.frames:
                            jpg = server.frames[server.sent % len(server.frames)]
                        else:
                            img = np.full((48, 64, 3), (server.sent * 5) % 256, np.uint8)
                            cv2.putText(img, str(server.sent), (2, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2)
                            jpg = cv2.imencode(".jpg", img)[1].tobytes()
                        self.wfile.write(
                            b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                            + str(len(jpg)).encode()
                            + b"\r\n\r\n"
                            + jpg
                            + b"\r\n"
                        )
                        server.sent += 1
                        n += 1
                        time.sleep(1 / server.fps)
                except (BrokenPipeError, ConnectionResetError):
                    return

        self._stop = threading.Event()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/video.mjpg"
        self._t = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


class SilentServer:
    """Accepts TCP connections and never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/video.mjpg"
        self.clients: list[socket.socket] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._accept, daemon=True)

    def _accept(self):
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                c, _ = self.sock.accept()
                self.clients.append(c)
            except OSError:
                continue

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for c in self.clients:
            c.close()
        self.sock.close()
