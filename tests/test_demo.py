"""`edgecnn demo` as a new user runs it: the console script, no -v, none of the test suite's quieting variables.

The terminal gets edgecnn's own lines only; TensorFlow's, absl's and LiteRT's go to library.log in the demo folder."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

NOISE = re.compile(r"^(E0000|I0000|W0000|WARNING: All log messages|INFO: Created TensorFlow Lite XNNPACK)")


def test_demo_prints_only_its_own_lines_and_keeps_the_library_log(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "CUDA_VISIBLE_DEVICES", "COLUMNS")}
    env["HOME"] = str(tmp_path / "home")  # the log folder under ~/.cache starts empty
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "edgecnn", "demo", "--out", str(out), "--profile-seconds", "0.2"],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = (proc.stdout + proc.stderr).splitlines()
    assert [line for line in lines if NOISE.match(line)] == []
    assert all(line.startswith(("[", "demo finished", "  ")) or not line.strip() for line in lines), lines
    assert re.search(r"training: test accuracy (9\d\.\d\d)% on \d+ held-out digits", proc.stdout)
    assert re.search(r"estimate for rpi4: [\d.]+ ms, likely [\d.]+-[\d.]+ ms", proc.stdout)
    report = (out / "report.md").read_text()
    assert "## 4. Stream" in report and "library.log" not in proc.stderr
    # the libraries did speak, and their words are kept where the run is
    log = (out / "library.log").read_text()
    assert log.strip(), "library.log is empty"
    assert not list((tmp_path / "home" / ".cache" / "edgecnn" / "logs").glob("*.log"))
