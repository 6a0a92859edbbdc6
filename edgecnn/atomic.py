"""Device side: crash-safe writes: staged files and folders, fsync, and one-step swaps of whole folders.

A reader sees the old content or the new, never a mix and never a partial file. Staging folders are hidden
siblings named ``.<final>.<pid>.<random>.partial``; those of a writer that was killed (its pid no longer runs)
are removed by the next writer of the same folder.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from edgecnn import cleanup
from edgecnn.errors import ArtifactError, ConfigError, DiskFullError

_FULL_BELOW = 1 << 20  # a write that failed with less than this free on its file system failed for want of space


def fsync_dir(path: str | Path) -> None:
    """fsync a directory so a rename inside it survives a power cut (no-op where unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def umask() -> int:
    """The process umask, read without changing it where Linux allows (os.umask(0) would briefly affect
    files created by other threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def raise_if_disk_full(folder: str | Path, exc: BaseException, what: str) -> None:
    """Turn a failed write into a DiskFullError when the file system is full (ENOSPC/EDQUOT, or almost no space
    left: the runtimes' own writers report a full disk as e.g. "iostream error"). Call before cleaning up."""
    if isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit | DiskFullError):
        return
    codes = {errno.ENOSPC, errno.EDQUOT}
    chained, seen = exc, 0
    by_errno = False
    while chained is not None and seen < 5:
        by_errno |= isinstance(chained, OSError) and chained.errno in codes
        chained, seen = chained.__cause__ or chained.__context__, seen + 1
    try:
        usage = shutil.disk_usage(folder)
    except OSError:
        return
    if by_errno or usage.free < _FULL_BELOW:
        from edgecnn.errors import first_line

        raise DiskFullError(
            f"no space left on the device holding {folder}: writing {what} failed with {usage.free / 1e6:.2f} MB free "
            f"of {usage.total / 1e6:.1f} MB ({type(exc).__name__}: {first_line(exc, 120)})",
            hint="free some space or write elsewhere (--out); nothing partial was left behind",
        ) from exc


def write_atomic(path: str | Path, data: bytes | str) -> None:
    """Write a file atomically: temp file in the same folder, fsync, rename, fsync the folder."""
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~umask())  # mkstemp makes 0600; a service user must be able to read artifacts
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            raise_if_disk_full(path.parent, exc, str(path))
        finally:
            Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_json_atomic(path: str | Path, data: Any) -> None:
    write_atomic(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def check_can_create(final: Path, what: str = "output folder") -> None:
    """Refuse, before any work, a ``final`` whose parent cannot take a new entry (read-only, no permission, a file).

    Tried for real (a temp folder made and removed), since root passes every access() test on a read-only mount."""
    parent = final.parent
    while not parent.exists() and parent != parent.parent:  # the first folder that exists; the rest will be made
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"cannot create {what} {final}: {parent} is a file, not a folder")
    try:
        probe = tempfile.mkdtemp(prefix=".edgecnn-write-test.", dir=parent)
    except OSError as exc:
        raise ConfigError(f"cannot create {what} {final}: {exc.strerror} ({parent})") from None
    os.rmdir(probe)


