"""Device side: the on-disk contract between host and device: ``edgecnn.json`` beside each model file.

This module alone defines that contract. It never imports TensorFlow, so the device side can
read, write and verify artifacts with the standard library and numpy.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgecnn.atomic import is_staging, write_json_atomic
from edgecnn.errors import ArtifactError, ConfigError
from edgecnn.preprocess import PreprocessSpec

MANIFEST_NAME = "edgecnn.json"
RUN_INDEX = "edgecnn-run.json"  # a training run's file list with hashes, written last
SELF_CHECK_ROLE = "self_check"  # the files entry of the self-check samples (runtime/selfcheck.py)
SCHEMA = "edgecnn.artifact"
SCHEMA_VERSION = 2  # 2: integrity digest, conversion id, self-check samples
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


def _digest(value: Any) -> str:
    """sha256 of a JSON value in canonical form (sorted keys, no spaces): the same for a value and its round trip."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def _field_digests(data: dict[str, Any]) -> dict[str, str]:
    """A short digest per field and per sub-field (``preprocess.scale``): what lets an edit be named."""
    out = {}
    for key, value in data.items():
        if key == "integrity":
            continue
        out[key] = _digest(value)[:16]
        if isinstance(value, dict):
            for sub, inner in value.items():
                out[f"{key}.{sub}"] = _digest(inner)[:16]
    return out


def seal(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with its integrity record: a sha256 over every other field, and one short digest per field."""
    body = {k: v for k, v in data.items() if k != "integrity"}
    return body | {"integrity": {"algorithm": "sha256", "digest": _digest(body), "fields": _field_digests(body)}}


def check_integrity(data: dict[str, Any], source: str) -> None:
    """Refuse a manifest whose content is not what was sealed, naming the fields that changed.

    This catches edits and corruption: anyone can compute a digest, so it is no defence against someone who
    means harm. That is what a signature is for (``edgecnn sign``, ``--trust-key``).
    """
    integrity = data.get("integrity")
    if not isinstance(integrity, dict) or not isinstance(integrity.get("digest"), str):
        raise ArtifactError(
            f"{source}: no integrity digest (the 'integrity' field was removed or edited)",
            hint="convert the model again; never edit edgecnn.json by hand",
        )
    body = {k: v for k, v in data.items() if k != "integrity"}
    if _digest(body) == integrity["digest"]:
        return
    sealed = integrity.get("fields") if isinstance(integrity.get("fields"), dict) else {}
    actual = _field_digests(body)
    changed = [k for k in sorted(set(sealed) | set(actual)) if sealed.get(k) != actual.get(k)]
    named = [k for k in changed if not any(c.startswith(k + ".") for c in changed)] or ["integrity"]
    raise ArtifactError(
        f"{source}: {', '.join(repr(n) for n in named)} changed after conversion (the manifest's integrity digest no longer "
        "matches its content)",
        hint="the artifact was edited or corrupted: copy it again or convert again; never edit edgecnn.json by hand",
    )


def check_schema(data: Any, source: str) -> None:
    """Schema name and version, with what to do for an older or a newer edgecnn's artifact."""
    if not isinstance(data, dict):
        raise ArtifactError(f"{source}: expected a JSON object, got {type(data).__name__}")
    if data.get("schema") != SCHEMA:
        raise ArtifactError(f"{source}: schema is {data.get('schema')!r}, expected {SCHEMA!r}: not an edgecnn artifact manifest")
    version = data.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ArtifactError(f"{source}: field 'schema_version' must be int; received {version!r:.80}")
    if version > SCHEMA_VERSION:
        from edgecnn import __version__

        raise ArtifactError(
            f"{source}: made by a newer edgecnn (artifact schema_version {version}; edgecnn {__version__} reads "
            f"{SCHEMA_VERSION})",
            hint="upgrade edgecnn where the artifact is used (pip install -U edgecnn)",
        )
    if version < SCHEMA_VERSION:
        raise ArtifactError(
            f"{source}: made by an older edgecnn (artifact schema_version {version}, without the integrity digest and "
            f"self-check that schema_version {SCHEMA_VERSION} carries)",
            hint="convert the model again with this edgecnn",
        )


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


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
    from edgecnn.untrusted import loads

    data = loads(index.read_bytes(), str(index), error=ArtifactError)
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, dict) or not all(
        isinstance(e, dict) and isinstance(e.get("bytes"), int) and isinstance(e.get("sha256"), str) for e in files.values()
    ):
        raise ArtifactError(f"{index}: not a valid run index (files: an object of {{bytes, sha256}} entries)")
    for name, entry in files.items():
        p = folder / name
        if not p.is_file():
            raise ArtifactError(f"run {folder}: {name} is missing")
        if p.stat().st_size != entry["bytes"] or sha256_file(p) != entry["sha256"]:
            raise ArtifactError(f"run {folder}: {name} does not match {RUN_INDEX} (modified or corrupted after training)")
    return data


