"""The artifact contract: validation, hashes, atomic staging."""

from __future__ import annotations

import json
import os

import pytest

from edgecnn.errors import ArtifactError
from edgecnn.manifest import MANIFEST_NAME, Manifest, staged_directory
from edgecnn.preprocess import PreprocessSpec


def _artifact(d, labels=("a", "b", "c"), out_classes=3):
    d.mkdir(parents=True, exist_ok=True)
    (d / "model.bin").write_bytes(b"weights" * 10)
    m = Manifest(
        format="onnx",
        precision="fp32",
        files={"model": {"path": "model.bin"}},
        input={"name": "input", "shape": [1, 8, 8, 3], "dtype": "float32"},
        output={"name": "p", "shape": [1, out_classes], "dtype": "float32"},
        labels=list(labels),
        preprocess=PreprocessSpec.unit(8),
    )
    m.write(d)
    return d


def _edit(d, fn):
    data = json.loads((d / MANIFEST_NAME).read_text())
    fn(data)
    (d / MANIFEST_NAME).write_text(json.dumps(data))


def test_roundtrip_and_verify(tmp_path):
    d = _artifact(tmp_path / "a")
    m = Manifest.load(d)
    assert m.labels == ["a", "b", "c"] and m.files["model"]["bytes"] == 70 and len(m.files["model"]["sha256"]) == 64
    assert m.preprocess == PreprocessSpec.unit(8)


def test_tampered_and_truncated_files_are_refused(tmp_path):
    d = _artifact(tmp_path / "a")
    (d / "model.bin").write_bytes(b"weights" * 9 + b"WEIGHTS")
    with pytest.raises(ArtifactError, match="sha256 of model.bin does not match"):
        Manifest.load(d)
    (d / "model.bin").write_bytes(b"weights")
    with pytest.raises(ArtifactError, match="has 7 bytes, manifest says 70"):
        Manifest.load(d)
    (d / "model.bin").unlink()
    with pytest.raises(ArtifactError, match="missing"):
        Manifest.load(d)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda m: m.update(schema_version=99), "unsupported schema_version 99"),
        (lambda m: m.pop("labels"), "missing field 'labels'"),
        (lambda m: m.update(labels="abc"), "field 'labels' must be list"),
        (lambda m: m.update(labels=["a", "a", "b"]), "duplicate labels"),
        (lambda m: m.update(labels=["a", "", "b"]), "non-empty strings"),
        (lambda m: m.update(labels=["a", "b"]), "outputs 3 classes but the manifest lists 2 labels"),
        (lambda m: m["files"]["model"].update(path="../model.bin"), "leaves the artifact folder"),
        (lambda m: m["files"]["model"].update(path="/etc/passwd"), "leaves the artifact folder"),
        (lambda m: m.update(schema="other"), "schema is 'other'"),
        (lambda m: m.update(preprocess={"height": 8}), "invalid preprocess"),
    ],
)
def test_invalid_manifests_are_refused(tmp_path, edit, message):
    d = _artifact(tmp_path / "a")
    _edit(d, edit)
    with pytest.raises(ArtifactError, match=message):
        Manifest.load(d)


def test_symlinked_model_is_refused(tmp_path):
    d = _artifact(tmp_path / "a")
    outside = tmp_path / "outside.bin"
    os.replace(d / "model.bin", outside)
    os.symlink(outside, d / "model.bin")
    with pytest.raises(ArtifactError, match="symbolic link"):
        Manifest.load(d)


def test_not_json_and_missing_manifest(tmp_path):
    d = _artifact(tmp_path / "a")
    (d / MANIFEST_NAME).write_text("{nope")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        Manifest.load(d)
    (d / MANIFEST_NAME).unlink()
    with pytest.raises(ArtifactError, match="not an edgecnn artifact"):
        Manifest.load(d)


def test_staged_directory_leaves_nothing_on_failure(tmp_path):
    final = tmp_path / "out" / "tflite-int8"
    with pytest.raises(RuntimeError):
        with staged_directory(final) as tmp:
            (tmp / "model.tflite").write_bytes(b"partial")
            raise RuntimeError("killed mid-write")
    assert not final.exists()
    assert list((tmp_path / "out").iterdir()) == []
    with staged_directory(final) as tmp:
        (tmp / "x").write_text("done")
    assert (final / "x").read_text() == "done"
    with pytest.raises(ArtifactError, match="already exists"):
        with staged_directory(final):
            pass
