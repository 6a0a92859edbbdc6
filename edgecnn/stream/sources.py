"""Frame sources by URI (after jetson-utils' videoSource): a scheme registry, one small class each.

``0`` / ``v4l2:///dev/video0`` (camera), ``file:clip.mp4``, an image folder, ``http://`` (MJPEG),
``rtsp://``, ``gst:PIPELINE``, ``picamera2:`` and ``synthetic:``. Every OpenCV capture gets open and
read timeouts (OpenCV's default blocks for 30 s).
"""

from __future__ import annotations

import re
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import cv2
import numpy as np

from edgecnn.errors import StreamError, UnknownNameError
from edgecnn.registry import Registry, did_you_mean

SOURCES: Registry[type] = Registry("source scheme")


@dataclass
class SourceOptions:
    open_timeout: float = 5.0
    read_timeout: float = 5.0


class FrameSource(ABC):
    """A source of BGR frames. ``live`` sources are read by a capture thread (newest frame wins);
    recorded ones (files, folders) are read in order so that no frame is skipped."""

    live = True

    def __init__(self, uri: str, options: SourceOptions) -> None:
        self.uri, self.options = uri, options

    def open(self) -> None:  # noqa: B027 - optional hook: sources without a connection (folders, synthetic) need none
        """Connect (called once by Capture, and again on reconnect)."""

    @abstractmethod
    def read(self) -> np.ndarray | None:
        """The next frame, or None at the end of a recorded source. Raises StreamError on failure."""

    def close(self) -> None:  # noqa: B027 - optional hook, as open()
        """Release the device or connection."""


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


@SOURCES.register("camera")
class CameraSource(OpenCVSource):
    api = cv2.CAP_V4L2 if hasattr(cv2, "CAP_V4L2") else cv2.CAP_ANY

    def __init__(self, uri: str, options: SourceOptions) -> None:
        super().__init__(uri, options)
        text = uri.removeprefix("v4l2://")
        if text.isdigit():
            self.target = int(text)
        else:
            if not Path(text).exists():
                raise StreamError(f"camera device {text} does not exist", hint="list cameras with 'v4l2-ctl --list-devices'")
            self.target = text


@SOURCES.register("file")
class VideoFileSource(OpenCVSource):
    """A video file, read frame by frame in order. ``?live=1`` replays it like a camera (a capture thread
    reads as fast as it decodes, or at ``&fps=N``; the newest frame wins); ``&loop=1`` starts again at the end."""

    live = False
    api = cv2.CAP_FFMPEG

    def __init__(self, uri: str, options: SourceOptions) -> None:
        super().__init__(uri, options)
        text, _, query = uri.removeprefix("file://").removeprefix("file:").partition("?")
        q = parse_qs(query)
        path = Path(text)
        if not path.is_file():
            raise StreamError(f"video file not found: {path}")
        self.target = str(path)
        self.live = q.get("live", ["0"])[0] in ("1", "true", "yes")
        self.loop = q.get("loop", ["0"])[0] in ("1", "true", "yes")
        self.fps = float(q.get("fps", ["0"])[0])
        self._next = 0.0

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


@SOURCES.register("http")
class NetworkSource(OpenCVSource):
    api = cv2.CAP_FFMPEG

    def __init__(self, uri: str, options: SourceOptions) -> None:
        super().__init__(uri, options)
        self.target = uri


SOURCES.add("rtsp", NetworkSource)


@SOURCES.register("gst")
class GStreamerSource(OpenCVSource):
    api = cv2.CAP_GSTREAMER

    def __init__(self, uri: str, options: SourceOptions) -> None:
        super().__init__(uri, options)
        if not re.search(r"GStreamer:\s+YES", cv2.getBuildInformation()):
            raise StreamError(
                "this OpenCV was built without GStreamer (pip's opencv-python has none)",
                hint="on a Jetson use the system OpenCV from JetPack (python3-opencv)",
            )
        self.target = uri.removeprefix("gst:")


