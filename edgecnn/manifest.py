"""The on-disk contract between host and device: ``edgecnn.json`` beside each model file.

This module alone defines that contract. It never imports TensorFlow, so the device side can
read, write and verify artifacts with the standard library and numpy.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgecnn.errors import ArtifactError, DiskFullError
from edgecnn.preprocess import PreprocessSpec

MANIFEST_NAME = "edgecnn.json"
RUN_INDEX = "edgecnn-run.json"  # a training run's file list with hashes, written last
SCHEMA = "edgecnn.artifact"
SCHEMA_VERSION = 1
_REQUIRED = {
    "schema": str,
    "schema_version": int,
    "format": str,
    "precision": str,
    "files": dict,
    "input": dict,
    "output": dict,
    "labels": list,
    "preprocess": dict,
}


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


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


_FULL_BELOW = 1 << 20  # a write that failed with less than this free on its file system failed for want of space


def _umask() -> int:
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
    import errno
    import shutil

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
        raise DiskFullError(
            f"no space left on the device holding {folder}: writing {what} failed with {usage.free / 1e6:.2f} MB free "
            f"of {usage.total / 1e6:.1f} MB ({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''})",
            hint="free some space or write elsewhere (--out); nothing partial was left behind",
        ) from exc


def write_atomic(path: str | Path, data: bytes | str) -> None:
    """Write a file atomically: temp file in the same folder, fsync, rename, fsync the folder."""
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; a service user must be able to read artifacts
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


@contextmanager
def staged_directory(final: str | Path, *, force: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it is renamed to ``final`` atomically.

    An interrupted or failed write leaves no ``final`` folder behind (only the temp folder is
    removed), so a manifest can never point at a partial file.
    """
    import shutil

    final = Path(final)
    if final.exists() and not force:
        raise ArtifactError(f"output folder already exists: {final}", hint="use --force to replace it")
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(final)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.{os.getpid()}.", suffix=".partial", dir=final.parent))
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; the final folder should be readable like any other
        yield tmp
        for p in tmp.rglob("*"):
            if p.is_file():
                with open(p, "rb") as f:
                    os.fsync(f.fileno())
        if final.exists():
            if _exchange(tmp, final):  # one atomic step: the old artifact or the new one, never neither
                shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the old one
            else:
                old = final.with_name(f".{final.name}.old")
                shutil.rmtree(old, ignore_errors=True)
                final.rename(old)
                tmp.rename(final)
                shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(final)
        fsync_dir(final.parent)
    except BaseException as exc:
        try:
            raise_if_disk_full(final.parent, exc, str(final))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        raise


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE); False where the system cannot."""
    import ctypes
    import sys

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


def remove_stale_partials(final: Path) -> list[Path]:
    """Remove staging folders for ``final`` left by a process that was killed (its pid no longer runs)."""
    import shutil

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


def write_run_index(folder: str | Path) -> None:
    """Record every file of a training run with its size and sha256 (``edgecnn verify RUN`` checks it)."""
    folder = Path(folder)
    files = {
        p.relative_to(folder).as_posix(): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != RUN_INDEX
    }
    write_json_atomic(folder / RUN_INDEX, {"schema": "edgecnn.run", "schema_version": 1, "files": files})


def verify_run(folder: str | Path) -> dict[str, Any]:
    """Check a training run folder against its index; raise ArtifactError naming the first bad file."""
    folder = Path(folder)
    index = folder / RUN_INDEX
    if not index.is_file():
        raise ArtifactError(f"{folder} has no {RUN_INDEX}: not a complete edgecnn run (interrupted, or made by an older edgecnn)")
    try:
        data = json.loads(index.read_text(encoding="utf-8"))
        files = data["files"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ArtifactError(f"{index}: not a valid run index ({exc})") from None
    for name, entry in files.items():
        p = folder / name
        if not p.is_file():
            raise ArtifactError(f"run {folder}: {name} is missing")
        if p.stat().st_size != entry["bytes"] or sha256_file(p) != entry["sha256"]:
            raise ArtifactError(f"run {folder}: {name} does not match {RUN_INDEX} (modified or corrupted after training)")
    return data


@dataclass
class Manifest:
    """A parsed, validated ``edgecnn.json``."""

    format: str
    precision: str
    files: dict[str, dict[str, Any]]
    input: dict[str, Any]
    output: dict[str, Any]
    labels: list[str]
    preprocess: PreprocessSpec
    source_model: dict[str, Any] = field(default_factory=dict)
    device: str | None = None
    tools: dict[str, str] = field(default_factory=dict)
    created: str = ""
    parity: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    directory: Path | None = None

    # ---- writing -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "format": self.format,
            "precision": self.precision,
            "files": self.files,
            "input": self.input,
            "output": self.output,
            "labels": list(self.labels),
            "preprocess": self.preprocess.to_dict(),
            "source_model": self.source_model,
            "device": self.device,
            "tools": self.tools,
            "created": self.created or datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "parity": self.parity,
            "extra": self.extra,
        }

    def write(self, directory: str | Path) -> Path:
        """Hash the listed files and write the manifest last, atomically."""
        directory = Path(directory)
        for role, entry in self.files.items():
            p = directory / entry["path"]
            if not p.is_file():
                raise ArtifactError(f"manifest lists {role} file {entry['path']!r} but it is missing in {directory}")
            if "sha256" not in entry or entry.get("bytes") != p.stat().st_size:  # hash each file once per manifest
                entry["sha256"] = sha256_file(p)
                entry["bytes"] = p.stat().st_size
        path = directory / MANIFEST_NAME
        write_json_atomic(path, self.to_dict())
        self.directory = directory
        return path

    # ---- reading -------------------------------------------------------------------------
    def file_path(self, role: str = "model") -> Path:
        if self.directory is None:
            raise ArtifactError("manifest has no directory; load it with Manifest.load()")
        if role not in self.files:
            raise ArtifactError(f"manifest has no '{role}' file (has: {', '.join(self.files)})")
        return self.directory / self.files[role]["path"]

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @classmethod
    def load(cls, directory: str | Path, *, verify: bool = True) -> Manifest:
        """Read and validate the manifest in ``directory``; verify file hashes unless told not to."""
        directory = Path(directory)
        if directory.is_file() and directory.name == MANIFEST_NAME:
            directory = directory.parent
        path = directory / MANIFEST_NAME
        if not directory.is_dir():
            raise ArtifactError(f"artifact folder not found: {directory}")
        if not path.is_file():
            raise ArtifactError(
                f"{directory} has no {MANIFEST_NAME}: not an edgecnn artifact",
                hint="make one with 'edgecnn convert', or profile a bare model file directly",
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ArtifactError(f"{path}: not valid JSON ({exc})") from None
        manifest = cls.from_dict(data, source=str(path))
        manifest.directory = directory
        manifest._check_paths()
        if verify:
            manifest.verify()
        return manifest

    @classmethod
    def from_dict(cls, data: Any, *, source: str = MANIFEST_NAME) -> Manifest:
        if not isinstance(data, dict):
            raise ArtifactError(f"{source}: expected a JSON object, got {type(data).__name__}")
        for key, typ in _REQUIRED.items():
            if key not in data:
                raise ArtifactError(f"{source}: missing field '{key}'")
            if not isinstance(data[key], typ) or (typ is int and isinstance(data[key], bool)):
                raise ArtifactError(f"{source}: field '{key}' must be {typ.__name__}; received {data[key]!r:.80}")
        if data["schema"] != SCHEMA:
            raise ArtifactError(f"{source}: schema is {data['schema']!r}, expected {SCHEMA!r}")
        if data["schema_version"] != SCHEMA_VERSION:
            raise ArtifactError(
                f"{source}: unsupported schema_version {data['schema_version']} (this edgecnn reads {SCHEMA_VERSION})",
                hint="convert the model again with this edgecnn version, or upgrade edgecnn",
            )
        labels = data["labels"]
        if not labels or not all(isinstance(x, str) and x.strip() for x in labels):
            raise ArtifactError(f"{source}: labels must be a non-empty list of non-empty strings")
        dupes = sorted({x for x in labels if labels.count(x) > 1})
        if dupes:
            raise ArtifactError(f"{source}: duplicate labels {dupes}")
        if "model" not in data["files"]:
            raise ArtifactError(f"{source}: 'files' has no 'model' entry")
        for role, entry in data["files"].items():
            if not isinstance(entry, dict) or not isinstance(entry.get("path"), str) or not isinstance(entry.get("sha256"), str):
                raise ArtifactError(f"{source}: files.{role} needs a 'path' and a 'sha256' string")
        out_shape = data["output"].get("shape")
        if not isinstance(out_shape, list) or not out_shape or out_shape[-1] != len(labels):
            raise ArtifactError(
                f"{source}: the model outputs {out_shape[-1] if isinstance(out_shape, list) and out_shape else '?'} "
                f"classes but the manifest lists {len(labels)} labels"
            )
        try:
            spec = PreprocessSpec.from_dict(data["preprocess"])
        except Exception as exc:  # ConfigError from the strict loader
            raise ArtifactError(f"{source}: invalid preprocess: {exc}") from None
        return cls(
            format=data["format"],
            precision=data["precision"],
            files=data["files"],
            input=data["input"],
            output=data["output"],
            labels=labels,
            preprocess=spec,
            source_model=data.get("source_model") or {},
            device=data.get("device"),
            tools=data.get("tools") or {},
            created=data.get("created", ""),
            parity=data.get("parity"),
            extra=data.get("extra") or {},
        )

    def _check_paths(self) -> None:
        root = self.directory.resolve()
        for role, entry in self.files.items():
            rel = entry["path"]
            p = Path(rel)
            if p.is_absolute() or ".." in p.parts:
                raise ArtifactError(f"manifest file path for '{role}' leaves the artifact folder: {rel!r}")
            full = self.directory / p
            if full.is_symlink():
                raise ArtifactError(f"manifest file '{rel}' is a symbolic link; artifacts must hold real files")
            if root not in full.resolve().parents:
                raise ArtifactError(f"manifest file path for '{role}' leaves the artifact folder: {rel!r}")

    def verify(self) -> None:
        """Check every listed file exists and matches its sha256; raise ArtifactError if not."""
        for role, entry in self.files.items():
            p = self.directory / entry["path"]
            if not p.is_file():
                raise ArtifactError(f"artifact {self.directory}: {role} file {entry['path']!r} is missing")
            if "bytes" in entry and p.stat().st_size != entry["bytes"]:
                raise ArtifactError(
                    f"artifact {self.directory}: {entry['path']} has {p.stat().st_size} bytes, manifest says {entry['bytes']} (truncated or replaced)",
                    hint="the file was modified after conversion; convert again or restore it",
                )
            digest = sha256_file(p)
            if digest != entry["sha256"]:
                raise ArtifactError(
                    f"artifact {self.directory}: sha256 of {entry['path']} does not match the manifest (tampered or corrupted)",
                    hint="the file was modified after conversion; convert again or restore it",
                )
