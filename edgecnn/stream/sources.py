"""Frame sources by URI (after jetson-utils' videoSource): a scheme registry, one small class each.

``0`` / ``v4l2:///dev/video0`` (camera), ``file:clip.mp4``, an image folder, ``http://`` (MJPEG, or a snapshot URL),
``rtsp://``, ``gst:PIPELINE``, ``picamera2:`` and ``synthetic:``. Each class declares its schemes and options; a URI
is parsed once (``stream.uri``) and resolved through ``SOURCES`` alone. Every connection has open and read timeouts
(OpenCV's default blocks for 30 s), and a frame that cannot be decoded raises ``CorruptFrame``: it is counted, not
taken for a lost connection.
"""

from __future__ import annotations

import base64
import http.client
import re
import socket
import ssl
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit

import cv2
import numpy as np

from edgecnn import images
from edgecnn.errors import StreamError
from edgecnn.redact import redact
from edgecnn.registry import Registry
from edgecnn.stream import uri as uris
from edgecnn.stream.uri import Option, StreamURI

SOURCES: Registry[type[FrameSource]] = Registry("source scheme")
MAX_FRAME_BYTES = 64 << 20  # one MJPEG part larger than this is refused (a hostile or broken server)


class CorruptFrame(StreamError):
    """Data arrived but is not a decodable frame: counted as corrupt, the connection is kept."""


@dataclass
class SourceOptions:
    open_timeout: float = 5.0
    read_timeout: float = 5.0

    def __post_init__(self) -> None:
        for name in ("open_timeout", "read_timeout"):
            value = getattr(self, name)
            if not value > 0:
                raise StreamError(f"--{name.replace('_', '-')} must be above 0 seconds; received {value:g}")


class FrameSource(ABC):
    """A source of BGR frames. ``live`` sources are read by a capture thread (newest frame wins);
    recorded ones (files, folders) are read in order so that no frame is skipped."""

    live = True
    schemes: ClassVar[tuple[str, ...]] = ()
    uri_options: ClassVar[dict[str, Option]] = {}  # what its URI's query may set (stream.uri.Option)

    def __init__(self, uri: StreamURI, options: SourceOptions) -> None:
        # ``uri`` is what every message, report, health line and page shows: passwords and tokens masked
        # (edgecnn.redact); only the connection itself sees the text as given (``_given``)
        self._given, self.uri, self.options = uri.text, redact(uri.text), options
        self.opts = uri.options(self.uri_options)

    @classmethod
    def claims(cls, text: str) -> bool:
        """Whether a bare path (no scheme) is this source's."""
        return False

    def open(self) -> None:  # noqa: B027 - optional hook: sources without a connection (folders, synthetic) need none
        """Connect (called once by Capture, and again on reconnect)."""

    @abstractmethod
    def read(self) -> np.ndarray | None:
        """The next frame, or None at the end of a recorded source. Raises StreamError on failure (CorruptFrame for
        data that is not a frame)."""

    def close(self) -> None:  # noqa: B027 - optional hook, as open()
        """Release the device or connection; may be called from another thread to unblock a read."""

    def watch_fps(self) -> float:
        """For a person watching (the live page): the rate to show a recorded source at, once opened; 0 for as fast
        as it reads (live sources, which keep their own time, and a file given its own ``&fps=N``)."""
        return 0.0


def register(cls: type[FrameSource]) -> type[FrameSource]:
    for scheme in cls.schemes:
        SOURCES.add(scheme, cls)
    return cls


class OpenCVSource(FrameSource):
    target: Any = None
    api = cv2.CAP_ANY

    def open(self) -> None:
        o = self.options
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            int(o.open_timeout * 1000),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            int(o.read_timeout * 1000),
        ]
        t0 = time.monotonic()
        self.cap = cv2.VideoCapture(self.target, self.api, params)
        if not self.cap.isOpened():
            self.cap.release()
            raise StreamError(f"cannot open source {self.uri} (after {time.monotonic() - t0:.1f} s)")

    def read(self) -> np.ndarray | None:
        ok, frame = self.cap.read()
        if not ok or frame is None:
            if not self.live:
                return None
            raise StreamError(f"no frame from {self.uri} within the read timeout ({self.options.read_timeout:g} s)")
        return frame

    def close(self) -> None:
        cap = getattr(self, "cap", None)
        if cap is not None:
            cap.release()
            self.cap = None


