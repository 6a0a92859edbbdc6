"""Mutation fuzz, the CI-sized version of tools/fuzz_models.py (issue #8, figures 2 and 3)."""

from __future__ import annotations

import os
import signal
import time

import pytest

from edgecnn.host.hardening.fuzz import fuzz_artifact, mutate
from edgecnn.host.hardening.isolate import IsolatedRunner, probe_isolated

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    "artifact,count", [("tflite-fp32", 150), ("tflite-int8", 100), ("onnx-fp32", 150), ("openvino-fp32", 150), ("keras", 30)]
)
def test_mutants_are_refused_or_run_never_uncaught_or_hung(artifact, count, lenet_artifacts, lenet_run):
    target = lenet_run if artifact == "keras" else lenet_artifacts / artifact
    rep = fuzz_artifact(target, count, seed=7, timeout=10.0)
    o = rep.outcomes
    assert rep.mutants == count and sum(o.values()) == count
    assert o["uncaught"] == 0, rep.examples.get("uncaught")
    assert o["hung"] == 0, rep.examples.get("hung")
    assert o["refused"] >= count // 10, o  # the mutations do break files, and edgecnn says so
    for ex in rep.examples.get("refused", []):
        assert "probe/model." in ex["detail"], ex  # the error names the file
    if artifact == "keras":
        assert rep.gate_checked == 0  # a training run has no manifest
    else:
        assert rep.gate_checked == count and rep.gate_refused == count  # 100% refused before any runtime parses them
    assert rep.passed


def test_mutate_changes_the_bytes_deterministically():
    import numpy as np

    data = bytes(range(256)) * 8
    a = [mutate(data, np.random.default_rng(3)) for _ in range(2)]
    assert a[0] == a[1] and a[0][0] != data
    kinds = {mutate(data, np.random.default_rng(s))[1].split()[0] for s in range(60)}
    assert kinds == {"flip", "overwrite", "truncate", "insert", "delete", "zero", "splice"}


def test_a_valid_model_runs_in_the_child(lenet_artifacts):
    r = probe_isolated(lenet_artifacts / "onnx-fp32" / "model.onnx")
    assert r.outcome == "ran" and r.detail.startswith("output (1, 10) float32, finite: True"), r


def test_child_crash_is_reported_and_the_runner_recovers(lenet_artifacts):
    model = lenet_artifacts / "tflite-fp32" / "model.tflite"
    with IsolatedRunner(timeout=10.0) as runner:
        assert runner.probe(model).outcome == "ran"
        os.kill(runner._child.pid, signal.SIGSEGV)  # what a native runtime's segfault does to the child
        r = runner.probe(model)
        assert r.outcome == "crashed" and "(exit -11, SIGSEGV)" in r.detail, r
        assert runner.probe(model).outcome == "ran" and runner.restarts == 1


def test_child_that_does_not_answer_in_time_is_killed_as_hung(lenet_artifacts):
    model = lenet_artifacts / "openvino-fp32" / "model.xml"
    with IsolatedRunner(timeout=0.001, preload=("openvino",)) as runner:
        r = runner.probe(model)
        assert r.outcome == "hung" and "no answer within 0.001 s" in r.detail, r
        pid_gone = runner._child is None
    assert pid_gone and runner.restarts == 1


def test_a_hung_probe_is_killed_with_everything_it_forked(tmp_path, monkeypatch):
    import psutil

    # a "runtime" that forks at import, as OpenVINO's telemetry does, and leaves the fork waiting; and whose probe
    # hangs (a timeout of 1 ms against a quick refusal was a race the refusal could win on a loaded machine)
    (tmp_path / "forks_at_import.py").write_text(
        "import os, time\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    time.sleep(600)\n"
        "    os._exit(0)\n"
        f"open({str(tmp_path / 'grandchild.pid')!r}, 'w').write(str(pid))\n"
        "import edgecnn.formats\n"
        "edgecnn.formats.sniff_model_file = lambda path: time.sleep(600)\n"
    )
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    with IsolatedRunner(timeout=0.5, preload=("forks_at_import",)) as runner:
        (tmp_path / "model.tflite").write_bytes(b"\0" * 64)
        r = runner.probe(tmp_path / "model.tflite")
        assert r.outcome == "hung", r
    grandchild = int((tmp_path / "grandchild.pid").read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            if psutil.Process(grandchild).status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    else:
        raise AssertionError(f"the probe's fork {grandchild} outlived the kill")