@SOURCES.register("folder")
class ImageFolderSource(FrameSource):
    live = False

    def __init__(self, uri: str, options: SourceOptions) -> None:
        super().__init__(uri, options)
        from edgecnn.data.folders import EXTENSIONS

        root = Path(uri.removeprefix("folder:"))
        self.files = sorted(p for p in root.rglob("*") if p.suffix.lower() in EXTENSIONS and not p.name.startswith("."))
        if not self.files:
            raise StreamError(f"no images in folder {root}")
        self._i = 0

    def read(self) -> np.ndarray | None:
        while self._i < len(self.files):
            path = self.files[self._i]
            self._i += 1
            frame = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            if frame is None:
                raise StreamError(f"corrupt image {path}")
            return frame
        return None


@SOURCES.register("picamera2")
class PiCameraSource(FrameSource):
    """Raspberry Pi camera through Picamera2/libcamera (only on a Pi with python3-picamera2)."""

    def open(self) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError:
            raise StreamError(
                "picamera2 is not installed", hint="on Raspberry Pi OS: sudo apt install python3-picamera2"
            ) from None
        q = parse_qs(urlparse(self.uri).query)
        w, h = (int(v) for v in q.get("size", ["640x480"])[0].split("x"))
        self.cam = Picamera2()
        self.cam.configure(self.cam.create_video_configuration(main={"size": (w, h), "format": "BGR888"}))
        self.cam.start()

    def read(self) -> np.ndarray | None:
        # Picamera2's "BGR888" is little-endian: the array is in B, G, R byte order like OpenCV's
        return self.cam.capture_array("main")

    def close(self) -> None:
        cam = getattr(self, "cam", None)
        if cam is not None:
            cam.stop()
            cam.close()


@SOURCES.register("synthetic")
class SyntheticSource(FrameSource):
    """Generated frames for tests: ``synthetic:?fps=30&size=64x48&frames=300``; the frame index is
    encoded in the top-left pixels so tests can tell how old a classified frame is."""

    def __init__(self, uri: str, options: SourceOptions) -> None:
        super().__init__(uri, options)
        q = parse_qs(urlparse(uri.replace("synthetic:", "synthetic://x/", 1)).query)
        self.fps = float(q.get("fps", ["30"])[0])
        self.w, self.h = (int(v) for v in q.get("size", ["64x48"])[0].split("x"))
        self.frames = int(q.get("frames", ["0"])[0]) or None
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


def frame_index(frame: np.ndarray) -> int:
    """Decode the index a SyntheticSource wrote into a frame."""
    b = frame[0, 0].astype(int)  # the first pixel holds the index as B, G, R bytes
    return int(b[0] | (b[1] << 8) | (b[2] << 16))


def open_source(uri: str, options: SourceOptions | None = None) -> FrameSource:
    """Pick the source class for ``uri`` by its scheme; unknown schemes list the supported ones."""
    options = options or SourceOptions()
    text = str(uri)
    if text.isdigit() or text.startswith("v4l2://"):
        scheme = "camera"
    elif text.startswith(("http://", "https://")):
        scheme = "http"
    elif ":" in text and not Path(text).exists() and not (len(text) > 1 and text[1] == ":"):
        scheme = text.split(":", 1)[0]
    elif Path(text).is_dir():
        scheme, text = "folder", text
    elif Path(text).is_file():
        scheme, text = "file", f"file:{text}"
    else:
        raise StreamError(
            f"source {uri!r} is not a file, folder, camera index or URI",
            hint="examples: 0, v4l2:///dev/video0, file:clip.mp4, http://host:8080/video, rtsp://..., synthetic:",
        )
    if scheme not in SOURCES:
        known = [
            "0 (camera index)",
            "v4l2://",
            "file:",
            "folder (a path)",
            "http://",
            "rtsp://",
            "gst:",
            "picamera2:",
            "synthetic:",
        ]
        raise UnknownNameError(
            f"unknown source scheme '{scheme}:' (supported: {', '.join(known)}).{did_you_mean(scheme, SOURCES.names())}"
        )
    return SOURCES.get(scheme)(text, options)