@register
class CameraSource(OpenCVSource):
    schemes = ("camera", "v4l2")
    api = cv2.CAP_V4L2 if hasattr(cv2, "CAP_V4L2") else cv2.CAP_ANY

    def __init__(self, uri: StreamURI, options: SourceOptions) -> None:
        super().__init__(uri, options)
        text = uri.target
        if text.isdigit():
            self.target = int(text)
            if not Path(f"/dev/video{text}").exists() and Path("/dev").is_dir():
                raise StreamError(
                    f"camera {text} does not exist (no /dev/video{text})", hint="list cameras with 'v4l2-ctl --list-devices'"
                )
        else:
            if not Path(text).exists():
                raise StreamError(f"camera device {text} does not exist", hint="list cameras with 'v4l2-ctl --list-devices'")
            self.target = text

    @classmethod
    def claims(cls, text: str) -> bool:
        return text.isdigit() or re.fullmatch(r"/dev/video\d+", text) is not None  # a V4L2 device by its path


VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".h264", ".h265")


@register
class VideoFileSource(OpenCVSource):
    """A video file, read frame by frame in order. ``?live=1`` replays it like a camera (a capture thread
    reads as fast as it decodes, or at ``&fps=N``; the newest frame wins); ``&loop=1`` starts again at the end."""

    schemes = ("file",)
    live = False
    api = cv2.CAP_FFMPEG
    uri_options = {
        "live": Option("bool", False, help="replay like a camera"),
        "loop": Option("bool", False, help="start again at the end"),
        "fps": Option("float", 0.0, 0.0, 1000.0, help="pace reads (0: as fast as it decodes)"),
    }

    def __init__(self, uri: StreamURI, options: SourceOptions) -> None:
        super().__init__(uri, options)
        path = Path(uri.target)
        if path.is_dir():
            raise StreamError(
                f"{path} is a folder, not a video file", hint=f"for the images in it, give the folder itself: --source {path}"
            )
        if not path.is_file():
            raise StreamError(f"video file not found: {path}")
        self.target = str(path)
        self.live, self.loop, self.fps = self.opts["live"], self.opts["loop"], self.opts["fps"]
        self._next = 0.0

    @classmethod
    def claims(cls, text: str) -> bool:
        # a path that ends like a video is one even when missing: "video file not found" says more than a generic line
        return Path(text).is_file() or Path(text).suffix.lower() in VIDEO_SUFFIXES

    def open(self) -> None:
        try:
            super().open()
        except StreamError:
            from edgecnn.formats import looks_like

            with open(self.target, "rb") as f:
                kind = looks_like(f.read(256))
            raise StreamError(
                f"cannot open video file {self.target}: not a video FFmpeg can read (it looks like {kind})"
            ) from None

    def watch_fps(self) -> float:
        if self.live or self.fps:
            return 0.0
        rate = self.cap.get(cv2.CAP_PROP_FPS) if getattr(self, "cap", None) is not None else 0.0
        return rate if 0.5 <= rate <= 240 else 25.0  # the rate the file was recorded at, where it says so sensibly

    def read(self) -> np.ndarray | None:
        if self.fps:
            delay = self._next - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self._next = max(self._next, time.monotonic()) + 1 / self.fps
        ok, frame = self.cap.read()
        if (not ok or frame is None) and self.loop:
            self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = self.cap.read()
        return frame if ok else None


def _connect_error(host: str, port: int, exc: BaseException, timeout: float) -> StreamError:
    if isinstance(exc, socket.gaierror):
        return StreamError(f"cannot resolve the host {host!r} ({exc.strerror})", hint="check the camera's address")
    if isinstance(exc, TimeoutError | socket.timeout):
        return StreamError(f"no answer from {host}:{port} within {timeout:g} s (--open-timeout)")
    if isinstance(exc, ConnectionRefusedError):
        return StreamError(
            f"connection refused by {host}:{port}: nothing listens there", hint="check the port and that the camera is on"
        )
    return StreamError(f"cannot connect to {host}:{port}: {getattr(exc, 'strerror', None) or exc}")


