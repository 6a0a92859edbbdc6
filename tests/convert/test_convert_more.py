"""Edge TPU profile, NNCF accuracy control, and interrupted conversions."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from edgecnn.convert.api import convert
from edgecnn.manifest import MANIFEST_NAME, Manifest


def test_coral_profile_gives_uint8_io_and_says_compiler_is_needed(lenet_run, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no edgetpu_compiler here
    s = convert(lenet_run, "coral-edgetpu", out=tmp_path / "coral")
    assert s.ok and [(r.format, r.precision) for r in s.rows] == [("tflite", "int8")]
    m = Manifest.load(tmp_path / "coral" / "tflite-int8")
    assert m.input["dtype"] == "uint8" and m.output["dtype"] == "uint8"
    assert m.extra["edgetpu"]["compiled"] is False and "edgetpu_compiler" in m.extra["edgetpu"]["note"]
    assert "edgetpu_compiler is not on PATH" in (tmp_path / "coral" / "summary.md").read_text()


@pytest.mark.slow
def test_openvino_int8_with_accuracy_control(lenet_run, tmp_path):
    s = convert(lenet_run, "host", precisions=["openvino/int8"], out=tmp_path / "ac", accuracy_control=True, max_drop=0.5)
    row = s.rows[0]
    assert row.status == "ok", row.notes
    assert row.parity.accuracy_drop_points <= 0.5
    assert Manifest.load(tmp_path / "ac" / "openvino-int8").extra["accuracy_control"] == {"max_drop": 0.5}


@pytest.mark.slow
def test_killed_conversion_leaves_complete_or_no_artifacts(lenet_run, tmp_path):
    """SIGKILL at several moments: every artifact folder left behind verifies; at least one kill lands mid-conversion."""
    interrupted = 0
    for delay in (6.0, 9.0, 12.0, 15.0):
        out = tmp_path / f"k{delay:g}"
        proc = subprocess.Popen(
            [sys.executable, "-m", "edgecnn", "convert", str(lenet_run), "--device", "host", "--out", str(out), "--quiet"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        time.sleep(delay)
        finished = proc.poll() is not None
        if not finished:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if not out.exists():
            continue
        complete = [d for d in out.iterdir() if d.is_dir() and not d.name.startswith(".")]
        for d in out.iterdir():
            if d.name.startswith("."):
                assert d.name.endswith(".partial"), d  # only the staging folder of the step that was killed
            elif d.is_dir():
                assert (d / MANIFEST_NAME).is_file(), f"{d} has no manifest"
                m = Manifest.load(d)  # hashes verified: never a manifest pointing at a partial file
                assert m.parity and m.parity["passed"]
        if not finished and len(complete) < 6:
            interrupted += 1
    assert interrupted >= 1, "no kill landed during the conversion; the delays need adjusting"
