"""The artifact contract: validation, the integrity digest, hashes, one conversion per folder, atomic staging."""

from __future__ import annotations

import json
import os

import pytest

from edgecnn.atomic import staged_directory
from edgecnn.errors import ArtifactError
from edgecnn.manifest import MANIFEST_NAME, Manifest, seal
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


def _edit(d, fn, *, reseal=True):
    """Edit the manifest; ``reseal`` as a faulty writer would (a valid digest over invalid content), so that the
    structural checks behind the digest are reached."""
    data = json.loads((d / MANIFEST_NAME).read_text())
    fn(data)
    (d / MANIFEST_NAME).write_text(json.dumps(seal(data) if reseal else data))


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
        (lambda m: m.update(schema_version=99), r"made by a newer edgecnn \(artifact schema_version 99; edgecnn .* reads 2\)"),
        (lambda m: m.update(schema_version=1), "made by an older edgecnn"),
        (lambda m: m.update(schema_version="2"), "field 'schema_version' must be int"),
        (lambda m: m.pop("labels"), "missing field 'labels'"),
        (lambda m: m.update(labels="abc"), "field 'labels' must be list"),
        (lambda m: m.update(labels=["a", "a", "b"]), "duplicate labels"),
        (lambda m: m.update(labels=["a", "", "b"]), "non-empty strings"),
        (lambda m: m.update(labels=["a", "b"]), "outputs 3 classes but the manifest lists 2 labels"),
        (lambda m: m["files"]["model"].update(path="../model.bin"), "leaves the artifact folder"),
        (lambda m: m["files"]["model"].update(path="/etc/passwd"), "leaves the artifact folder"),
        (lambda m: m.update(schema="other"), "schema is 'other'"),
        (lambda m: m.update(preprocess={"height": 8}), "invalid preprocess"),
        (lambda m: m.update(conversion="abc"), "field 'conversion' must be an object"),
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


def _leaf_edits(data, prefix=""):
    """(name, edit) for every field and sub-field of a manifest: each edit changes exactly that one value."""

    def changed(v):
        if isinstance(v, bool):
            return not v
        if isinstance(v, (int, float)):
            return v + 1
        if isinstance(v, str):
            return v + "x"
        if isinstance(v, list):
            return [*v, v[-1] if v else 0]
        if isinstance(v, dict):
            return {**v, "added": 1}
        return "changed"

    for key, value in data.items():
        if key == "integrity":
            continue
        name = f"{prefix}{key}"
        yield name, (lambda d, k=key: d.__setitem__(k, changed(d[k])))
        if isinstance(value, dict) and not prefix:
            for sub in value:
                yield f"{key}.{sub}", (lambda d, k=key, s=sub: d[k].__setitem__(s, changed(d[k][s])))


def test_every_single_field_edit_of_a_real_manifest_is_refused_by_name(artifact_copy, capsys):
    """Labels, preprocessing scale, channels, input shape, format, precision, source hash, conversion id, parity...:
    any one edited value of a converted artifact's manifest is refused, and the message names the field."""
    from edgecnn.cli import main

    d = artifact_copy / "tflite-int8"
    original = (d / MANIFEST_NAME).read_text()
    edits = list(_leaf_edits(json.loads(original)))
    names = {n for n, _ in edits}
    assert {"labels", "preprocess.scale", "preprocess.channels", "input.shape", "format", "precision"} <= names
    assert {"source_model.sha256", "conversion.id", "self_check.tolerance", "files.model"} <= names
    assert len(edits) > 60
    for name, edit in edits:
        (d / MANIFEST_NAME).write_text(original)
        _edit(d, edit, reseal=False)
        with pytest.raises(ArtifactError) as exc:
            Manifest.load(d)
        if name in ("schema", "schema_version"):  # read before the digest: an unknown schema has another digest
            assert "schema" in exc.value.message and "edgecnn" in exc.value.message, exc.value.message
        else:  # a field added to an object is named as the new sub-field
            expect = f"'{name}.added'" if "." not in name and isinstance(json.loads(original)[name], dict) else f"'{name}'"
            assert f"{expect} changed after conversion" in exc.value.message, (name, exc.value.message)
    (d / MANIFEST_NAME).write_text(original)
    _edit(d, lambda m: m["preprocess"].update(scale=1.0), reseal=False)
    assert main(["verify", str(artifact_copy)]) == 1
    err = capsys.readouterr().err
    assert f"error: {d / MANIFEST_NAME}: 'preprocess.scale' changed after conversion" in err


def test_a_removed_digest_and_an_edited_digest_are_refused(tmp_path):
    d = _artifact(tmp_path / "a")
    _edit(d, lambda m: m.pop("integrity"), reseal=False)
    with pytest.raises(ArtifactError, match="no integrity digest"):
        Manifest.load(d)
    d = _artifact(tmp_path / "b")
    _edit(d, lambda m: m["integrity"].update(digest="0" * 64), reseal=False)
    with pytest.raises(ArtifactError, match="'integrity' changed after conversion"):
        Manifest.load(d)


def test_a_model_file_swapped_between_two_artifacts_is_refused(artifact_copy):
    import shutil

    shutil.copyfile(artifact_copy / "tflite-fp32" / "model.tflite", artifact_copy / "tflite-int8" / "model.tflite")
    with pytest.raises(ArtifactError, match=r"model.tflite has \d+ bytes, manifest says \d+ \(truncated or replaced\)"):
        Manifest.load(artifact_copy / "tflite-int8")


def test_a_folder_mixing_two_conversions_is_refused_by_verify_and_by_runtime_selection(
    artifact_copy, lenet_run, tmp_path, capsys
):
    """An artifact copied in from another conversion (even of the same model) makes the folder two conversions."""
    import shutil

    from edgecnn.cli import main
    from edgecnn.host.convert.api import convert
    from edgecnn.runtime import Classifier

    other = convert(lenet_run, "host", precisions=["tflite/fp32"], out=tmp_path / "other")
    shutil.rmtree(artifact_copy / "tflite-fp32")
    shutil.copytree(other.out / "tflite-fp32", artifact_copy / "tflite-fp32")
    assert Manifest.load(artifact_copy / "tflite-fp32").conversion_id == other.conversion_id
    assert main(["verify", str(artifact_copy)]) == 1
    err = capsys.readouterr().err
    assert "error: artifacts from two conversions in" in err and f"conversion {other.conversion_id[:8]}" in err
    with pytest.raises(ArtifactError, match="artifacts from two conversions"):
        Classifier(artifact_copy, runtime="litert")
    assert main(["verify", str(artifact_copy / "tflite-fp32")]) == 0  # each artifact alone is still whole