@register
class HTTPSource(FrameSource):
    """An IP camera over HTTP: an MJPEG stream (``multipart/x-mixed-replace``) parsed here, part by part, or a snapshot
    URL (``image/jpeg``) fetched again for every frame; any other video type is handed to OpenCV's FFmpeg. An HTTP
    error or a web page is named as such; credentials in the URL (``http://user:pass@host/...``) are sent as Basic auth."""

    schemes = ("http", "https")

    def __init__(self, uri: StreamURI, options: SourceOptions) -> None:
        super().__init__(uri, options)
        u = urlsplit(uri.target)
        if not u.hostname:
            raise StreamError(f"source {self.uri!r} has no host", hint="e.g. http://192.168.1.20:8080/video.mjpg")
        try:
            self.port = u.port or (443 if u.scheme == "https" else 80)
        except ValueError:
            raise StreamError(f"source {self.uri!r}: the port must be a number from 1 to 65535") from None
        self.host, self.https = u.hostname, u.scheme == "https"
        self.path = (u.path or "/") + (f"?{u.query}" if u.query else "")
        self.auth = None
        if u.username is not None:
            token = f"{unquote(u.username)}:{unquote(u.password or '')}".encode()
            self.auth = "Basic " + base64.b64encode(token).decode()
        self.display = f"{u.scheme}://{u.hostname}:{self.port}{u.path or '/'}"  # never the password
        self.conn: http.client.HTTPConnection | None = None
        self.mode = ""
        self._fallback: OpenCVSource | None = None

    def _request(self) -> http.client.HTTPResponse:
        o = self.options
        cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
        kw = {"context": ssl.create_default_context()} if self.https else {}
        # the connection and its socket as locals: a stop may close this source from another thread meanwhile
        # (``close`` sets the attributes to None); what it closed then fails as an OSError, named below
        conn = self.conn = cls(self.host, self.port, timeout=o.open_timeout, **kw)
        headers = {"User-Agent": "edgecnn", "Accept": "multipart/x-mixed-replace, image/jpeg, */*"}
        if self.auth:
            headers["Authorization"] = self.auth
        try:
            conn.request("GET", self.path, headers=headers)
            self._sock = conn.sock  # the connection forgets it once a response will close it; the stream needs it
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            closed = self.conn is not conn  # by a stop, from another thread
            self.close()
            if closed:
                raise self._closed_while_opening() from None
            if isinstance(exc, http.client.HTTPException):
                raise StreamError(f"{self.display} does not speak HTTP ({type(exc).__name__})") from None
            raise _connect_error(self.host, self.port, exc, o.open_timeout) from None
        if resp.status != 200:
            self.close()
            hint = {
                401: "the camera wants credentials: http://user:password@host/...",
                403: "the camera refused these credentials",
                404: "check the stream's path (often /video, /mjpg/video.mjpg or /stream)",
            }.get(resp.status, "check the URL in a browser on the same network")
            raise StreamError(f"camera at {self.display} answered HTTP {resp.status} {resp.reason}", hint=hint)
        return resp

    def open(self) -> None:
        resp = self._request()
        ctype = resp.getheader("Content-Type", "") or ""
        kind = ctype.split(";")[0].strip().lower()
        if kind.startswith("multipart/"):
            m = re.search(r'boundary="?([^";]+)"?', ctype)
            if not m:
                self.close()
                raise StreamError(f"{self.display}: a multipart stream without a boundary ({ctype!r}): not an MJPEG stream")
            self.parts = _Parts(resp, m.group(1).strip().removeprefix("--").encode(), self.display)
            self.mode = "mjpeg"
            sock = self._sock  # None: closed by a stop between the answer and here
            try:
                if sock is not None:
                    sock.settimeout(self.options.read_timeout)
            except OSError:  # closed in the meantime
                sock = None
            if sock is None:
                self.close()
                raise self._closed_while_opening() from None
        elif kind in ("image/jpeg", "image/jpg"):
            self.snapshot = self._read_exactly(resp, resp.length) if resp.length is not None else resp.read(MAX_FRAME_BYTES)
            self.close()
            self.mode = "snapshot"
        elif kind.startswith("text/") or kind in ("application/json", "application/xml"):
            self.close()
            raise StreamError(
                f"not an MJPEG stream: {self.display} answered with {kind} (a web page or an API, not video)",
                hint="use the camera's stream URL (often /video, /mjpg/video.mjpg or /stream)",
            )
        else:  # video/mp4, HLS, octet-stream...: FFmpeg knows more containers than we parse
            self.close()
            self._fallback = OpenCVSource(StreamURI(self._given, "http", self._given), self.options)
            self._fallback.target, self._fallback.api, self._fallback.uri = self._given, cv2.CAP_FFMPEG, self.display
            self._fallback.open()
            self.mode = "ffmpeg"

    def _closed_while_opening(self) -> StreamError:
        return StreamError(f"the connection to {self.display} was closed while opening")

    def _read_exactly(self, stream: Any, n: int) -> bytes:
        if n > MAX_FRAME_BYTES:
            raise CorruptFrame(f"a frame of {n:,} bytes from {self.display}: over the {MAX_FRAME_BYTES >> 20} MB limit")
        data = stream.read(n)
        if len(data) < n:
            raise StreamError(f"{self.display} closed the stream in the middle of a frame")
        return data

    def read(self) -> np.ndarray | None:
        if self.mode == "ffmpeg":
            return self._fallback.read()
        if self.mode == "snapshot":
            data, self.snapshot = self.snapshot, None
            if data is None:
                resp = self._request()
                data = resp.read(MAX_FRAME_BYTES)
                self.close()
            return self._decode(data)
        try:
            return self._decode(self.parts.next())
        except TimeoutError:
            raise StreamError(f"no frame from {self.display} within the read timeout ({self.options.read_timeout:g} s)") from None
        except (OSError, http.client.HTTPException, ValueError) as exc:  # ValueError: read on a closed response
            raise StreamError(f"the connection to {self.display} broke ({type(exc).__name__})") from None

    def _decode(self, data: bytes) -> np.ndarray:
        img, reason = images.decode(data, ".jpg")
        if img is None:
            raise CorruptFrame(f"a corrupt frame from {self.display}: {reason}")
        return img

    def close(self) -> None:
        if self._fallback is not None:
            self._fallback.close()
        conn, self.conn = self.conn, None
        sock, self._sock = getattr(self, "_sock", None), None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # unblocks a read in the capture thread
            except OSError:
                pass
            sock.close()
        if conn is not None:
            conn.close()