@dataclass
class Manifest:
    """A parsed, validated ``edgecnn.json``.

    ``conversion`` names the conversion the artifact belongs to (``id``, shared by every artifact of one output
    folder); ``self_check`` describes the held-out inputs and host outputs stored beside the model (the
    ``self_check`` file), which the device replays before trusting its runtime.
    """

    format: str
    precision: str
    files: dict[str, dict[str, Any]]
    input: dict[str, Any]
    output: dict[str, Any]
    labels: list[str]
    preprocess: PreprocessSpec
    source_model: dict[str, Any] = field(default_factory=dict)
    conversion: dict[str, Any] = field(default_factory=dict)
    device: str | None = None
    tools: dict[str, str] = field(default_factory=dict)
    created: str = ""
    parity: dict[str, Any] | None = None
    self_check: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    directory: Path | None = None

    # ---- writing -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return seal(
            {
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
                "conversion": self.conversion,
                "device": self.device,
                "tools": self.tools,
                "created": self.created or datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "parity": self.parity,
                "self_check": self.self_check,
                "extra": self.extra,
            }
        )

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
        self.created = self.created or datetime.now(timezone.utc).isoformat(timespec="seconds")
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

    def model_bytes(self) -> int:
        """Bytes of the model's own files (model, weights), without the self-check samples."""
        return sum(int(e.get("bytes", 0)) for role, e in self.files.items() if role != SELF_CHECK_ROLE)

    @property
    def conversion_id(self) -> str:
        return str(self.conversion.get("id", ""))

    @classmethod
    def load(cls, directory: str | Path, *, verify: bool = True) -> Manifest:
        """Read and validate the manifest in ``directory``: schema, integrity digest, structure, paths, and the
        files' sha256 unless ``verify`` is False (the digest is always checked: it costs nothing)."""
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
        from edgecnn.untrusted import loads

        data = loads(path.read_bytes(), str(path), error=ArtifactError)
        check_schema(data, str(path))
        check_integrity(data, str(path))
        manifest = cls.from_dict(data, source=str(path))
        manifest.directory = directory
        manifest._check_paths()
        if verify:
            manifest.verify()
        return manifest

    @classmethod
    def from_dict(cls, data: Any, *, source: str = MANIFEST_NAME) -> Manifest:
        """Validate the structure (types, labels, files, output size, preprocessing) and build the Manifest."""
        check_schema(data, source)
        _check_fields(data, source)
        _check_labels(data["labels"], source)
        _check_files(data["files"], source)
        out_shape = data["output"].get("shape")
        if not isinstance(out_shape, list) or not out_shape or out_shape[-1] != len(data["labels"]):
            got = out_shape[-1] if isinstance(out_shape, list) and out_shape else "?"
            raise ArtifactError(f"{source}: the model outputs {got} classes but the manifest lists {len(data['labels'])} labels")
        try:
            spec = PreprocessSpec.from_dict(data["preprocess"])
        except (ConfigError, TypeError, ValueError) as exc:  # the strict loader, or a field of the wrong shape
            raise ArtifactError(f"{source}: invalid preprocess: {exc}") from None
        optional = {key: data.get(key) or {} for key in _OBJECTS}
        return cls(
            format=data["format"],
            precision=data["precision"],
            files=data["files"],
            input=data["input"],
            output=data["output"],
            labels=data["labels"],
            preprocess=spec,
            device=data.get("device"),
            created=data.get("created", ""),
            parity=data.get("parity"),
            self_check=data.get("self_check"),
            **optional,
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


_OBJECTS = ("source_model", "conversion", "tools", "extra")  # optional fields that are objects when present


def _check_fields(data: dict[str, Any], source: str) -> None:
    for key, typ in _REQUIRED.items():
        if key not in data:
            raise ArtifactError(f"{source}: missing field '{key}'")
        if not isinstance(data[key], typ) or (typ is int and isinstance(data[key], bool)):
            raise ArtifactError(f"{source}: field '{key}' must be {typ.__name__}; received {data[key]!r:.80}")
    for key in _OBJECTS:
        if not isinstance(data.get(key) or {}, dict):
            raise ArtifactError(f"{source}: field '{key}' must be an object; received {data[key]!r:.80}")
    _check_typed_fields(data, source)


def _check_typed_fields(data: dict[str, Any], source: str) -> None:
    """The fields the device reads as numbers or objects: a wrong type is one error naming the field, not a traceback."""
    from edgecnn.formats import Format
    from edgecnn.untrusted import expect

    known = [f.value for f in Format]
    if data["format"] not in known:
        raise ArtifactError(f"{source}: format {data['format']!r:.40} is not one edgecnn reads ({', '.join(known)})")
    for key in ("parity", "self_check"):
        expect(data.get(key), (dict, type(None)), f"{source}: field '{key}'", error=ArtifactError)
    for key, kinds in (("tolerance", float), ("min_top1_margin", float), ("n", int), ("file", str)):
        if key in (data.get("self_check") or {}):
            expect(data["self_check"][key], kinds, f"{source}: self_check.{key}", error=ArtifactError)


def _check_labels(labels: list[Any], source: str) -> None:
    if not labels or not all(isinstance(x, str) and x.strip() for x in labels):
        raise ArtifactError(f"{source}: labels must be a non-empty list of non-empty strings")
    dupes = sorted({x for x in labels if labels.count(x) > 1})
    if dupes:
        raise ArtifactError(f"{source}: duplicate labels {dupes}")


def _check_files(files: dict[str, Any], source: str) -> None:
    if "model" not in files:
        raise ArtifactError(f"{source}: 'files' has no 'model' entry")
    for role, entry in files.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str) or not isinstance(entry.get("sha256"), str):
            raise ArtifactError(f"{source}: files.{role} needs a 'path' and a 'sha256' string")
        if "bytes" in entry and (not isinstance(entry["bytes"], int) or isinstance(entry["bytes"], bool)):
            raise ArtifactError(f"{source}: files.{role}.bytes must be a whole number; received {entry['bytes']!r:.40}")


