"""Capture in its own thread, keeping only the newest frame; reconnect with exponential backoff."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np

from edgecnn.errors import EdgeCNNError, StreamError
from edgecnn.stream.frames import normalise_frame
from edgecnn.stream.sources import FrameSource


@dataclass
class CaptureStats:
    read: int = 0
    dropped: int = 0  # captured but replaced by a newer frame before anyone took it
    corrupt: int = 0
    reconnects: int = 0
    frozen_events: int = 0
    errors: list[str] = field(default_factory=list)
    events: list[tuple[float, str]] = field(default_factory=list)  # (time.monotonic(), what happened)

    def note(self, msg: str) -> None:
        self.errors.append(msg)
        del self.errors[:-20]  # bounded: keep the last 20
        self.events.append((time.monotonic(), msg))
        del self.events[:-100]


@dataclass
class Frame:
    image: np.ndarray
    index: int  # capture sequence number
    t_capture: float  # time.monotonic() when it arrived


class Capture:
    """Wrap a source. Live sources run a reader thread; ``get()`` returns only frames newer than the last one taken.

    Args:
        source: an unopened FrameSource.
        backoff: (first, max) seconds between reconnect attempts.
        frozen_after: seconds of identical frames after which the stream counts as frozen (reconnect).
        give_up_after: seconds without any frame after which ``get`` raises (None: keep trying forever).
    """

    def __init__(
        self,
        source: FrameSource,
        *,
        backoff: tuple[float, float] = (0.5, 8.0),
        frozen_after: float = 10.0,
        give_up_after: float | None = None,
    ) -> None:
        self.source, self.backoff, self.frozen_after, self.give_up_after = source, backoff, frozen_after, give_up_after
        self.stats = CaptureStats()
        self._cond = threading.Condition()
        self._latest: Frame | None = None
        self._taken = -1
        self._seq = 0
        self._stop = threading.Event()
        self._ended = False
        self._thread: threading.Thread | None = None
        self._last_frame_time = time.monotonic()

    # ---- lifecycle ---------------------------------------------------------------------
    def start(self) -> Capture:
        self.source.open()  # the first open fails loudly (a wrong URI is not a disconnect)
        self._last_frame_time = time.monotonic()
        if self.source.live:
            self._thread = threading.Thread(target=self._run, name="edgecnn-capture", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=self.source.options.read_timeout + 2)
        self.source.close()

    def __enter__(self) -> Capture:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- consumer ----------------------------------------------------------------------
    def get(self, timeout: float = 1.0) -> Frame | None:
        """The newest frame not yet taken; None on timeout. Raises StopIteration at the end of a recording."""
        if not self.source.live:
            return self._read_recorded()
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._stop.is_set():
                if self._latest is not None and self._latest.index > self._taken:
                    self._taken = self._latest.index
                    return self._latest
                if self._ended:
                    raise StopIteration
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
        if self.give_up_after and time.monotonic() - self._last_frame_time > self.give_up_after:
            raise StreamError(f"no frame from {self.source.uri} for {self.give_up_after:g} s; giving up")
        return None

    def pending(self) -> int:
        """Frames held and not yet taken: 0 or 1 (only the newest is ever kept)."""
        with self._cond:
            return int(self._latest is not None and self._latest.index > self._taken)

    def _read_recorded(self) -> Frame:
        while True:
            try:
                raw = self.source.read()
            except StreamError as exc:
                self.stats.corrupt += 1
                self.stats.note(str(exc))
                continue
            if raw is None:
                raise StopIteration
            self.stats.read += 1
            try:
                image = normalise_frame(raw)
            except StreamError as exc:
                self.stats.corrupt += 1
                self.stats.note(str(exc))
                continue
            self._seq += 1
            return Frame(image, self._seq, time.monotonic())

    # ---- producer thread ---------------------------------------------------------------
    def _run(self) -> None:
        delay = self.backoff[0]
        opened = True
        last_sig, same_since = None, time.monotonic()
        sig_checked = 0.0
        while not self._stop.is_set():
            if not opened:
                try:
                    self.source.open()
                    opened, delay = True, self.backoff[0]
                    self.stats.reconnects += 1
                except EdgeCNNError as exc:
                    self.stats.note(f"reconnect failed: {exc.message}")
                    self._stop.wait(delay)
                    delay = min(delay * 2, self.backoff[1])
                    continue
            try:
                raw = self.source.read()
            except EdgeCNNError as exc:
                self.stats.note(f"read failed: {exc.message}")
                self.source.close()
                opened = False
                continue
            if raw is None:  # a live source that ended (synthetic with frames=N)
                with self._cond:
                    self._ended = True
                    self._cond.notify_all()
                return
            self.stats.read += 1
            try:
                image = normalise_frame(raw)
            except StreamError as exc:
                self.stats.corrupt += 1
                self.stats.note(str(exc))
                continue
            now = time.monotonic()
            # frozen-stream check on a sparse sample of pixels, at most 10 times a second (a fast source
            # must not spend the GIL on it for every frame)
            if now - sig_checked >= 0.1:
                sig_checked = now
                sig = image[:: max(1, image.shape[0] // 8), :: max(1, image.shape[1] // 8)].tobytes()
                if sig != last_sig:
                    last_sig, same_since = sig, now
            if now - same_since > self.frozen_after:
                self.stats.frozen_events += 1
                self.stats.note(f"stream frozen for {self.frozen_after:g} s; reconnecting")
                self.source.close()
                opened, last_sig, same_since = False, None, now
                continue
            self._last_frame_time = now
            with self._cond:
                if self._latest is not None and self._latest.index > self._taken:
                    self.stats.dropped += 1
                self._seq += 1
                self._latest = Frame(image, self._seq, now)
                self._cond.notify_all()