class _Parts:
    """The parts of a ``multipart/x-mixed-replace`` body, one at a time: Content-Length bytes when a part says how
    many, else everything up to the next boundary. Reads what the socket has (chunked transfer included)."""

    def __init__(self, resp: http.client.HTTPResponse, boundary: bytes, where: str) -> None:
        self.resp, self.marker, self.where, self.buf = resp, b"--" + boundary, where, b""

    def _fill(self) -> None:
        chunk = self.resp.read1(65536)
        if not chunk:
            raise StreamError(f"{self.where} closed the stream")
        self.buf += chunk
        if len(self.buf) > MAX_FRAME_BYTES:
            self.buf = b""
            raise CorruptFrame(f"{self.where}: no frame in {MAX_FRAME_BYTES >> 20} MB of data: not an MJPEG stream")

    def next(self) -> bytes:
        while (i := self.buf.find(self.marker)) < 0:
            self.buf = self.buf[-len(self.marker) :]
            self._fill()
        self.buf = self.buf[i + len(self.marker) :]
        while (j := self.buf.find(b"\r\n\r\n")) < 0:
            if len(self.buf) > 16384:
                self.buf = b""
                raise CorruptFrame(f"{self.where}: a part without the blank line that ends its headers")
            self._fill()
        headers, self.buf = self.buf[:j], self.buf[j + 4 :]
        m = re.search(rb"(?im)^content-length\s*:\s*(\S+)", headers)
        if m:
            try:
                length = int(m.group(1))
            except ValueError:
                raise CorruptFrame(f"{self.where}: a part's Content-Length is not a number: {m.group(1)[:20]!r}") from None
            if not 0 <= length <= MAX_FRAME_BYTES:
                raise CorruptFrame(f"{self.where}: a part of {length:,} bytes, over the {MAX_FRAME_BYTES >> 20} MB limit")
            while len(self.buf) < length:
                self._fill()
            frame, self.buf = self.buf[:length], self.buf[length:]
            return frame
        while (k := self.buf.find(self.marker)) < 0:
            self._fill()
        frame, self.buf = self.buf[:k], self.buf[k:]
        return frame.rstrip(b"\r\n")


