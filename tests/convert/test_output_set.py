"""One output folder holds one conversion of one model, replaced whole or not at all (issue 15)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgecnn.cli import main
from edgecnn.host.convert.api import convert
from edgecnn.runtime.select import load_artifact_set

FP32 = ["--precision", "tflite/fp32", "--precision", "onnx/fp32"]


@pytest.fixture(scope="module")
def other_model(tmp_path_factory) -> Path:
    """Another 32x32 grey classifier (3 classes, untrained), with its labels and preprocessing beside it."""
    import keras

    from edgecnn.preprocess import PreprocessSpec

    d = tmp_path_factory.mktemp("other")
    inp = keras.Input((32, 32, 1))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inp)
    out = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    keras.Model(inp, out, name="tiny3").save(d / "tiny3.keras")
    (d / "labels.txt").write_text("cat\ndog\nbird\n")
    PreprocessSpec.unit(32, 1).save(d / "preprocess.json")
    return d / "tiny3.keras"


def _cli(*args: str) -> list[str]:
    return ["convert", *args, "--device", "host", "--quiet"]


@pytest.mark.serial
def test_out_equal_to_inside_or_around_the_input_is_refused_before_any_work(lenet_run, tmp_path, capsys):
    for out, says in (
        (lenet_run, "is inside the input"),
        (lenet_run / "artifacts", "is inside the input"),
        (lenet_run.parent, "contains the input"),
    ):
        t0 = time.perf_counter()
        assert main([*_cli(str(lenet_run)), "--out", str(out), "--force"]) == 1
        assert time.perf_counter() - t0 < 3  # before TensorFlow is imported
        assert says in capsys.readouterr().err
    indexed = json.loads((lenet_run / "edgecnn-run.json").read_text())["files"]
    assert sorted(p.name for p in lenet_run.iterdir()) == sorted([*indexed, "edgecnn-run.json"])  # nothing written


def test_a_run_that_fails_its_own_verification_is_not_converted(lenet_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(lenet_run, run)
    (run / "labels.txt").write_text("\n".join(f"renamed{i}" for i in range(10)) + "\n")
    assert main([*_cli(str(run)), *FP32, "--out", str(tmp_path / "o")]) == 1
    assert f"error: run {run}: labels.txt does not match edgecnn-run.json" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    (run / "edgecnn-run.json").unlink()
    assert main([*_cli(str(run)), *FP32, "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "has no edgecnn-run.json: not a complete edgecnn run" in err and f"edgecnn convert {run / 'model.keras'}" in err


def test_another_models_folder_is_refused_without_force_and_replaced_whole_with_it(lenet_run, other_model, tmp_path, capsys):
    out = tmp_path / "o"
    first = convert(lenet_run, "host", precisions=["tflite/fp32", "onnx/fp32"], out=out)
    assert main([*_cli(str(other_model)), "--precision", "tflite/fp32", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "output folder already exists" in err and "another model than tiny3" in err
    second = convert(other_model, "host", precisions=["tflite/fp32"], out=out, force=True)
    names = sorted(p.name for p in out.iterdir())
    assert names == ["summary.json", "summary.md", "tflite-fp32"]  # onnx-fp32 of lenet5 went with its set
    assert [m.labels for m in load_artifact_set(out)] == [["cat", "dog", "bird"]]
    assert second.conversion_id != first.conversion_id


def test_converting_some_precisions_again_keeps_the_rest_of_the_same_models_set(lenet_run, tmp_path):
    out = tmp_path / "o"
    first = convert(lenet_run, "host", precisions=["tflite/fp32", "onnx/fp32"], out=out)
    kept_inode = (out / "onnx-fp32" / "model.onnx").stat().st_ino
    again = convert(lenet_run, "host", precisions=["tflite/fp32", "tflite/int8"], out=out, force=True)
    sets = load_artifact_set(out)
    assert sorted(m.directory.name for m in sets) == ["onnx-fp32", "tflite-fp32", "tflite-int8"]
    assert {m.conversion_id for m in sets} == {first.conversion_id} == {again.conversion_id}
    assert (out / "onnx-fp32" / "model.onnx").stat().st_ino == kept_inode  # carried over as a hard link
    summary = json.loads((out / "summary.json").read_text())
    assert [(a["format"], a["precision"], a.get("carried_over", False)) for a in summary["artifacts"]] == [
        ("tflite", "fp32", False),
        ("tflite", "int8", False),
        ("onnx", "fp32", True),
    ]
    assert "Kept from the earlier conversion of the same model" in (out / "summary.md").read_text()


def _which_set(out: Path, old_id: str) -> str:
    """'old' or 'new' when ``out`` holds exactly one complete, verified set; a mix fails the test."""
    manifests = load_artifact_set(out)  # every artifact's digest and hashes verified, and one conversion
    names = sorted(m.directory.name for m in manifests)
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]
    assert json.loads((out / "summary.json").read_text())["conversion_id"] == manifests[0].conversion_id
    if manifests[0].conversion_id == old_id:
        assert names == ["onnx-fp32", "tflite-fp32"] and all(m.labels == [str(i) for i in range(10)] for m in manifests)
        return "old"
    assert names == ["tflite-fp32"] and manifests[0].labels == ["cat", "dog", "bird"]  # lenet5's onnx-fp32 went too
    return "new"


_PUBLISH = """
import shutil, sys
from pathlib import Path
from edgecnn.atomic import new_staging_folder, publish
new, out = Path(sys.argv[1]), Path(sys.argv[2])
staging = new_staging_folder(out)
shutil.rmtree(staging)
shutil.copytree(new, staging)
publish(staging, out)
"""


@pytest.mark.slow
def test_a_kill_at_each_moment_of_convert_force_over_another_models_set_leaves_the_old_or_the_new_set(
    lenet_run, other_model, tmp_path
):
    """`convert --force` replacing lenet5's set (TFLite and ONNX) with tiny3's (TFLite only), SIGKILLed at each named
    moment of publishing (``EDGECNN_CRASH_AT``): never lenet5's ONNX beside tiny3's TFLite, never a partial set, and
    the next run removes what the killed one left. The real conversion is killed once every artifact is written;
    the steps of the publish itself run in a small child on a copy of tiny3's real set. Killing whole conversions
    at random moments, slower: `python tools/kill_trials.py --what convert-over-other`."""
    from edgecnn.atomic import CRASH_POINTS

    out = tmp_path / "o"
    cmd = [sys.executable, "-m", "edgecnn", *_cli(str(other_model)), "--precision", "tflite/fp32", "--out", str(out), "--force"]
    old = convert(lenet_run, "host", precisions=["tflite/fp32", "onnx/fp32"], out=tmp_path / "lenet5-set")
    new = tmp_path / "tiny3-set"  # tiny3's set as its conversion makes it, for the publish steps' child
    seen, before = {}, []
    for point in ("set:published", "set:staged", *[p for p in CRASH_POINTS if p.startswith("publish:")]):
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(old.out, out)  # lenet5's set again
        env = os.environ | {"EDGECNN_CRASH_AT": point}
        child = cmd if point.startswith("set:") else [sys.executable, "-c", _PUBLISH, str(new), str(out)]
        r = subprocess.run(child, env=env, capture_output=True, text=True, cwd=tmp_path, timeout=300)
        assert r.returncode == -signal.SIGKILL, (point, r.returncode, r.stderr[-1000:])
        left = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".o."))
        assert not set(before) & set(left), (point, before, left)  # each run removed what the killed one before left
        seen[point], before = (_which_set(out, old.conversion_id), len(left)), left
        if point == "set:published":
            shutil.copytree(out, new)
    assert seen == {
        "set:published": ("new", 0),
        "set:staged": ("old", 1),  # its staging folder, all artifacts in it
        "publish:synced": ("old", 1),
        "publish:exchanged": ("new", 1),  # the staging folder's name now holds lenet5's old set
        "publish:old-removed": ("new", 0),
    }, seen
