"""Device side: a deploy folder's journal and lock (``TO/.deploy/``): every step of every release transaction, one
JSON object a line, appended whole; and the exclusive ``flock`` that lets one transaction run at a time (who holds it
is written into the lock file, so a waiting or refused deploy can say whose it is)."""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from edgecnn.errors import ConfigError

MAX_JOURNAL_BYTES = 4 * 1024 * 1024


class Journal:
    """TO/.deploy/journal.jsonl: appended one whole line per write (O_APPEND), read by anyone."""

    def __init__(self, to: str | Path) -> None:
        self.folder = Path(to) / ".deploy"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / "journal.jsonl"

    def write(self, txn: str, step: str, /, **fields: Any) -> dict[str, Any]:
        record = {"id": txn, "step": step, "time": round(time.time(), 3), "pid": os.getpid(), **fields}
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (json.dumps(record, separators=(",", ":")) + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        return record

    def records(self, txn: str | None = None) -> list[dict[str, Any]]:
        try:
            lines = self.path.read_text(encoding="utf-8", errors="replace").splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            try:
                rec = json.loads(line)
            except (ValueError, RecursionError):
                continue  # a line cut by a crash
            if isinstance(rec, dict) and (txn is None or rec.get("id") == txn):
                out.append(rec)
        return out

    def rotate(self) -> None:
        """Keep the journal small: past MAX_JOURNAL_BYTES it moves to journal.1 (called under the lock)."""
        if self.path.is_file() and self.path.stat().st_size > MAX_JOURNAL_BYTES:
            os.replace(self.path, self.path.with_suffix(".jsonl.1"))


@contextmanager
def locked(to: Path, journal: Journal, txn: str, *, wait: bool, quiet: bool = False) -> Iterator[None]:
    """Hold TO's exclusive lock; waiting for it is said in the journal (or refused with ``wait`` False). ``quiet``:
    no journal records (a recovery's own lock, which is no transaction)."""
    fd = os.open(journal.folder / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            if not wait:
                raise _busy(to, holder) from None
            if not quiet:
                journal.write(txn, "waiting", holder=holder)
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"id": txn, "pid": os.getpid(), "since": time.time()}).encode(), 0)
        if not quiet:
            journal.write(txn, "locked")
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _busy(to: Path, holder: str) -> ConfigError:
    return ConfigError(
        f"another deploy to {to} is under way ({holder}); not waiting (--no-wait)",
        hint="run it again when that one has finished, or without --no-wait to queue behind it",
    )


def _holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"transaction {info['id']}, pid {info['pid']}, for {time.time() - float(info['since']):.0f} s"
    except (ValueError, KeyError, TypeError):
        return "another transaction"


def lock_is_free(to: Path) -> bool:
    fd = os.open(Path(to) / ".deploy" / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def refuse_if_busy(to: Path, journal: Journal) -> None:
    """``--no-wait``: refuse now, naming the holder, when another transaction holds TO's lock."""
    if not lock_is_free(to):
        with open(journal.folder / "lock", "rb") as f:
            raise _busy(to, _holder(f.fileno()))
