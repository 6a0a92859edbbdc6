"""Prediction sinks by URI: ``jsonl:PATH|-``, a video file (``.mp4``/``.avi``/``.mkv``), ``display:``, ``http://:PORT``.

Each class declares its schemes (the video sink claims paths by their suffix) and checks its target when it is
made, before the first frame: a missing or read-only folder, a port out of range, a file another process writes.
``jsonl:`` appends, one whole line per write, and holds an exclusive lock on its file for its lifetime: a second
process pointed at the same file is refused, so lines are never torn or interleaved, and a restarted service keeps
the lines of its earlier runs.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import sys
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np

from edgecnn.errors import ConfigError, StreamError
from edgecnn.registry import Registry
from edgecnn.stream import overlay
from edgecnn.stream import uri as uris
from edgecnn.stream.uri import StreamURI

SINKS: Registry[Any] = Registry("sink scheme")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv")


class Sink:
    """Where predictions go. ``watched`` sinks (the live page) are looked at by a person: a recorded source plays at its
    own frame rate for them, and the session stays open after it ends, until Ctrl-C."""

    schemes: ClassVar[tuple[str, ...]] = ()
    watched: ClassVar[bool] = False

    def announce(self) -> list[str]:
        """Lines to tell the user once the sink is up (where the live page is served)."""
        return []

    def write(self, frame: np.ndarray, record: dict[str, Any], top: list[tuple[str, float]], fps: float) -> None: ...

    def describe_run(self, info: dict[str, Any]) -> None:
        """What is being classified (``model``: the artifact and runtime, ``source``: its URI), once, before the first
        frame; the live page names them."""

    def update(self, counters: dict[str, int]) -> None:
        """The stream's counters after each frame (read, classified, dropped, corrupt, reconnects)."""

    def close(self) -> None: ...

    @classmethod
    def claims(cls, text: str) -> bool:
        return False


def register(cls: type[Sink]) -> type[Sink]:
    for scheme in cls.schemes:
        SINKS.add(scheme, cls)
    return cls


def _writable_file(path: Path, what: str) -> None:
    """The file can be created or written: its folder exists and takes files, and it is not itself a folder."""
    if path.is_dir():
        raise StreamError(f"cannot write {what} to {path}: it is a folder")
    if not path.parent.is_dir():
        raise StreamError(f"cannot write {what} to {path}: the folder {path.parent} does not exist")


@register
class JSONLSink(Sink):
    """One JSON line per prediction, appended under an exclusive lock (``-``: standard output)."""

    schemes = ("jsonl",)

    def __init__(self, uri: StreamURI) -> None:
        target = uri.target + (f"?{uri.query}" if uri.query else "")
        if not target:
            raise StreamError(f"sink {uri.text!r}: jsonl: needs a file path, or - for standard output (jsonl:-)")
        self._fd: int | None = None
        if target == "-":
            return
        path = Path(target)
        _writable_file(path, "predictions")
        try:  # never blocks: a FIFO with no reader is refused (ENXIO) instead of hanging the command before it starts
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NONBLOCK, 0o666)
        except OSError as exc:
            if exc.errno == errno.ENXIO:
                raise StreamError(
                    f"cannot write predictions to {path}: it is a FIFO with no reader",
                    hint=f"start the reader first (e.g. cat {path}), or give a regular file",
                ) from None
            raise StreamError(f"cannot write predictions to {path}: {exc.strerror}") from None
        self._pipe = stat.S_ISFIFO(os.fstat(fd).st_mode)  # a slow reader must not stall the loop: lines are dropped
        self.dropped = 0
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StreamError(
                f"another process is writing predictions to {path} (it holds the file's lock)",
                hint="give each classify its own jsonl: file",
            ) from None
        except ImportError:  # no flock (Windows): appends of whole lines still never tear
            pass
        self._fd = fd

    def write(self, frame, record, top, fps) -> None:
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode("utf-8")
        if self._fd is None:
            sys.stdout.write(line.decode("utf-8"))
            sys.stdout.flush()
        else:
            try:
                os.write(self._fd, line)  # one write of the whole line to an O_APPEND file: never torn
            except BlockingIOError:  # a FIFO whose reader is not keeping up
                self.dropped += 1
            except BrokenPipeError:
                raise StreamError("the reader of the predictions FIFO went away") from None

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


@register
class VideoSink(Sink):
    """The annotated frames as a video file (the codec by suffix: mp4v for .mp4, MJPG otherwise)."""

    schemes = ("video",)

    def __init__(self, uri: StreamURI, fps: float = 15.0) -> None:
        self.path, self.fps, self.writer = Path(uri.target), fps, None
        _writable_file(self.path, "video")
        from edgecnn.atomic import check_can_create

        try:
            check_can_create(self.path, "video")
        except ConfigError as exc:  # read-only, no permission, missing folder
            raise StreamError(f"cannot write video to {self.path}: {getattr(exc, 'message', exc)}") from None

    @classmethod
    def claims(cls, text: str) -> bool:
        return Path(text).suffix.lower() in VIDEO_SUFFIXES

    def write(self, frame, record, top, fps) -> None:
        img = overlay.draw(frame, top, fps=fps, timings=record.get("latency_ms", {}))
        if self.writer is None:
            fourcc = cv2.VideoWriter_fourcc(*("mp4v" if self.path.suffix.lower() == ".mp4" else "MJPG"))
            self.size = (img.shape[1], img.shape[0])
            self.writer = cv2.VideoWriter(str(self.path), fourcc, self.fps, self.size)
            if not self.writer.isOpened():
                raise StreamError(f"cannot open a video writer for {self.path} (OpenCV has no encoder for it?)")
        if (img.shape[1], img.shape[0]) != self.size:
            img = cv2.resize(img, self.size)
        self.writer.write(img)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()


@register
class DisplaySink(Sink):
    schemes = ("display",)

    def __init__(self, uri: StreamURI) -> None:
        if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
            raise StreamError(
                "display: needs a screen (no DISPLAY set)", hint="use --sink out.mp4 or --sink http://:8080 instead"
            )
        self.name = uri.target or "edgecnn"

    def write(self, frame, record, top, fps) -> None:
        cv2.imshow(self.name, overlay.draw(frame, top, fps=fps, timings=record.get("latency_ms", {})))
        cv2.waitKey(1)

    def close(self) -> None:
        cv2.destroyAllWindows()


class _Lazy:
    """A sink class registered by ``module:Class`` and imported only when such a sink is made (the web page's
    server is not loaded for a jsonl sink)."""

    def __init__(self, where: str) -> None:
        self.where = where

    @staticmethod
    def claims(text: str) -> bool:
        return False

    def __call__(self, uri: StreamURI) -> Sink:
        import importlib

        module, cls = self.where.split(":")
        return getattr(importlib.import_module(module), cls)(uri)


SINKS.add("http", _Lazy("edgecnn.stream.web:WebSink"))


def _claim(text: str) -> str | None:
    return next((scheme for scheme in SINKS if SINKS.get(scheme).claims(text)), None)


def open_sink(uri: str) -> Sink:
    """Resolve ``uri`` through the registry to a sink whose target has been checked."""
    parsed = uris.parse(str(uri), role="sink", schemes=SINKS.names(), claim=_claim)
    return SINKS.get(parsed.scheme)(parsed)
