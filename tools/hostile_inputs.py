"""Hostile and mistaken input (issue 16): every class of bad input against real components.

    python tools/hostile_inputs.py [--only streams,sinks,...] [--artifact DIR --run DIR] [--out bench-out/hostile]

Each case runs the real `edgecnn` command in a process of its own, in a fresh folder, against real components: HTTP,
RTSP and silent servers on loopback written here, generated files (a decompression-bomb PNG, a truncated JPEG, a
UTF-16 recipe, a junk .keras), real signals. A case passes ("clear") when the command

- exits non-zero (1 for an edgecnn error, 2 for a usage error, 130/143 when stopped by a signal), or as the case
  says for input that is partly good (a folder with one truncated image classifies the rest);
- prints no traceback, and its stderr says what the case expects (the cause, not a generic failure);
- ends within its timeout + 2 s (never hangs);
- leaves nothing new on disk: no file in its folder, no staging folder, no temporary export in the temp folder.

It prints one row per case and ends with `hostile: N/N clear`; it exits 1 when any case is not clear.
tests/test_hostile_inputs.py runs a CI-sized subset (one or two cases per class).
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="-1", KERAS_BACKEND="tensorflow", PYTHONUNBUFFERED="1")


# ---- real components on loopback ----------------------------------------------------------------------------------
def _jpeg(i: int = 0, size: tuple[int, int] = (32, 32)) -> bytes:
    import cv2
    import numpy as np

    img = np.full((size[1], size[0], 3), (i * 37) % 256, np.uint8)
    return cv2.imencode(".jpg", img)[1].tobytes()


class CameraServers:
    """One HTTP server whose paths misbehave in every way a camera URL can: an error status, a web page, a stream of
    bytes that are not JPEG, of JPEGs cut mid-frame, of absurd part lengths, headers and then silence; plus a
    working MJPEG stream."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        stop = self._stop

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _multipart(self, parts: Callable[[int], bytes], *, length: Callable[[bytes], int] | None = None) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                i = 0
                try:
                    while not stop.is_set() and i < 2000:
                        body = parts(i)
                        n = length(body) if length else len(body)
                        self.wfile.write(
                            b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % n + body + b"\r\n"
                        )
                        self.wfile.flush()
                        i += 1
                        time.sleep(0.05)
                except OSError:
                    return

            def do_GET(self):  # noqa: N802
                path = self.path.split("?")[0]
                if path == "/404":
                    self.send_error(404, "Not Found")
                elif path == "/html":
                    body = b"<!doctype html><html><body>Camera login</body></html>"
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html; charset=utf-8")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                elif path == "/garbage":
                    self._multipart(lambda i: os.urandom(2000))
                elif path == "/truncated":
                    self._multipart(lambda i: _jpeg(i)[: len(_jpeg(i)) // 2])
                elif path == "/giant":
                    self._multipart(lambda i: b"\xff\xd8\xff", length=lambda b: 10**12)
                elif path == "/silent-after-headers":
                    self.send_response(200)
                    self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                    self.end_headers()
                    stop.wait(60)
                elif path == "/video.mjpg":
                    self._multipart(lambda i: _jpeg(i))
                else:
                    self.send_error(404)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        # a TCP server that accepts and never answers
        self.silent = socket.socket()
        self.silent.bind(("127.0.0.1", 0))
        self.silent.listen(16)
        self.silent_url = f"http://127.0.0.1:{self.silent.getsockname()[1]}/video"
        # a port with nothing listening
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.closed_port = s.getsockname()[1]
        s.close()
        # an RTSP server that refuses every stream
        self.rtsp = socket.socket()
        self.rtsp.bind(("127.0.0.1", 0))
        self.rtsp.listen(16)
        self.rtsp_port = self.rtsp.getsockname()[1]
        threading.Thread(target=self._rtsp_404, daemon=True).start()

    def _rtsp_404(self) -> None:
        while not self._stop.is_set():
            try:
                c, _ = self.rtsp.accept()
            except OSError:
                return
            try:
                c.recv(4096)
                c.sendall(b"RTSP/1.0 404 Stream Not Found\r\nCSeq: 1\r\n\r\n")
            except OSError:
                pass
            finally:
                c.close()

    def close(self) -> None:
        self._stop.set()
        self.httpd.shutdown()
        for s in (self.silent, self.rtsp):
            s.close()


# ---- generated files ------------------------------------------------------------------------------------------------
def bomb_png(path: Path, width: int = 20000, height: int = 20000) -> Path:
    """A valid PNG of 1-bit greyscale zeros that decodes to width x height: a few hundred KB on disk."""
    raw = zlib.compress(b"".join(b"\x00" + bytes((width + 7) // 8) for _ in range(height)), 9)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b""))
    return path


def image_folder(root: Path, *, classes: int = 2, per_class: int = 3, size: int = 32) -> Path:
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    for c in range(classes):
        d = root / f"class{c}"
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            cv2.imwrite(str(d / f"{i}.png"), rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    return root


TINY_RECIPE = """name: tiny
data: {data}
model: {{name: lenet5, input_size: {size}, channels: 1}}
seed: 0
max_per_class: 20
split: {{validation: 0.2, test: 0.2}}
training: {{optimizer: adam, learning_rate: {lr}, batch_size: 32, epochs: 2}}
"""


def recipe(path: Path, *, data: str = "bundled:digits", size: str = "32", lr: str = "0.002", extra: str = "") -> Path:
    path.write_text(TINY_RECIPE.format(data=data, size=size, lr=lr) + extra, encoding="utf-8")
    return path


# ---- cases ----------------------------------------------------------------------------------------------------------
@dataclass
class Ctx:
    artifact: Path  # a LeNet-5 conversion output folder (TFLite fp32 at least)
    run: Path  # the training run it came from
    servers: CameraServers
    folder: Path = Path(".")  # the case's own folder (its cwd)
    board: Any = None  # a loopback OpenSSH server (tools/loopback_sshd.py), for the boards class


@dataclass
class Case:
    name: str
    klass: str
    argv: Callable[[Ctx], list[str]]
    expect: str  # a regex that stderr must contain
    rc: tuple[int, ...] = (1, 2)
    timeout: float = 30.0
    signal_after: float | None = None  # send SIGTERM this many seconds after the start
    signal_on: str | None = None  # or when a line of its stdout matches this regex (the moment itself, not a guess)
    creates: tuple[str, ...] = ()  # what the case may leave in its folder (input files are made before the snapshot)
    ci: bool = False  # in the CI-sized subset
    forbid: str | None = None  # a regex that must NOT appear in the output (a password, a terminal escape)


def classify(ctx: Ctx, source: str, *extra: str) -> list[str]:
    return ["classify", str(ctx.artifact), "--runtime", "litert", "--source", source, *extra]


def _c(name, klass, argv, expect, **kw) -> Case:
    return Case(name, klass, argv, expect, **kw)


S = "streams"
CASES: list[Case] = [
    # -- streams: camera URLs that do not deliver video, timeouts, URI options, folders
    _c("http 404", S, lambda c: classify(c, c.servers.base + "/404"), r"answered HTTP 404 Not Found", ci=True),
    _c("http web page", S, lambda c: classify(c, c.servers.base + "/html"), r"not an MJPEG stream: .* answered with text/html"),
    _c(
        "http bytes that are not JPEG",
        S,
        lambda c: classify(c, c.servers.base + "/garbage", "--read-timeout", "2", "--open-timeout", "2"),
        r"no decodable frame from .* in 4 s \(\d+ corrupt\): a corrupt frame .*not an image",
        timeout=8,
        ci=True,
    ),
    _c(
        "http JPEGs cut mid-frame",
        S,
        lambda c: classify(c, c.servers.base + "/truncated", "--read-timeout", "2", "--open-timeout", "2"),
        r"no decodable frame .*truncated JPEG",
        timeout=8,
    ),
    _c(
        "http absurd part length",
        S,
        lambda c: classify(c, c.servers.base + "/giant", "--read-timeout", "2", "--open-timeout", "2"),
        r"no decodable frame .*over the 64 MB limit",
        timeout=8,
    ),
    _c(
        "http headers then silence",
        S,
        lambda c: classify(c, c.servers.base + "/silent-after-headers", "--read-timeout", "1.5", "--open-timeout", "1.5"),
        r"no decodable frame from .* in 3 s: no frame from .* within the read timeout",
        timeout=6,
    ),
    _c(
        "http silent server",
        S,
        lambda c: classify(c, c.servers.silent_url, "--open-timeout", "1.5"),
        r"no answer from 127\.0\.0\.1:\d+ within 1\.5 s",
        timeout=4,
    ),
    _c(
        "http connection refused",
        S,
        lambda c: classify(c, f"http://127.0.0.1:{c.servers.closed_port}/video"),
        r"connection refused by 127\.0\.0\.1:\d+",
    ),
    _c(
        "http unknown host",
        S,
        lambda c: classify(c, "http://no-such-camera.invalid/video", "--open-timeout", "2"),
        r"cannot resolve the host 'no-such-camera\.invalid'",
        timeout=6,
    ),
    _c("http bad port", S, lambda c: classify(c, "http://127.0.0.1:99999/video"), r"the port must be a number from 1 to 65535"),
    _c(
        "rtsp refused stream",
        S,
        lambda c: classify(c, f"rtsp://127.0.0.1:{c.servers.rtsp_port}/cam"),
        r"the RTSP server at 127\.0\.0\.1:\d+ answered 404 Stream Not Found",
    ),
    _c(
        "rtsp connection refused",
        S,
        lambda c: classify(c, f"rtsp://127.0.0.1:{c.servers.closed_port}/cam"),
        r"connection refused by 127\.0\.0\.1",
    ),
    _c(
        "--open-timeout 0",
        S,
        lambda c: classify(c, "synthetic:", "--open-timeout", "0"),
        r"argument --open-timeout: must be a number above 0",
        rc=(2,),
        ci=True,
    ),
    _c(
        "--read-timeout -1",
        S,
        lambda c: classify(c, "synthetic:", "--read-timeout", "-1"),
        r"argument --read-timeout: must be a number above 0",
        rc=(2,),
    ),
    _c(
        "synthetic fps not a number",
        S,
        lambda c: classify(c, "synthetic:?fps=abc"),
        r"option fps must be a number from 0\.1 to 1000; received 'abc'",
        ci=True,
    ),
    _c(
        "synthetic fps 0",
        S,
        lambda c: classify(c, "synthetic:?fps=0"),
        r"option fps must be a number from 0\.1 to 1000; received '0'",
    ),
    _c(
        "synthetic frames negative",
        S,
        lambda c: classify(c, "synthetic:?frames=-5"),
        r"option frames must be a whole number from 0 to",
    ),
    _c("synthetic size malformed", S, lambda c: classify(c, "synthetic:?size=axb"), r"option size must be WIDTHxHEIGHT"),
    _c(
        "unknown URI option",
        S,
        lambda c: classify(c, "synthetic:?fsp=5"),
        r"unknown option 'fsp' \(options of synthetic: .*Did you mean 'fps'",
    ),
    _c(
        "file loop not a boolean",
        S,
        lambda c: classify(c, f"file:{c.folder / 'v.avi'}?loop=maybe"),
        r"option loop must be true or false",
    ),
    _c("file missing", S, lambda c: classify(c, "file:/nonexistent/clip.mp4"), r"video file not found: /nonexistent/clip\.mp4"),
    _c("file is a folder", S, lambda c: classify(c, f"file:{c.folder}"), r"is a folder, not a video file"),
    _c(
        "file is not a video",
        S,
        lambda c: classify(c, f"file:{c.folder / 'notes.mp4'}"),
        r"cannot open video file .*notes\.mp4: not a video FFmpeg can read \(it looks like",
    ),
    _c(
        "folder with one truncated image",
        S,
        lambda c: classify(c, str(c.folder / "imgs"), "--sink", "jsonl:-"),
        r"classified 4, dropped 0, corrupt 1",
        rc=(0,),
        ci=True,
    ),
    _c(
        "folder of only corrupt images",
        S,
        lambda c: classify(c, str(c.folder / "bad")),
        r"no decodable frame in .*bad: 2 corrupt",
    ),
    _c(
        "folder with a decompression bomb",
        S,
        lambda c: classify(c, str(c.folder / "bombs"), "--sink", "jsonl:-"),
        r"classified 1, dropped 0, corrupt 1",
        rc=(0,),
    ),
    _c("empty folder", S, lambda c: classify(c, str(c.folder / "empty")), r"no images in folder"),
    _c("camera index that does not exist", S, lambda c: classify(c, "7"), r"camera 7 does not exist"),
    _c(
        "v4l2 device that does not exist",
        S,
        lambda c: classify(c, "v4l2:///dev/video99"),
        r"camera device /dev/video99 does not exist",
    ),
    _c("gst without GStreamer", S, lambda c: classify(c, "gst:videotestsrc ! appsink"), r"was built without GStreamer"),
    _c("picamera2 off a Pi", S, lambda c: classify(c, "picamera2:"), r"picamera2 is not installed"),
    _c("unknown scheme", S, lambda c: classify(c, "ftp://host/x"), r"unknown source scheme 'ftp:'"),
    _c("empty source", S, lambda c: classify(c, ""), r"empty source"),
    # -- sinks: checked before the first frame
    _c(
        "jsonl without a path",
        "sinks",
        lambda c: classify(c, "synthetic:", "--sink", "jsonl:"),
        r"jsonl: needs a file path, or - for standard output",
        ci=True,
    ),
    _c(
        "web port out of range",
        "sinks",
        lambda c: classify(c, "synthetic:", "--sink", "http://:99999"),
        r"the port must be a number from 1 to 65535",
    ),
    _c(
        "web port not a number",
        "sinks",
        lambda c: classify(c, "synthetic:", "--sink", "http://:abc"),
        r"the port must be a number from 1 to 65535 .*received 'abc'",
    ),
    _c(
        "web port in use",
        "sinks",
        lambda c: classify(c, "synthetic:", "--sink", f"http://127.0.0.1:{c.servers.httpd.server_address[1]}"),
        r"cannot serve on 127\.0\.0\.1:\d+: Address already in use",
    ),
    _c(
        "video sink in a missing folder",
        "sinks",
        lambda c: classify(c, "synthetic:", "--sink", "/nonexistent/out.mp4"),
        r"the folder /nonexistent does not exist",
    ),
    _c(
        "video sink in a read-only folder",
        "sinks",
        lambda c: classify(c, "synthetic:", "--sink", str(c.folder / "ro" / "out.mp4")),
        r"cannot write video to .*ro/out\.mp4: .*(Read-only file system|Permission denied)",
    ),
    _c("jsonl sink is a folder", "sinks", lambda c: classify(c, "synthetic:", "--sink", f"jsonl:{c.folder}"), r"it is a folder"),
    _c(
        "unknown sink",
        "sinks",
        lambda c: classify(c, "synthetic:", "--sink", "predictions.txt"),
        r"unknown sink 'predictions\.txt'",
    ),
    _c(
        "display without a screen", "sinks", lambda c: classify(c, "synthetic:", "--sink", "display:"), r"display: needs a screen"
    ),
    # -- numbers: every numeric option has a range, checked before heavy imports
    *[
        _c(
            f"{verb} {opt} {val}",
            "numbers",
            (
                lambda v, o, x: (
                    lambda c: [
                        v,
                        *(["x"] if v in ("classify", "profile", "convert", "benchmark") else []),
                        *(["--device", "host"] if v in ("convert", "benchmark") else []),
                        *(["--source", "synthetic:"] if v == "classify" else []),
                        o,
                        x,
                    ]
                )
            )(verb, opt, val),
            rf"argument {opt}: must be",
            rc=(2,),
            ci=(opt == "--threads" and verb == "classify"),
        )
        for verb, opt, val in [
            ("classify", "--threads", "0"),
            ("classify", "--threads", "abc"),
            ("classify", "--top-k", "0"),
            ("classify", "--duration", "-1"),
            ("classify", "--max-frames", "0"),
            ("classify", "--health-every", "0"),
            ("profile", "--runs", "0"),
            ("profile", "--warmup", "-1"),
            ("profile", "--min-seconds", "-1"),
            ("profile", "--batch", "0"),
            ("profile", "--threads", "0"),
            ("convert", "--max-drop", "-1"),
            ("convert", "--input-scale", "0"),
            ("convert", "--input-std", "0"),
            ("benchmark", "--runs", "0"),
            ("benchmark", "--max-drop", "-0.5"),
            ("calibrate", "--seconds", "0"),
            ("calibrate", "--threads", "0"),
            ("demo", "--profile-seconds", "-1"),
            ("inspect", "--input-size", "0"),
            ("inspect", "--alpha", "0"),
            ("inspect", "--classes", "1"),
            ("classify", "--duration", "nan"),
        ]
    ],
    # -- recipes: ranges, YAML's 1e-3, encodings
    _c(
        "recipe input_size 0",
        "recipes",
        lambda c: ["train", str(recipe(c.folder / "r.yaml", size="0"))],
        r"'model\.input_size' must be at least 1 and at most 8192; received 0",
        ci=True,
    ),
    _c(
        "recipe input_size too small for the model",
        "recipes",
        lambda c: ["train", str(recipe(c.folder / "r.yaml", size="8"))],
        r"'model\.input_size' 8 is below lenet5's smallest input",
    ),
    _c(
        "recipe input_size beyond memory",
        "recipes",
        lambda c: ["train", str(recipe(c.folder / "r.yaml", size="8000"))],
        r"need \d+(\.\d+)? GB, and this machine has \d+(\.\d+)? GB available",
        timeout=60,
    ),
    _c(
        "recipe learning_rate 0",
        "recipes",
        lambda c: ["train", str(recipe(c.folder / "r.yaml", lr="0"))],
        r"'training\.learning_rate' must be above 0",
    ),
    _c(
        "recipe learning_rate negative",
        "recipes",
        lambda c: ["train", str(recipe(c.folder / "r.yaml", lr="-0.1"))],
        r"'training\.learning_rate' must be above 0",
    ),
    _c(
        "recipe 1e-3 read as text",
        "recipes",
        lambda c: ["train", str(recipe(c.folder / "r.yaml", lr="1e-3"))],
        r"'training\.learning_rate' must be a number; received the text '1e-3'\n  hint: YAML reads 1e-3 as text: write it with a dot, e.g\. 0\.001 or 1\.0e-3",
        ci=True,
    ),
    _c(
        "recipe split over 1",
        "recipes",
        lambda c: ["train", str(recipe(c.folder / "r.yaml", extra="augmentation: {zoom: 1.5}\n"))],
        r"'augmentation\.zoom' must be at least 0 and at most 0\.9; received 1\.5",
    ),
    _c(
        "recipe epochs 0",
        "recipes",
        lambda c: [
            "train",
            str(
                (c.folder / "r.yaml").write_text(
                    TINY_RECIPE.format(data="bundled:digits", size=32, lr="0.002").replace("epochs: 2", "epochs: 0")
                )
                and c.folder / "r.yaml"
            ),
        ],
        r"'training\.epochs' must be at least 1",
    ),
    _c(
        "recipe in UTF-16 with a BOM is read",
        "recipes",
        lambda c: ["train", str(_utf16_recipe(c.folder / "r16.yaml"))],
        r"unknown key 'colour'",
    ),
    _c(
        "recipe in Latin-1",
        "recipes",
        lambda c: ["train", str(_latin1(c.folder / "rl.yaml"))],
        r"is not UTF-8 text: byte 0xe9 at offset \d+ \(Latin-1",
        ci=True,
    ),
    _c("recipe is a folder", "recipes", lambda c: ["train", str(c.folder)], r"config file .* is a folder, not a file"),
    _c("recipe is not YAML", "recipes", lambda c: ["train", str(_write(c.folder / "x.yaml", "a: [b"))], r"not valid YAML"),
    _c(
        "labels in Latin-1",
        "recipes",
        lambda c: [
            "convert",
            str(c.folder / "u.keras"),
            "--device",
            "host",
            "--labels",
            str(_latin1_labels(c.folder / "labels-latin1.txt")),
            "--input-scale",
            "0.0039",
            "--out",
            str(c.folder / "o"),
        ],
        r"labels file .* is not UTF-8 text",
        timeout=60,
    ),
    # -- files: decompression bombs, junk model files, wrong kinds
    _c(
        "validate a decompression bomb",
        "files",
        lambda c: ["validate", str(c.folder / "ds")],
        r"20000 x 20000 = 400,000,000 pixels once decoded, over the limit of 64,000,000",
        rc=(1,),
        ci=True,
    ),
    _c(
        "train on a decompression bomb",
        "files",
        lambda c: ["train", str(recipe(c.folder / "r.yaml", data=str(c.folder / "ds")))],
        r"20000 x 20000 = 400,000,000 pixels",
        timeout=60,
    ),
    _c(
        "convert a junk .keras",
        "files",
        lambda c: ["convert", str(_write(c.folder / "junk.keras", "not a model")), "--device", "host"],
        r"junk\.keras is not a Keras model \(a \.keras file is a zip archive",
        ci=True,
    ),
    _c(
        "convert a zip that is not a Keras archive",
        "files",
        lambda c: ["convert", str(_zip(c.folder / "z.keras")), "--device", "host"],
        r"z\.keras is not a Keras model archive: a zip without config\.json",
    ),
    _c(
        "convert a model whose input is not an image",
        "files",
        lambda c: [
            "convert",
            str(c.folder / "dense.keras"),
            "--device",
            "host",
            "--input-scale",
            "1",
            "--precision",
            "tflite/fp32",
            "--out",
            str(c.folder / "o"),
        ],
        r"dense\.keras: the input has shape \(None, 10\), not an image",
        timeout=60,
    ),
    _c(
        "convert a model of unknown image size",
        "files",
        lambda c: [
            "convert",
            str(c.folder / "any.keras"),
            "--device",
            "host",
            "--input-scale",
            "1",
            "--precision",
            "tflite/fp32",
            "--out",
            str(c.folder / "o"),
        ],
        r"any\.keras: the input has unknown dimensions \(None, None, None, 3\)",
        timeout=60,
    ),
    _c(
        "verify a .keras file",
        "files",
        lambda c: ["verify", str(c.folder / "u.keras")],
        r"is a Keras model file: verify checks artifacts",
    ),
    _c(
        "validate a file, not a folder",
        "files",
        lambda c: ["validate", str(_write(c.folder / "f.txt", "x"))],
        r"data path is not a folder",
    ),
    _c(
        "classify a text file as the artifact",
        "files",
        lambda c: classify_art(_write(c.folder / "notes.txt", "x")),
        r"notes\.txt: unknown model suffix",
    ),
    _c(
        "profile a folder that is no artifact",
        "files",
        lambda c: ["profile", str(c.folder / "empty")],
        r"holds no edgecnn artifact",
    ),
    _c(
        "convert into a read-only folder",
        "files",
        lambda c: ["convert", str(c.run), "--device", "host", "--out", str(c.folder / "ro" / "out")],
        r"cannot create output folder .*(Read-only file system|Permission denied)",
        timeout=6,
    ),
    _c(
        "train into a read-only folder",
        "files",
        lambda c: ["train", "lenet5-digits", "--out", str(c.folder / "ro" / "run")],
        r"cannot create run folder .*(Read-only file system|Permission denied)",
        timeout=6,
    ),
    _c(
        "convert into an existing folder is quick",
        "files",
        lambda c: ["convert", str(c.run), "--device", "host", "--out", str(c.artifact)],
        r"output folder already exists",
        timeout=3,
    ),
    # -- runtime choices
    _c(
        "--runtime tensorrt",
        "runtime",
        lambda c: ["classify", str(c.artifact), "--source", "synthetic:", "--runtime", "tensorrt"],
        r"'tensorrt' is an accelerator of onnxruntime, not a runtime\n  hint: --runtime onnxruntime --accelerator TensorRT",
        ci=True,
    ),
    _c(
        "--accelerator CUDA --no-fallback without a GPU",
        "runtime",
        lambda c: ["classify", str(c.artifact), "--source", "synthetic:", "--accelerator", "CUDA", "--no-fallback"],
        r"(has no CUDAExecutionProvider|no onnx artifact)",
    ),
    _c(
        "--accelerator unknown",
        "runtime",
        lambda c: ["classify", str(c.artifact), "--source", "synthetic:", "--accelerator", "cuda"],
        r"unknown accelerator 'cuda' .*Did you mean 'CUDA'",
    ),
    _c(
        "--runtime unknown",
        "runtime",
        lambda c: ["classify", str(c.artifact), "--source", "synthetic:", "--runtime", "tflite"],
        r"unknown runtime 'tflite'",
    ),
    # -- signals and leftovers
    _c(
        "SIGTERM while classify opens a silent camera",
        "signals",
        lambda c: classify(c, c.servers.silent_url, "--open-timeout", "20"),
        r"stopped by SIGTERM while opening the source",
        rc=(0,),
        signal_after=3.0,
        timeout=4.5,
        ci=True,
    ),
    _c(
        "SIGTERM while classify reconnects",
        "signals",
        lambda c: classify(c, c.servers.base + "/silent-after-headers", "--read-timeout", "1", "--open-timeout", "30"),
        r"stopped by SIGTERM",
        rc=(0,),
        signal_after=4.0,
        timeout=5.5,
    ),
    _c(
        "SIGTERM during convert",
        "signals",
        lambda c: ["convert", str(c.run), "--device", "host", "--out", str(c.folder / "o")],
        r"interrupted by SIGTERM",
        rc=(143,),
        signal_after=8.0,
        timeout=25,
        ci=True,
    ),
    _c(
        "SIGTERM during train",
        "signals",
        lambda c: ["train", str(recipe(c.folder / "r.yaml")), "--out", str(c.folder / "run")],
        r"interrupted by SIGTERM",
        rc=(143,),
        signal_on=r"^Epoch 1/",  # Keras starts the first epoch (a fixed 6 s came after the end on a quick machine)
        timeout=25,
    ),
]


sys.path.insert(0, str(Path(__file__).parent))
from hostile_boards import CASES as _BOARD_CASES  # noqa: E402

CASES += [Case(**case) for case in _BOARD_CASES]


def classify_art(path: Path) -> list[str]:
    return ["classify", str(path), "--source", "synthetic:"]


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _utf16_recipe(path: Path) -> Path:
    text = TINY_RECIPE.format(data="bundled:digits", size=32, lr="0.002") + "colour: grey\n"
    path.write_bytes(text.encode("utf-16"))  # with its BOM, as Windows' Notepad writes it
    return path


def _latin1(path: Path) -> Path:
    path.write_bytes((TINY_RECIPE.format(data="bundled:digits", size=32, lr="0.002") + "# café\n").encode("latin-1"))
    return path


def _latin1_labels(path: Path) -> Path:
    path.write_bytes("\n".join(["café", "thé", "eau"]).encode("latin-1"))
    return path


def _zip(path: Path) -> Path:
    import zipfile

    with zipfile.ZipFile(path, "w") as z:
        z.writestr("readme.txt", "hello")
    return path


# ---- running --------------------------------------------------------------------------------------------------------
def prepare_inputs(case_dir: Path, ctx: Ctx) -> None:
    """Every input file any case reads, made in the case's folder before the snapshot of it is taken."""
    import cv2
    import numpy as np

    (case_dir / "empty").mkdir()
    imgs = image_folder(case_dir / "imgs", classes=1, per_class=4)
    good = sorted((imgs / "class0").iterdir())[0].read_bytes()
    jpg = _jpeg(3)
    (imgs / "class0" / "cut.jpg").write_bytes(jpg[: len(jpg) // 2])
    (case_dir / "bad").mkdir()
    (case_dir / "bad" / "a.jpg").write_bytes(jpg[: len(jpg) // 3])
    (case_dir / "bad" / "b.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    (case_dir / "bombs").mkdir()
    (case_dir / "bombs" / "ok.png").write_bytes(good)
    bomb_png(case_dir / "bombs" / "bomb.png")
    ds = image_folder(case_dir / "ds", classes=2, per_class=3)
    bomb_png(ds / "class0" / "bomb.png")
    writer = cv2.VideoWriter(str(case_dir / "v.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 32))
    for i in range(3):
        writer.write(np.full((32, 32, 3), i * 40, np.uint8))
    writer.release()
    (case_dir / "notes.mp4").write_text("these are my notes, not a video\n")
    shutil.copy(ctx.run / "model.keras", case_dir / "u.keras")
    (case_dir / "ro").mkdir()
    if os.geteuid() == 0 and shutil.which("mount"):  # root writes anywhere: a read-only mount is the real thing
        subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(case_dir / "ro")], check=False)
    else:
        os.chmod(case_dir / "ro", 0o555)


def keras_models(folder: Path) -> None:
    """Two models no image classifier converter should take: a dense input and an image of unknown size."""
    code = (
        "import keras, sys\n"
        "inp = keras.Input((10,)); keras.Model(inp, keras.layers.Dense(3, activation='softmax')(inp)).save(sys.argv[1] + '/dense.keras')\n"
        "inp = keras.Input((None, None, 3)); x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inp))\n"
        "keras.Model(inp, keras.layers.Dense(3, activation='softmax')(x)).save(sys.argv[1] + '/any.keras')\n"
    )
    subprocess.run([sys.executable, "-c", code, str(folder)], check=True, env=ENV, capture_output=True)


def _output(proc: subprocess.Popen, case: Case, timeout: float) -> tuple[str, str]:
    """(stdout, stderr) of the case's command; with ``signal_on``, SIGTERM the moment a stdout line matches it."""
    if case.signal_on is None:
        return proc.communicate(timeout=timeout)
    import threading

    out: list[str] = []
    err: list[str] = []

    def watch() -> None:
        signalled = False
        for line in proc.stdout:
            out.append(line)
            if not signalled and re.search(case.signal_on, line):
                proc.send_signal(signal.SIGTERM)
                signalled = True

    readers = [threading.Thread(target=watch, daemon=True),
               threading.Thread(target=lambda: err.append(proc.stderr.read()), daemon=True)]  # fmt: skip
    for t in readers:
        t.start()
    try:
        proc.wait(timeout=timeout)  # a hung command: the caller kills it
    finally:
        if proc.poll() is not None:
            for t in readers:
                t.join(timeout=5)
    return "".join(out), "".join(err)


def _snapshot(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")} if folder.exists() else set()


# what edgecnn puts in the temp folder and must remove (a log kept for the user, edgecnn-kept-log-*, may stay)
TEMP_PREFIXES = ("edgecnn-export-", "edgecnn-worker-", "edgecnn-ssh-", "edgecnn-release-", ".edgecnn")


def _temp_entries(tmp: Path) -> set[str]:
    return {p.name for p in tmp.iterdir() if p.name.startswith(TEMP_PREFIXES)}


@dataclass
class Result:
    case: Case
    ok: bool
    seconds: float
    rc: int | None
    why: str = ""
    line: str = ""
    extra: dict = field(default_factory=dict)


def run_case(case: Case, ctx: Ctx, work: Path) -> Result:
    folder = work / re.sub(r"\W+", "-", case.name).strip("-")
    if folder.exists():
        subprocess.run(["umount", "-l", str(folder / "ro")], check=False, capture_output=True)
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    prepare_inputs(folder, ctx)
    if any(k in case.name for k in ("not an image", "unknown image size")):
        keras_models(folder)
    ctx.folder = folder
    argv = case.argv(ctx)
    before = _snapshot(folder)
    # a temp folder of the case's own (short: it holds SSH control sockets): only what its command and that command's
    # children made is in it, not what another program left in the machine's temp folder (issue #31)
    tmp = Path(tempfile.mkdtemp(prefix="hostile-", dir="/tmp" if Path("/tmp").is_dir() else None))
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgecnn", *argv], cwd=folder, env={**ENV, "TMPDIR": str(tmp)}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )
    if case.signal_after is not None:
        try:
            proc.wait(timeout=case.signal_after)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)
    try:
        out, err = _output(proc, case, case.timeout + 2 - (time.monotonic() - t0))
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        shutil.rmtree(tmp, ignore_errors=True)
        return Result(case, False, time.monotonic() - t0, None, f"hung: still running after {case.timeout + 2:g} s", err[-300:])
    seconds = time.monotonic() - t0
    time.sleep(0.2)  # a child process's last writes
    new_files = sorted(p for p in _snapshot(folder) - before if not any(p.startswith(c) for c in case.creates))
    new_temp = sorted(_temp_entries(tmp))
    shutil.rmtree(tmp, ignore_errors=True)
    text = err + out
    line = next((ln for ln in err.splitlines() if ln.startswith("error:")), err.strip().splitlines()[-1] if err.strip() else "")
    problems = []
    if proc.returncode not in case.rc:
        problems.append(f"exit {proc.returncode}, expected {'/'.join(map(str, case.rc))}")
    if "Traceback (most recent call last)" in err:
        problems.append("a traceback")
    if not re.search(case.expect, text, re.S):
        problems.append(f"no /{case.expect}/ in the output")
    if case.forbid and re.search(case.forbid, text):
        problems.append(f"/{case.forbid}/ in the output")
    if seconds > case.timeout + 2:
        problems.append(f"took {seconds:.1f} s (limit {case.timeout:g} + 2)")
    if new_files:
        problems.append(f"left {', '.join(new_files[:3])}")
    if new_temp:
        problems.append(f"left in the temp folder: {', '.join(new_temp[:3])}")
    subprocess.run(["umount", "-l", str(folder / "ro")], check=False, capture_output=True)
    return Result(case, not problems, seconds, proc.returncode, "; ".join(problems), line[:160])


def make_artifact(work: Path) -> tuple[Path, Path]:
    run, art = work / "lenet5-run", work / "lenet5-art"
    if not (run / "edgecnn-run.json").is_file():
        shutil.rmtree(run, ignore_errors=True)
        subprocess.run(
            [sys.executable, "-m", "edgecnn", "train", str(recipe(work / "tiny.yaml")), "--out", str(run), "--quiet"],
            check=True,
            env=ENV,
            capture_output=True,
        )
    if not (art / "summary.json").is_file():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "edgecnn",
                "convert",
                str(run),
                "--device",
                "host",
                "--precision",
                "tflite/fp32",
                "--out",
                str(art),
                "--force",
                "--quiet",
            ],
            check=True,
            env=ENV,
            capture_output=True,
        )
    return art, run


def run_cases(cases: list[Case], *, artifact: Path, run: Path, work: Path, say: Callable[[str], None] = print) -> list[Result]:
    servers = CameraServers()
    results = []
    board = None
    try:
        if any(c.klass == "boards" for c in cases):
            from loopback_sshd import SSHServer, Unavailable

            try:
                board = SSHServer(work / "board-sshd")
            except Unavailable as exc:
                say(f"skipped the boards class: {exc}")
                cases = [c for c in cases if c.klass != "boards"]
        ctx = Ctx(artifact, run, servers, board=board)
        for case in cases:
            r = run_case(case, ctx, work)
            results.append(r)
            say(
                f"{'clear' if r.ok else 'NOT CLEAR':9} {r.seconds:5.1f}s  rc={r.rc!s:4} {case.klass:8} {case.name:44} {r.line if r.ok else r.why}"
            )
    finally:
        servers.close()
        if board is not None:
            board.stop()
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="comma-separated classes: " + ", ".join(sorted({c.klass for c in CASES})))
    ap.add_argument("--ci", action="store_true", help="only the CI-sized subset")
    ap.add_argument("--artifact", type=Path, help="a LeNet-5 conversion output folder (default: made once in --out)")
    ap.add_argument("--run", type=Path, help="the training run it came from")
    ap.add_argument("--out", type=Path, default=REPO / "bench-out" / "hostile")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    artifact, run = (args.artifact, args.run) if args.artifact and args.run else make_artifact(args.out)
    cases = [c for c in CASES if (not args.only or c.klass in args.only.split(",")) and (c.ci or not args.ci)]
    results = run_cases(cases, artifact=artifact, run=run, work=args.out / "cases")
    clear = sum(r.ok for r in results)
    by_class: dict[str, list[int]] = {}
    for r in results:
        by_class.setdefault(r.case.klass, [0, 0])[0] += r.ok
        by_class[r.case.klass][1] += 1
    (args.out / "hostile.json").write_text(
        json.dumps(
            [
                {
                    "case": r.case.name,
                    "class": r.case.klass,
                    "clear": r.ok,
                    "rc": r.rc,
                    "seconds": round(r.seconds, 2),
                    "why": r.why,
                    "line": r.line,
                }
                for r in results
            ],
            indent=2,
        )
    )
    print("by class: " + ", ".join(f"{k} {v[0]}/{v[1]}" for k, v in by_class.items()))
    print(f"hostile: {clear}/{len(results)} clear")
    return 0 if clear == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