def _rtsp_probe(url: str, timeout: float, budget: float | None = None) -> None:
    """Ask the RTSP server for the stream (DESCRIBE) and name its refusal, which FFmpeg hides behind 'cannot open'.

    Only after FFmpeg's own open failed: a DESCRIBE on a connection of its own just before FFmpeg's made GStreamer's
    RTSP server answer FFmpeg 503 (its shared media was being unprepared after the first connection closed)."""
    u = urlsplit(url)
    host, port = u.hostname or "", u.port or (322 if u.scheme == "rtsps" else 554)
    if u.scheme == "rtsps" or u.username:  # TLS or credentials: FFmpeg's own negotiation
        return
    try:
        deadline = time.monotonic() + (budget or timeout)  # one deadline for the connect and the answer
        with socket.create_connection((host, port), timeout=budget or timeout) as s:
            s.sendall(f"DESCRIBE {url} RTSP/1.0\r\nCSeq: 1\r\nAccept: application/sdp\r\nUser-Agent: edgecnn\r\n\r\n".encode())
            s.settimeout(max(0.01, deadline - time.monotonic()))
            status = s.recv(256).split(b"\r\n", 1)[0].decode("latin-1")
    except OSError as exc:
        raise _connect_error(host, port, exc, timeout) from None
    parts = status.split(" ", 2)
    if not status.startswith("RTSP/"):
        raise StreamError(f"{host}:{port} does not speak RTSP (it answered {status[:40]!r})")
    if len(parts) > 1 and parts[1] not in ("200", "401"):
        raise StreamError(f"the RTSP server at {host}:{port} answered {' '.join(parts[1:])}", hint="check the stream's path")


@register
class RTSPSource(OpenCVSource):
    schemes = ("rtsp", "rtsps")
    api = cv2.CAP_FFMPEG

    def __init__(self, uri: StreamURI, options: SourceOptions) -> None:
        super().__init__(uri, options)
        self.target = uri.target

    def open(self) -> None:
        t0 = time.monotonic()
        try:
            super().open()
        except StreamError:
            timeout = self.options.open_timeout
            if time.monotonic() - t0 >= 0.9 * timeout:  # FFmpeg waited it out: a silent server, asked once is enough
                u = urlsplit(self.target)
                raise StreamError(
                    f"no answer from {u.hostname}:{u.port or (322 if u.scheme == 'rtsps' else 554)} within {timeout:g} s"
                    " (--open-timeout)"
                ) from None
            # names the server's refusal, when it has one, in what is left of the open timeout (at least 0.5 s)
            _rtsp_probe(self.target, timeout, budget=max(0.5, timeout - (time.monotonic() - t0)))
            raise


@register
class GStreamerSource(OpenCVSource):
    schemes = ("gst",)
    api = cv2.CAP_GSTREAMER

    def __init__(self, uri: StreamURI, options: SourceOptions) -> None:
        super().__init__(uri, options)
        if not re.search(r"GStreamer:\s+YES", cv2.getBuildInformation()):
            raise StreamError(
                f"this OpenCV ({cv2.__version__}, {Path(cv2.__file__).parent}) was built without GStreamer "
                "(pip's opencv-python wheels have none)",
                hint="on a Jetson use JetPack's OpenCV (python3-opencv) and install edgecnn without pip's: see the README",
            )
        self.target = uri.target + (f"?{uri.query}" if uri.query else "")


