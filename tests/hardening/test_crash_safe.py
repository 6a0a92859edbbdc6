"""Crash-safe writes (issue #8, figure 6): killed training, full disks, stale staging folders, run verification.

The 50-trial kill runs of convert and train are tools/kill_trials.py; these are the CI-sized versions."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from edgecnn.atomic import remove_stale_partials, staged_directory
from edgecnn.cli import main
from edgecnn.manifest import MANIFEST_NAME, RUN_INDEX, Manifest, verify_run

TINY_RECIPE = """name: tiny-digits
data: bundled:digits
model: {name: lenet5, input_size: 32, channels: 1}
seed: 0
max_per_class: 30
split: {validation: 0.2, test: 0.2}
training: {optimizer: adam, learning_rate: 0.002, batch_size: 32, epochs: 3}
"""


@pytest.fixture()
def tiny_recipe(tmp_path) -> Path:
    p = tmp_path / "tiny.yaml"
    p.write_text(TINY_RECIPE)
    return p


@pytest.fixture()
def small_fs(tmp_path):
    """A size-limited tmpfs (needs root, as in CI's container); the test skips where none can be mounted."""
    mounts = []

    def make(kib: int) -> Path:
        d = tmp_path / f"fs{len(mounts)}"
        d.mkdir()
        if os.geteuid() != 0 or not shutil.which("mount"):
            pytest.skip("mounting a small tmpfs needs root")
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(d)], capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
        mounts.append(d)
        return d

    yield make
    for d in mounts:
        subprocess.run(["umount", "-l", str(d)], check=False)


def _assert_only_complete_outputs(root: Path) -> list[Path]:
    """Every visible folder under ``root`` verifies; nothing else but hidden staging folders of a killed writer."""
    complete = []
    for d in sorted(root.iterdir()) if root.exists() else []:
        if d.name.startswith("."):
            assert d.name.endswith(".partial") and d.is_dir(), d
            continue
        if d.is_dir():
            if (d / MANIFEST_NAME).is_file():
                Manifest.load(d)  # hashes verified
            else:
                verify_run(d)
            complete.append(d)
    return complete