def new_staging_folder(final: Path) -> Path:
    """A fresh hidden sibling of ``final`` to build its new content in (stale ones of dead writers removed first)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(final)
    # removed if the command is stopped before it is published
    tmp = cleanup.create_remembered(
        lambda: Path(tempfile.mkdtemp(prefix=f".{final.name}.{os.getpid()}.", suffix=".partial", dir=final.parent)), Path
    )
    os.chmod(tmp, 0o777 & ~umask())  # mkdtemp makes 0700; the final folder should be readable like any other
    return tmp


def fsync_tree(folder: Path) -> None:
    for p in folder.rglob("*"):
        if p.is_file() and not p.is_symlink():
            with open(p, "rb") as f:
                os.fsync(f.fileno())


def publish(staged: Path, final: Path) -> None:
    """Make the complete folder ``staged`` appear as ``final`` in one step, replacing what was there.

    Where the system can exchange two paths atomically (Linux renameat2), a reader, or a kill at any moment,
    sees the old folder or the new one. Elsewhere there is a short window in which ``final`` is absent.
    """
    fsync_tree(staged)
    crash_point("publish:synced")
    if final.exists():
        if exchange(staged, final):  # ``staged`` now holds the old folder
            crash_point("publish:exchanged")
            cleanup.forget(staged)
            shutil.rmtree(staged, ignore_errors=True)
            crash_point("publish:old-removed")
        else:
            old = final.with_name(f".{final.name}.{os.getpid()}.old.partial")
            final.rename(old)
            staged.rename(final)
            cleanup.forget(staged)
            shutil.rmtree(old, ignore_errors=True)
    else:
        staged.rename(final)
        cleanup.forget(staged)
    fsync_dir(final.parent)


# a conversion's set: every artifact staged; then publish()'s steps (any folder's); then the set in place
CRASH_POINTS = ("set:staged", "publish:synced", "publish:exchanged", "publish:old-removed", "set:published")


def crash_point(name: str) -> None:
    """A named moment of publishing where a test may kill this process (``EDGECNN_CRASH_AT=name``): the suite's
    fast, exact stand-in for killing a whole conversion at random moments, which tools/kill_trials.py does."""
    if os.environ.get("EDGECNN_CRASH_AT") == name:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


@contextmanager
def staged_directory(final: str | Path, *, force: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it replaces ``final`` in one step (see ``publish``).

    An interrupted or failed write leaves ``final`` as it was (only the temp folder is removed), so a manifest
    can never point at a partial file.
    """
    final = Path(final)
    if final.exists() and not force:
        raise ArtifactError(f"output folder already exists: {final}", hint="use --force to replace it")
    tmp = new_staging_folder(final)
    try:
        yield tmp
        publish(tmp, final)
    except BaseException as exc:
        try:
            raise_if_disk_full(final.parent, exc, str(final))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            cleanup.forget(tmp)
        raise


def exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE); False where the system cannot."""
    import ctypes

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def is_staging(path: Path) -> bool:
    """A hidden staging folder (or temp file) of a writer in progress or killed: never content to read."""
    return path.name.startswith(".") and path.name.endswith((".partial", ".tmp"))


def remove_stale_partials(final: Path) -> list[Path]:
    """Remove staging folders for ``final`` left by a process that was killed (its pid no longer runs)."""
    removed = []
    for p in final.parent.glob(f".{final.name}.*.partial"):
        parts = p.name[len(final.name) + 2 :].split(".")
        if not parts[0].isdigit():
            continue
        pid = int(parts[0])
        try:
            os.kill(pid, 0)
            continue  # still running: another writer's staging folder
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        shutil.rmtree(p, ignore_errors=True)
        removed.append(p)
    return removed


def remove_stale_temp(prefixes: tuple[str, ...], folder: str | Path | None = None) -> list[Path]:
    """Remove temp files and folders named ``<prefix><pid>-...`` whose process no longer runs (a killed conversion's
    SavedModel exports and worker logs). Entries of live processes, and logs kept for the user, stay."""
    folder = Path(folder or tempfile.gettempdir())
    removed = []
    for prefix in prefixes:
        for p in folder.glob(f"{prefix}*"):
            pid = p.name[len(prefix) :].split("-", 1)[0]
            if not pid.isdigit():
                continue
            try:
                os.kill(int(pid), 0)
                continue
            except ProcessLookupError:
                pass
            except PermissionError:
                continue
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def temporary_directory(prefix: str) -> _Temporary:
    """``tempfile.TemporaryDirectory`` named ``<prefix><pid>-...`` that a stopped command removes too (``stop_now``
    ends the process without unwinding: the ``with`` block's own clean-up never runs, issue #31), and that a later
    command removes when a kill -9 left it (``remove_stale_temp`` with the same prefix)."""
    return _Temporary(prefix)


class _Temporary:
    def __init__(self, prefix: str) -> None:
        remove_stale_temp((prefix,))
        self._tmp = cleanup.create_remembered(
            lambda: tempfile.TemporaryDirectory(prefix=f"{prefix}{os.getpid()}-"), lambda t: t.name
        )

    def __enter__(self) -> str:
        return self._tmp.name

    def __exit__(self, *exc: object) -> None:
        try:
            self._tmp.cleanup()
        finally:
            cleanup.forget(self._tmp.name)
