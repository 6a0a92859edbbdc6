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

from edgecnn.errors import ArtifactError
from edgecnn.preprocess import PreprocessSpec

MANIFEST_NAME = "edgecnn.json"
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


def write_atomic(path: str | Path, data: bytes | str) -> None:
    """Write a file atomically: temp file in the same folder, fsync, rename, fsync the folder."""
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
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
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
    try:
        yield tmp
        for p in tmp.rglob("*"):
            if p.is_file():
                with open(p, "rb") as f:
                    os.fsync(f.fileno())
        if final.exists():
            old = final.with_name(f".{final.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            final.rename(old)
            tmp.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(final)
        fsync_dir(final.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


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
