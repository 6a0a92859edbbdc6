"""tests/conftest.py's per-test CPU log (EDGECNN_TEST_CPU_LOG) and tools/suite_cpu.py, which sums it up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_cpu_log_counts_a_tests_own_and_its_childrens_cpu(tmp_path):
    (tmp_path / "test_burn.py").write_text(
        "import subprocess, sys, time\n"
        "def test_child():\n"
        "    subprocess.run([sys.executable, '-c', 'import time\\nt=time.process_time()\\n"
        "while time.process_time() - t < 0.5: pass'], check=True)\n"
        "def test_sleep():\n"
        "    time.sleep(2.5)\n"
    )
    (tmp_path / "conftest.py").write_text((REPO / "tests" / "conftest.py").read_text())
    log = tmp_path / "cpu.jsonl"
    env = {**os.environ, "EDGECNN_TEST_CPU_LOG": str(log)}
    env.pop("PYTEST_XDIST_WORKER", None)
    env.pop("EDGECNN_TEST_PART", None)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_burn.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-2000:]
    recs = {r["test"]: r for r in map(json.loads, log.read_text().splitlines())}
    child, sleep = recs["test_burn.py::test_child"], recs["test_burn.py::test_sleep"]
    assert child["children"] >= 0.45 and child["self"] < 0.45
    assert sleep["wall"] >= 2.4 and sleep["self"] + sleep["children"] < 0.2
    out = subprocess.run(
        [sys.executable, str(REPO / "tools" / "suite_cpu.py"), str(log), "--top", "1"], capture_output=True, text=True
    ).stdout
    worker_line = next(line for line in out.splitlines() if line.startswith("-"))
    assert worker_line.split()[1] == "2"  # two tests, no worker: a plain pytest
    cpu_top = out.split("tests by CPU")[1].splitlines()[1]
    assert cpu_top.endswith("test_burn.py::test_child")
    # test_sleep waits 2.5 s; test_child waits too (its child's start-up, and the cores it shares with other workers):
    # about 0.6 s measured under three workers on two cores, so 0.4 s of sleep did not always outrank it
    wait_top = out.split("tests that mostly wait")[1].splitlines()[1]
    assert wait_top.endswith("test_burn.py::test_sleep")
    span = out.split("idle at the end s")[1].splitlines()[1].split()  # the timeline: the one process's span
    assert span[0] == "-" and float(span[1]) == 0 and float(span[2]) >= 3.0 and span[-1] == "test_burn.py"
