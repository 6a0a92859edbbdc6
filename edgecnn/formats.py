"""What a model file is, from its bytes: the one place both sides (host and device) learn formats from.

The runtimes do not promise that a malformed file is safe; a clear error that names the file, what it looks like
and what to do beats a crash deep inside C++.
"""

from __future__ import annotations

from pathlib import Path

from edgecnn.errors import ModelError

_EXPECTED = {
    ".tflite": "a TFLite flatbuffer",
    ".onnx": "an ONNX protobuf",
    ".xml": "an OpenVINO IR XML",
    ".keras": "a Keras zip archive",
}


def looks_like(head: bytes) -> str:
    """A short description of what the first bytes of a file are."""
    text = head.lstrip()[:64].lower()
    if not head:
        return "an empty file (0 bytes)"
    if head.startswith(b"version https://git-lfs"):
        return "a Git LFS pointer, not the model (run 'git lfs pull')"
    if text.startswith((b"<!doctype html", b"<html", b"<head")):
        return "an HTML page (a failed download or an error page?)"
    if len(head) >= 8 and head[4:8] == b"TFL3":
        return "a TFLite flatbuffer"
    if head.startswith(b"PK\x03\x04"):
        return "a zip archive (a .keras model?)"
    if text.startswith((b"<?xml", b"<net")):
        return "an XML document"
    if head.startswith(b"\x89HDF"):
        return "an HDF5 file (a legacy .h5 Keras model?)"
    if head[:1] == b"\x08" and len(head) > 2:
        return "a protobuf (ONNX?)"
    return "unrecognised binary data"


def sniff_model_file(path: str | Path) -> str:
    """Return the file's kind if it matches its suffix; otherwise raise a ModelError that says what it is."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    with open(path, "rb") as f:
        head = f.read(256)
    kind = looks_like(head)
    suffix = path.suffix.lower()
    ok = {
        ".tflite": kind == "a TFLite flatbuffer",
        ".onnx": kind == "a protobuf (ONNX?)",
        ".xml": kind == "an XML document",
        ".keras": kind.startswith("a zip archive"),
        ".h5": kind.startswith("an HDF5"),
    }.get(suffix)
    if ok is None:
        raise ModelError(
            f"{path}: unknown model suffix {suffix!r} (expected .tflite, .onnx, .xml or .keras); the file looks like {kind}"
        )
    if not ok:
        raise ModelError(
            f"{path} should be {_EXPECTED.get(suffix, suffix)} but looks like {kind}",
            hint="re-download or re-convert the model (edgecnn convert), and check the file extension",
        )
    if suffix == ".xml" and not path.with_suffix(".bin").is_file():
        raise ModelError(f"{path}: the OpenVINO weights file {path.with_suffix('.bin').name} is missing beside it")
    return kind