@register
class ImageFolderSource(FrameSource):
    """The images of a folder in name order; a file that is not a sound image (truncated, lying extension, too many
    pixels) is counted corrupt and skipped, never classified."""

    schemes = ("folder",)
    live = False

    def __init__(self, uri: StreamURI, options: SourceOptions) -> None:
        super().__init__(uri, options)
        root = Path(uri.target)
        if not root.is_dir():
            raise StreamError(f"image folder not found: {root}" if not root.exists() else f"{root} is not a folder")
        self.files = images.image_files(root)
        if not self.files:
            raise StreamError(f"no images in folder {root} (looked for {', '.join(sorted(images.EXTENSIONS))})")
        self._i = 0

    @classmethod
    def claims(cls, text: str) -> bool:
        return Path(text).is_dir()

    def watch_fps(self) -> float:
        return 2.0  # a slide show: two images a second

    def read(self) -> np.ndarray | None:
        if self._i >= len(self.files):
            return None
        path = self.files[self._i]
        self._i += 1
        img, reason = images.check_image(path)
        if img is None:
            raise CorruptFrame(f"corrupt image {path}: {reason}")
        return img


@register
class PiCameraSource(FrameSource):
    """Raspberry Pi camera through Picamera2/libcamera (only on a Pi with python3-picamera2)."""

    schemes = ("picamera2",)
    uri_options = {"size": Option("size", (640, 480), 16, 8192, help="capture size WxH")}

    def open(self) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError:
            raise StreamError(
                "picamera2 is not installed", hint="on Raspberry Pi OS: sudo apt install python3-picamera2"
            ) from None
        w, h = self.opts["size"]
        self.cam = Picamera2()
        self.cam.configure(self.cam.create_video_configuration(main={"size": (w, h), "format": "BGR888"}))
        self.cam.start()

    def read(self) -> np.ndarray | None:
        # Picamera2's "BGR888" is little-endian: the array is in B, G, R byte order like OpenCV's
        return self.cam.capture_array("main")

    def close(self) -> None:
        cam, self.cam = getattr(self, "cam", None), None
        if cam is not None:
            cam.stop()
            cam.close()


@register
class SyntheticSource(FrameSource):
    """Generated frames for tests: ``synthetic:?fps=30&size=64x48&frames=300``; the frame index is
    encoded in the top-left pixels so tests can tell how old a classified frame is."""

    schemes = ("synthetic",)
    uri_options = {
        "fps": Option("float", 30.0, 0.1, 1000.0),
        "size": Option("size", (64, 48), 1, 8192),
        "frames": Option("int", 0, 0, 10**9, help="0: endless"),
    }

    def __init__(self, uri: StreamURI, options: SourceOptions) -> None:
        super().__init__(uri, options)
        self.fps = self.opts["fps"]
        self.w, self.h = self.opts["size"]
        self.frames = self.opts["frames"] or None
        self.index = 0
        self.t0 = 0.0

    def open(self) -> None:
        self.t0 = time.monotonic()

    def read(self) -> np.ndarray | None:
        if self.frames is not None and self.index >= self.frames:
            return None
        due = self.t0 + self.index / self.fps
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        frame = np.full((self.h, self.w, 3), (self.index * 7) % 256, dtype=np.uint8)
        frame[0, 0] = [self.index & 0xFF, (self.index >> 8) & 0xFF, (self.index >> 16) & 0xFF]
        self.index += 1
        return frame


class _LazySource:
    """A source class registered by ``module:Class`` and imported only when such a source is made."""

    def __init__(self, where: str) -> None:
        self.where = where

    @staticmethod
    def claims(text: str) -> bool:
        return False

    def __call__(self, uri: StreamURI, options: SourceOptions) -> FrameSource:
        import importlib

        module, cls = self.where.split(":")
        return getattr(importlib.import_module(module), cls)(uri, options)


SOURCES.add("picamera2-imx500", _LazySource("edgecnn.stream.imx500:IMX500Source"))  # the AI Camera (stream/imx500.py)


def frame_index(frame: np.ndarray) -> int:
    """Decode the index a SyntheticSource wrote into a frame."""
    b = frame[0, 0].astype(int)  # the first pixel holds the index as B, G, R bytes
    return int(b[0] | (b[1] << 8) | (b[2] << 16))


def _claim(text: str) -> str | None:
    return next((scheme for scheme, cls in ((s, SOURCES.get(s)) for s in SOURCES) if cls.claims(text)), None)


def open_source(uri: str, options: SourceOptions | None = None) -> FrameSource:
    """Resolve ``uri`` through the registry (its options checked) to an unopened source."""
    parsed = uris.parse(str(uri), role="source", schemes=SOURCES.names(), claim=_claim)
    return SOURCES.get(parsed.scheme)(parsed, options or SourceOptions())
