"""Prediction sinks by URI: ``jsonl:PATH|-``, a video file (``.mp4``/``.avi``), ``display:``."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgecnn.errors import StreamError, UnknownNameError
from edgecnn.registry import Registry
from edgecnn.stream import overlay

SINKS: Registry[type] = Registry("sink scheme")


class Sink:
    def write(self, frame: np.ndarray, record: dict[str, Any], top: list[tuple[str, float]], fps: float) -> None: ...
    def close(self) -> None: ...


@SINKS.register("jsonl")
class JSONLSink(Sink):
    def __init__(self, target: str) -> None:
        self._own = target not in ("-", "")
        try:
            self.f = open(target, "w", encoding="utf-8", buffering=1) if self._own else sys.stdout
        except OSError as exc:
            raise StreamError(f"cannot write predictions to {target}: {exc.strerror}") from None

    def write(self, frame, record, top, fps) -> None:
        self.f.write(json.dumps(record, separators=(",", ":")) + "\n")
        if not self._own:
            self.f.flush()

    def close(self) -> None:
        if self._own:
            self.f.close()


@SINKS.register("video")
class VideoSink(Sink):
    def __init__(self, target: str, fps: float = 15.0) -> None:
        self.path, self.fps, self.writer = Path(target), fps, None
        if not self.path.parent.exists():
            raise StreamError(f"cannot write video {self.path}: folder {self.path.parent} does not exist")

    def write(self, frame, record, top, fps) -> None:
        img = overlay.draw(frame, top, fps=fps, timings=record.get("latency_ms", {}))
        if self.writer is None:
            fourcc = cv2.VideoWriter_fourcc(*("mp4v" if self.path.suffix.lower() == ".mp4" else "MJPG"))
            self.size = (img.shape[1], img.shape[0])
            self.writer = cv2.VideoWriter(str(self.path), fourcc, self.fps, self.size)
            if not self.writer.isOpened():
                raise StreamError(f"cannot open video writer for {self.path}")
        if (img.shape[1], img.shape[0]) != self.size:
            img = cv2.resize(img, self.size)
        self.writer.write(img)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()


@SINKS.register("display")
class DisplaySink(Sink):
    def __init__(self, target: str) -> None:
        if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
            raise StreamError(
                "display: needs a screen (no DISPLAY set)", hint="use --sink out.mp4 or --sink http://:8080 instead"
            )
        self.name = target or "edgecnn"

    def write(self, frame, record, top, fps) -> None:
        cv2.imshow(self.name, overlay.draw(frame, top, fps=fps, timings=record.get("latency_ms", {})))
        cv2.waitKey(1)

    def close(self) -> None:
        cv2.destroyAllWindows()


def open_sink(uri: str) -> Sink:
    if uri.startswith("jsonl:"):
        return JSONLSink(uri.split(":", 1)[1])
    if uri.startswith("display:") or uri == "display":
        return DisplaySink(uri.partition(":")[2])
    if uri.startswith("http://"):
        from edgecnn.stream.web import WebSink

        return WebSink(uri)
    if Path(uri).suffix.lower() in (".mp4", ".avi", ".mkv"):
        return VideoSink(uri)
    raise UnknownNameError(f"unknown sink {uri!r} (supported: jsonl:PATH, jsonl:-, display:, a .mp4/.avi file, http://:PORT)")