def check_one_conversion(manifests: list[Manifest], where: str | Path) -> None:
    """Every artifact of one output folder comes from one conversion of one source model; refuse a mix."""
    groups: dict[tuple[str, str], Manifest] = {}
    for m in manifests:
        groups.setdefault((m.conversion_id, str(m.source_model.get("sha256", ""))), m)
    if len(groups) < 2:
        return

    def describe(m: Manifest) -> str:
        name = m.source_model.get("name", "?")
        sha = str(m.source_model.get("sha256", ""))[:12] or "?"
        return f"{m.directory.name} (conversion {m.conversion_id[:8] or '?'}, source {name} {sha})"

    first, second = list(groups.values())[:2]
    raise ArtifactError(
        f"artifacts from two conversions in {where}: {describe(first)} and {describe(second)}"
        + (f", and {len(groups) - 2} more" if len(groups) > 2 else ""),
        hint="one folder holds one conversion of one model: convert again (--force replaces the whole set), "
        "or keep each conversion in a folder of its own",
    )


def artifact_dirs(path: str | Path) -> list[Path]:
    """The artifact folder itself, or the artifact sub-folders of a conversion output folder."""
    path = Path(path)
    if (path / MANIFEST_NAME).is_file():
        return [path]
    _refuse_unconverted(path)
    if path.is_file() and path.name != MANIFEST_NAME:
        from edgecnn.formats import sniff_model_file

        kind = sniff_model_file(path)  # a broken file is named for what it is
        raise ArtifactError(
            f"{path} is a bare model file ({kind}); classifying needs an artifact folder with its labels and preprocessing",
            hint=f"give the folder 'edgecnn convert' wrote (with {MANIFEST_NAME}); 'edgecnn profile {path}' times a bare file",
        )
    if path.is_file():
        return [path.parent]
    if not path.is_dir():
        raise ArtifactError(f"artifact folder not found: {path}")
    # hidden folders are staging folders of a conversion in progress (or killed): never an artifact to use
    subs = sorted(p.parent for p in path.glob(f"*/{MANIFEST_NAME}") if not p.parent.name.startswith("."))
    if not subs:
        staging = any(p.is_dir() and is_staging(p) for p in path.iterdir())
        raise ArtifactError(
            f"{path} holds no edgecnn artifact ({MANIFEST_NAME} not found)"
            + (" (only the staging folder of a conversion in progress, or killed)" if staging else ""),
            hint="give an artifact folder made by 'edgecnn convert'",
        )
    return subs


def _refuse_unconverted(path: Path) -> None:
    """A Keras model or a training run where an artifact is needed: say to convert it first."""
    keras_file = path.is_file() and path.suffix.lower() in (".keras", ".h5")
    if keras_file:
        from edgecnn.formats import sniff_model_file

        sniff_model_file(path)  # an empty or broken file is named for what it is first
    run = path.is_dir() and not (path / MANIFEST_NAME).is_file() and ((path / RUN_INDEX).is_file() or (path / "model.keras").is_file())
    if keras_file or run:
        what = "a Keras model file" if keras_file else "a training run"
        raise ArtifactError(
            f"{path} is {what}, not an artifact: convert it first",
            hint=f"edgecnn convert {path} --device DEVICE, then give the artifact folder it writes (out/<model>-<device>)",
        )