@pytest.mark.slow
def test_full_disk_during_conversion_is_one_clear_error_and_no_partial_artifact(lenet_run, small_fs, capsys):
    fs = small_fs(400)  # room for the two TFLite artifacts (0.25 + 0.07 MB), not for ONNX/OpenVINO
    assert main(["convert", str(lenet_run), "--device", "host", "--out", str(fs / "art"), "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith(f"error: no space left on the device holding {fs / 'art'}"), err
    # the first ONNX or OpenVINO artifact fills the disk: ONNX when tf2onnx was done by then, else OpenVINO; TFLite
    # int8 comes before either, or after them when the worker was still calibrating (then it never ran)
    done = re.search(r"stopped at (onnx|openvino)/fp32 \(finished and verified: ([^)]*)\)", err[0])
    assert done and done.group(2) in ("tflite/fp32, tflite/int8", "tflite/fp32"), err
    assert "nothing partial was left behind" in err[1]
    complete = [d.name for d in _assert_only_complete_outputs(fs / "art")]
    assert complete == [d.replace("/", "-") for d in done.group(2).split(", ")]
    assert not [p for p in (fs / "art").iterdir() if p.name.startswith(".")]  # staging folders removed
    from edgecnn.atomic import umask as _umask

    for p in (fs / "art" / "tflite-fp32", fs / "art" / "tflite-fp32" / MANIFEST_NAME):  # not mkdtemp's 0700/0600
        assert p.stat().st_mode & 0o777 == (0o777 if p.is_dir() else 0o666) & ~_umask(), oct(p.stat().st_mode)


@pytest.mark.slow
def test_full_disk_during_training_is_one_clear_error_and_no_run(tiny_recipe, small_fs, capsys):
    fs = small_fs(300)  # model.keras alone is 0.8 MB
    assert main(["train", str(tiny_recipe), "--out", str(fs / "run"), "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith(f"error: no space left on the device holding {fs}: writing {fs / 'run'} failed"), err
    assert list(fs.iterdir()) == []


@pytest.mark.slow
def test_killed_training_leaves_a_complete_run_or_none(tiny_recipe, tmp_path):
    """SIGKILL at moments spread over a training run: the run folder is absent or verifies, at least one kill lands."""
    outcomes = []
    for i, delay in enumerate((4.0, 7.0, 9.0, 120.0)):  # the last run is let finish: about 10 s alone
        out = tmp_path / f"k{i}" / "run"
        proc = subprocess.Popen(
            [sys.executable, "-m", "edgecnn", "train", str(tiny_recipe), "--out", str(out), "--quiet"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            proc.wait(timeout=delay)
            outcomes.append("finished")
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            outcomes.append("killed")
        complete = _assert_only_complete_outputs(out.parent)
        assert complete in ([], [out])
        if outcomes[-1] == "finished":
            assert complete == [out] and main(["verify", str(out)]) == 0
    assert "killed" in outcomes and outcomes[-1] == "finished", outcomes


def test_stale_staging_folders_of_dead_writers_are_removed(tmp_path):
    final = tmp_path / "art"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".art.{dead.pid}.x1y2.partial"
    live = tmp_path / f".art.{os.getpid()}.a1b2.partial"
    other = tmp_path / f".other.{dead.pid}.x1y2.partial"
    for d in (stale, live, other):
        d.mkdir()
        (d / "model.onnx").write_bytes(b"half")
    assert remove_stale_partials(final) == [stale]
    assert live.exists() and other.exists() and not stale.exists()
    with staged_directory(final) as tmp:
        assert tmp.name.startswith(f".art.{os.getpid()}.")
        (tmp / "x").write_text("done")
    assert (final / "x").read_text() == "done"


def test_verify_checks_a_training_run(lenet_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(lenet_run, run)
    assert main(["verify", str(run)]) == 0
    assert f"ok: {run} (training run, 8 file(s) match their sha256)" in capsys.readouterr().out
    with open(run / "labels.txt", "a") as f:
        f.write("extra\n")
    assert main(["verify", str(run)]) == 1
    assert f"error: run {run}: labels.txt does not match {RUN_INDEX}" in capsys.readouterr().err
    (run / RUN_INDEX).unlink()
    assert main(["verify", str(run)]) == 1
    assert f"{run} has no {RUN_INDEX}: not a complete edgecnn run" in capsys.readouterr().err


def test_replacing_an_artifact_is_one_atomic_swap(tmp_path, monkeypatch):
    """With --force the old folder is exchanged for the new one in one step; never neither (Linux renameat2)."""
    import edgecnn.atomic as atomic

    final = tmp_path / "art"
    with staged_directory(final) as tmp:
        (tmp / "v").write_text("old")
    swaps = []
    real = atomic.exchange
    monkeypatch.setattr(atomic, "exchange", lambda a, b: swaps.append(real(a, b)) or swaps[-1])
    with staged_directory(final, force=True) as tmp:
        (tmp / "v").write_text("new")
    assert (final / "v").read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["art"]
    if sys.platform.startswith("linux"):
        assert swaps == [True]


def test_a_staging_folder_is_never_taken_for_an_artifact(lenet_artifacts, tmp_path, capsys):
    """Found by tools/kill_trials.py: a killed conversion's hidden staging folder can hold a complete-looking manifest;
    verify, classify and select must only see the visible artifact folders."""
    from edgecnn.runtime.select import artifact_dirs

    out = tmp_path / "out"
    shutil.copytree(lenet_artifacts / "tflite-fp32", out / "tflite-fp32")
    shutil.copytree(lenet_artifacts / "onnx-fp32", out / ".onnx-fp32.4242.ab12.partial")
    assert artifact_dirs(out) == [out / "tflite-fp32"]
    assert main(["verify", str(out)]) == 0
    assert capsys.readouterr().out.count("ok: ") == 1
