"""``http://:PORT`` sink: an MJPEG stream of annotated frames plus a small live page
(current label, confidence, FPS and a latency chart), served from a thread on the device."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlparse

import cv2

from edgecnn.errors import StreamError
from edgecnn.stream import overlay
from edgecnn.stream.sinks import Sink

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>edgecnn live</title>
<style>body{font-family:sans-serif;background:#111;color:#eee;margin:1em}#label{font-size:2em}canvas{background:#222}</style>
</head><body><h1>edgecnn live</h1><img id="video" src="/stream.mjpg" alt="video">
<div id="label">waiting...</div><div id="stats"></div><canvas id="chart" width="400" height="100"></canvas>
<script>
const hist=[];async function tick(){try{const r=await fetch('/state.json',{cache:'no-store'});const s=await r.json();
if(s.top){document.getElementById('label').textContent=s.top[0].label+' '+(100*s.top[0].p).toFixed(1)+'%';
document.getElementById('stats').textContent='frame '+s.frame+' | '+s.fps.toFixed(1)+' FPS | inference '+s.latency_ms.inference.toFixed(2)+' ms';
hist.push(s.latency_ms.inference);if(hist.length>100)hist.shift();const c=document.getElementById('chart').getContext('2d');
c.clearRect(0,0,400,100);const m=Math.max(...hist)*1.2;c.strokeStyle='#4f4';c.beginPath();
hist.forEach((v,i)=>{const x=i*4,y=100-v/m*100;i?c.lineTo(x,y):c.moveTo(x,y)});c.stroke();}}catch(e){}
setTimeout(tick,250)}tick();
</script></body></html>"""


def _address(text: str) -> tuple[str, int]:
    """(host, port) of ``http://[HOST]:PORT``; port 0 lets the system choose a free one."""
    u = urlparse(text)
    try:
        port = u.port
    except ValueError:
        port = -1
    if port == -1 or (u.netloc.rpartition(":")[2] and port is None):
        raise StreamError(
            f"sink {text!r}: the port must be a number from 1 to 65535 (0: any free port); received "
            f"{u.netloc.rpartition(':')[2]!r}"
        )
    if u.path not in ("", "/"):
        raise StreamError(f"sink {text!r}: a web sink serves its own pages; give only http://[HOST]:PORT")
    return u.hostname or "0.0.0.0", 8080 if port is None else port


class WebSink(Sink):
    def __init__(self, uri: Any) -> None:
        host, port = _address(getattr(uri, "text", uri))
        self._jpeg: bytes | None = None
        self._state: dict[str, Any] = {}
        self._cond = threading.Condition()
        self._closed = False
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep the device log clean
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                if self.path == "/":
                    self._send(PAGE.encode(), "text/html; charset=utf-8")
                elif self.path.startswith("/state.json"):
                    with sink._cond:
                        body = json.dumps(sink._state).encode()
                    self._send(body, "application/json")
                elif self.path.startswith("/stream.mjpg"):
                    self._stream()
                else:
                    self.send_error(404)

            def _send(self, body: bytes, ctype: str) -> None:
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def _stream(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                last = None
                try:
                    while not sink._closed:
                        # a new frame as soon as there is one; the current one again every 0.5 s so that
                        # clients that buffer (ffmpeg's probe, some browsers) never wait on a paused stream
                        with sink._cond:
                            sink._cond.wait_for(
                                lambda: sink._closed or (sink._jpeg is not None and sink._jpeg is not last), timeout=0.5
                            )
                            jpeg = sink._jpeg
                        if sink._closed or jpeg is None:
                            continue
                        last = jpeg
                        self.wfile.write(
                            b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                            + str(len(jpeg)).encode()
                            + b"\r\n\r\n"
                            + jpeg
                            + b"\r\n"
                        )
                except (BrokenPipeError, ConnectionResetError):
                    return

        try:
            self.server = ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            raise StreamError(f"cannot serve on {host}:{port}: {exc.strerror}", hint="choose another port") from None
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name="edgecnn-web", daemon=True)
        self._thread.start()

    def write(self, frame, record, top, fps) -> None:
        img = overlay.draw(frame, top, fps=fps, timings=record.get("latency_ms", {}))
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 80])
        with self._cond:
            if ok:
                self._jpeg = buf.tobytes()
            self._state = record | {"fps": fps}
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self.server.shutdown()
        self.server.server_close()
