"""Device side: the libraries' own output kept off the terminal.

TensorFlow, absl, oneDNN, LiteRT's XNNPACK, OpenVINO and onnxruntime write to file descriptor 2 from C++ (``E0000 ...
failed call to cuInit``, ``INFO: Created TensorFlow Lite XNNPACK delegate``), and Python libraries warn through
``warnings`` and ``logging``. A user takes ``E0000`` for a failure. So the command line (not the library API) points
descriptor 2 at a log file for the whole command, and ``sys.stderr`` (edgecnn's own lines) at the terminal; child
processes inherit the log, and an edgecnn command started by another (``demo`` profiles in child processes) appends
its libraries' output to its parent's log ($EDGECNN_LIBRARY_LOG) instead of starting one of its own. With ``-v`` or
``--debug`` nothing is diverted.

The log starts in the cache folder (``logs/`` in ``resources.cache_dir``); a verb that writes a
run folder names it with ``keep_in`` and the log ends there as ``library.log`` when it holds anything. A command that
fails names the log under its error line.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import TextIO

LOG_NAME = "library.log"
PARENT_LOG = "EDGECNN_LIBRARY_LOG"  # set for child processes while a command's log is open
KEEP_LOGS = 10  # the newest logs kept in the cache folder (those of commands without a run folder)

_current: Diverted | None = None


def log_folder() -> Path:
    from edgecnn.resources import cache_dir

    return cache_dir("logs")


class Diverted:
    """Descriptor 2 pointed at ``path`` until ``close``; ``terminal`` is the stream edgecnn's own lines go to."""

    def __init__(self, path: Path, log_fd: int) -> None:
        self.path = path
        self.folder: Path | None = None
        self._saved_fd = os.dup(2)
        self._saved_stderr = sys.stderr
        sys.stderr.flush()
        os.dup2(log_fd, 2)
        os.close(log_fd)
        encoding = getattr(self._saved_stderr, "encoding", None) or "utf-8"
        self.terminal: TextIO = open(  # noqa: SIM115 - lives until close()
            self._saved_fd, "w", buffering=1, encoding=encoding, errors="backslashreplace", closefd=False
        )
        sys.stderr = self.terminal
        self._handler = logging.StreamHandler(open(2, "w", buffering=1, closefd=False))  # noqa: SIM115
        self._handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(self._handler)  # before TensorFlow's logger looks: it then adds no terminal handler of its own
        if root.level > logging.INFO or root.level == logging.NOTSET:
            root.setLevel(logging.INFO)
        logging.captureWarnings(True)

    owned = True  # False: the log is a parent command's, which moves and names it

    def close(self, *, failed: bool) -> None:
        """Put descriptor 2 and sys.stderr back; move the log into the run folder, or name it after a failure."""
        global _current
        for stream in (sys.stdout, self.terminal):
            stream.flush()
        logging.getLogger().removeHandler(self._handler)
        logging.captureWarnings(False)
        self._handler.stream.flush()
        os.dup2(self._saved_fd, 2)
        os.close(self._saved_fd)
        sys.stderr = self._saved_stderr
        _current = None
        if not self.owned:
            return
        if os.environ.get(PARENT_LOG) == str(self.path):
            del os.environ[PARENT_LOG]
        size = self.path.stat().st_size if self.path.exists() else 0
        if 0 < size <= 16 * 2**20:  # a library may print a camera's URL with its password (FFmpeg does): masked here
            _redact_file(self.path)
        if size and self.folder is not None and self.folder.is_dir():
            try:
                shutil.move(str(self.path), str(self.folder / LOG_NAME))
                self.path = self.folder / LOG_NAME
            except OSError:
                pass
        elif not size:
            self.path.unlink(missing_ok=True)
        if failed and size:
            print(f"  library messages: {self.path}", file=sys.stderr)


def _redact_file(path: Path) -> None:
    from edgecnn.redact import redact

    try:
        text = path.read_text(encoding="utf-8", errors="replace")
        masked = redact(text)
        if masked != text:
            path.write_text(masked, encoding="utf-8")
    except OSError:
        pass


def divert(verb: str) -> Diverted | None:
    """Point descriptor 2 at a new log for ``verb``; None (nothing changed) where no log file can be made."""
    global _current
    parent = os.environ.get(PARENT_LOG)
    if parent:
        try:
            _current = Diverted(Path(parent), os.open(parent, os.O_WRONLY | os.O_APPEND))
        except OSError:
            pass  # the parent's log is gone: start one of our own
        else:
            _current.owned = False
            return _current
    for folder in (log_folder(), Path(tempfile.gettempdir()) / "edgecnn-logs"):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            _prune(folder)
            path = folder / f"{time.strftime('%Y%m%d-%H%M%S')}-{verb}-{os.getpid()}.log"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError:
            continue
        try:
            _current = Diverted(path, fd)
        except OSError:
            return None
        os.environ[PARENT_LOG] = str(path)
        return _current
    return None


def terminal() -> tuple[int, Path | None]:
    """The descriptor that reaches the terminal (for a line written from a signal's clean-up, where ``print`` is
    unsafe), and the log the libraries' output goes to while diverted."""
    if _current is None or _current.terminal.closed:
        return 2, None
    return _current.terminal.fileno(), _current.path


def keep_in(folder: str | Path) -> None:
    """The command's run folder: the log ends there as library.log (no-op when nothing is diverted)."""
    if _current is not None:
        _current.folder = Path(folder)


def _prune(folder: Path) -> None:
    logs = sorted(folder.glob("*.log"), key=lambda p: p.stat().st_mtime)
    for old in logs[: max(0, len(logs) - KEEP_LOGS + 1)]:
        old.unlink(missing_ok=True)
