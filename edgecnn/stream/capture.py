"""Capture in its own thread, keeping only the newest frame; reconnect with exponential backoff.

Two rules decide between waiting and giving up. A source that has delivered a frame is a camera that may come
back: it is reconnected for ever (with backoff). A source that has never delivered a decodable frame within
``open_timeout + read_timeout`` is dead: ``get`` raises with the last cause seen (an HTTP error, corrupt data...).
Data that arrives but does not decode is counted as corrupt, not as a reconnect; when nothing but corrupt data
arrives for ``read_timeout`` the connection is treated as lost.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgecnn.errors import EdgeCNNError, StreamError
from edgecnn.stream.frames import normalise_frame
from edgecnn.stream.sources import CorruptFrame, FrameSource, HTTPSource

STOP_WAIT_S = 0.1  # how long stop() waits for the reader thread before leaving the source to it
WAKE_CHECK_S = 0.05  # how often get() looks at the caller's stop event while it waits for a frame


class Interrupted(Exception):
    """The stop event was set while the source was still opening."""


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


_SKIP = object()  # _read_raw: nothing to hand on this time


@dataclass
class _LiveState:
    """The producer thread's view of a live source: open or not, the reconnect delay, the frozen-picture check."""

    delay: float
    opened: bool = True
    last_sig: bytes | None = None
    same_since: float = field(default_factory=time.monotonic)
    sig_checked: float = 0.0
    good_since_open: float = field(default_factory=time.monotonic)  # the last decodable frame, or the (re)open


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
        self._started = time.monotonic()
        self._got_frame = False
        self._cause = ""  # the last reason a read or a reconnect failed, for the error of a dead source
        self._interval = 0.0  # pace(): seconds between the frames of a recorded source
        self._due = 0.0
        self._wake = self._stop  # what cuts a pacing wait short: stop(), or start()'s stop event

    # ---- lifecycle ---------------------------------------------------------------------
    def start(self, stop: threading.Event | None = None) -> Capture:
        """Open the source (the first open fails loudly: a wrong URI is not a disconnect) and start reading.

        With ``stop``, the open runs in a helper thread and ``Interrupted`` is raised within 0.1 s of ``stop`` being
        set (Ctrl-C or SIGTERM while a camera takes its open timeout to answer)."""
        if stop is None:
            self.source.open()
        else:
            self._open_interruptibly(stop)
            self._wake = stop
        self._last_frame_time = self._started = time.monotonic()
        if self.source.live:
            self._thread = threading.Thread(target=self._run, name="edgecnn-capture", daemon=True)
            self._thread.start()
        return self

    def _open_interruptibly(self, stop: threading.Event) -> None:
        outcome: list[BaseException | None] = []

        def work() -> None:
            try:
                self.source.open()
                outcome.append(None)
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
                outcome.append(exc)

        t = threading.Thread(target=work, name="edgecnn-open", daemon=True)
        t.start()
        while t.is_alive():
            if stop.wait(0.1):
                self.source.close()  # unblocks a socket read; an OpenCV open just finishes on its own in its thread
                raise Interrupted()
            t.join(0.05)
        if outcome and outcome[0] is not None:
            raise outcome[0]

    def pace(self, fps: float) -> None:
        """Hand a recorded source's frames out at ``fps`` (0: as fast as they are read)."""
        self._interval = 1.0 / fps if fps > 0 else 0.0

    def stop(self) -> None:
        """Stop reading at once; the source is closed by whichever thread holds it last.

        The reader thread may be inside a read that blocks until the source's next frame (a camera at a few frames a
        second, a paced file, a silent stream): waiting for it made Ctrl-C take up to 1.6 s (issue #31). An HTTP
        source is closed from here, which unblocks its read; OpenCV's release() must not run during its read, so
        after a short wait such a source is left to the reader thread, which closes it when the read returns."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            if isinstance(self.source, HTTPSource):
                self.source.close()
            self._thread.join(timeout=STOP_WAIT_S)
            if self._thread.is_alive() and not isinstance(self.source, HTTPSource):
                return  # inside a blocking read: the capture thread closes the source when the call returns
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
                if left <= 0 or self._wake.is_set():
                    break
                # in slices: the caller's stop event (Ctrl-C, SIGTERM) does not notify this condition
                self._cond.wait(min(left, WAKE_CHECK_S))
        now = time.monotonic()
        if self.give_up_after and now - self._last_frame_time > self.give_up_after:
            raise StreamError(f"no frame from {self.source.uri} for {self.give_up_after:g} s; giving up")
        dead_after = self.source.options.open_timeout + self.source.options.read_timeout
        if not self._got_frame and now - self._started > dead_after:
            raise StreamError(
                f"no decodable frame from {self.source.uri} in {dead_after:g} s"
                + (f" ({self.stats.corrupt} corrupt)" if self.stats.corrupt else "")
                + (f": {self._cause}" if self._cause else ""),
                hint="check the URL in a browser or with ffplay from this machine; raise --open-timeout/--read-timeout for a slow camera",
            )
        return None

    def pending(self) -> int:
        """Frames held and not yet taken: 0 or 1 (only the newest is ever kept)."""
        with self._cond:
            return int(self._latest is not None and self._latest.index > self._taken)

    def _read_recorded(self) -> Frame:
        while True:
            try:
                raw = self.source.read()
            except CorruptFrame as exc:
                self.stats.corrupt += 1
                self.stats.note(exc.message)
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
            if self._interval:
                self._wake.wait(max(0.0, self._due - time.monotonic()))
                self._due = max(self._due, time.monotonic()) + self._interval
            self._seq += 1
            self._got_frame = True
            return Frame(image, self._seq, time.monotonic())

    # ---- producer thread ---------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._read_live()
        finally:
            if self._stop.is_set():
                self.source.close()  # when stop() gave up waiting for this thread, the source is closed here

    def _read_live(self) -> None:
        st = _LiveState(delay=self.backoff[0])
        while not self._stop.is_set():
            if not st.opened and not self._reopen(st):
                continue
            raw = self._read_raw(st)
            if raw is _SKIP:
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
            if self._frozen(st, image, now):
                continue
            self._publish(st, image, now)

    def _reopen(self, st: _LiveState) -> bool:
        """One reconnect attempt, backing off exponentially after a failure."""
        try:
            self.source.open()
        except EdgeCNNError as exc:
            self._cause = exc.message
            self.stats.note(f"reconnect failed: {exc.message}")
            self._stop.wait(st.delay)
            st.delay = min(st.delay * 2, self.backoff[1])
            return False
        st.opened, st.delay = True, self.backoff[0]
        self.stats.reconnects += 1
        st.good_since_open = time.monotonic()
        return True

    def _read_raw(self, st: _LiveState) -> Any:
        """The source's next frame, None at its end, or _SKIP after a corrupt frame or a failed read (which closes
        the source for a reconnect; so do corrupt frames alone for longer than the read timeout)."""
        try:
            return self.source.read()
        except CorruptFrame as exc:
            self.stats.corrupt += 1
            self.stats.note(exc.message)
            self._cause = exc.message
            if time.monotonic() - st.good_since_open > self.source.options.read_timeout:
                self.stats.note(f"read failed: no decodable frame in {self.source.options.read_timeout:g} s")
                self._close_for_reconnect(st)
        except EdgeCNNError as exc:
            self._cause = exc.message
            self.stats.note(f"read failed: {exc.message}")
            self._close_for_reconnect(st)
        return _SKIP

    def _close_for_reconnect(self, st: _LiveState) -> None:
        self.source.close()
        st.opened = False

    def _frozen(self, st: _LiveState, image: np.ndarray, now: float) -> bool:
        """True (and the source closed for a reconnect) when the picture has not changed for frozen_after seconds.
        Checked on a sparse sample of pixels at most 10 times a second: a fast source must not spend the GIL on it
        for every frame."""
        if now - st.sig_checked >= 0.1:
            st.sig_checked = now
            sig = image[:: max(1, image.shape[0] // 8), :: max(1, image.shape[1] // 8)].tobytes()
            if sig != st.last_sig:
                st.last_sig, st.same_since = sig, now
        if now - st.same_since <= self.frozen_after:
            return False
        self.stats.frozen_events += 1
        self.stats.note(f"stream frozen for {self.frozen_after:g} s; reconnecting")
        self._close_for_reconnect(st)
        st.last_sig, st.same_since = None, now
        return True

    def _publish(self, st: _LiveState, image: np.ndarray, now: float) -> None:
        """Keep only the newest frame; one not taken before it is replaced counts as dropped."""
        self._last_frame_time = st.good_since_open = now
        self._got_frame = True
        with self._cond:
            if self._latest is not None and self._latest.index > self._taken:
                self.stats.dropped += 1
            self._seq += 1
            self._latest = Frame(image, self._seq, now)
            self._cond.notify_all()
