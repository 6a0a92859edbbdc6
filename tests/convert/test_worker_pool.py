"""Conversion workers kept for the next conversion of the same process (scheduler.POOL): reused only when started
exactly the same way, never after a failure, ended when idle too long, when killed, or when worn out."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from edgecnn.errors import ConversionError
from edgecnn.host.convert import scheduler
from edgecnn.host.convert.scheduler import POOL, WORKERS, Job, Scheduler

WORKERS.add("pool-test", ("json",), same_again=True)  # a worker that starts in a fraction of a second
NOOP = "edgecnn.host.convert.scheduler:between_conversions"  # a job that answers {} at once


def _kept() -> set[int]:
    return POOL.pids("pool-test")


def _run(name: str = "a") -> int:
    """One 'conversion' of a no-op job on the pool-test worker; the worker's pid."""
    s = Scheduler()
    try:
        s.add([Job(name, "pool-test", NOOP)])
        assert s.result(name)["ok"]
        return s.worker("pool-test").pid
    finally:
        s.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(") ")[1][0] != "Z"


@pytest.fixture(autouse=True)
def empty_pool():
    """No pool-test worker kept before or after (the real workers other tests keep stay for the next conversion)."""
    POOL.close_all("pool-test")
    yield
    POOL.close_all("pool-test")


def test_a_clean_worker_serves_the_next_conversion_and_its_answers_start_afresh():
    first = _run("same-name")
    assert _kept() == {first}
    assert _run("same-name") == first  # the same job name again: the answers of the last conversion are gone
    assert _kept() == {first}


def test_a_worker_in_another_environment_is_not_reused_and_one_a_kind_is_kept(monkeypatch, tmp_path):
    first = _run()
    monkeypatch.setenv("EDGECNN_POOL_TEST", "1")  # what a worker started now would see differs
    second = _run()
    assert second != first and _kept() == {second} and not _alive(first)  # the newest replaces it (memory)
    monkeypatch.delenv("EDGECNN_POOL_TEST")
    third = _run()
    assert third not in (first, second) and _kept() == {third}
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()  # a working folder removed under the process: converting still works, nothing is kept
    fourth = _run()
    assert fourth != third and _kept() == {third} and not _alive(fourth)


def test_a_failed_job_or_a_busy_worker_is_closed_not_kept(tmp_path):
    s = Scheduler()
    s.add([Job("bad", "pool-test", "edgecnn.host.convert.no_such_module:f")])
    with pytest.raises(ConversionError, match="No module named 'edgecnn.host.convert.no_such_module'") as err:
        s.result("bad")
    pid = s.worker("pool-test").pid
    s.close()
    assert _kept() == set() and not _alive(pid)
    os.unlink(err.value.hint.removeprefix("the conversion process's full log: "))
    s = Scheduler()  # a job still running when its conversion ends (an error elsewhere): the worker is killed
    s.add([Job("sleeps", "pool-test", "subprocess:run", {"args": ["sleep", "30"]})])
    time.sleep(0.5)
    pid = s.worker("pool-test").pid
    s.close()
    assert _kept() == set() and not _alive(pid)


def test_a_kept_worker_killed_while_idle_is_replaced_and_leaves_no_log():
    import tempfile
    from pathlib import Path

    first = _run()
    log = next(w.log_path for w, _ in POOL._idle if w.pid == first)
    kept_logs = set(Path(tempfile.gettempdir()).glob("edgecnn-kept-log-*"))
    os.kill(first, signal.SIGKILL)  # the out-of-memory killer, while it waited
    deadline = time.monotonic() + 5
    while _alive(first) and time.monotonic() < deadline:
        time.sleep(0.05)
    second = _run()
    assert second != first and _kept() == {second}
    assert not log.exists() and set(Path(tempfile.gettempdir()).glob("edgecnn-kept-log-*")) == kept_logs


def test_idle_workers_end_after_the_idle_time_and_none_are_kept_with_0(monkeypatch):
    monkeypatch.setenv("EDGECNN_WORKER_IDLE_S", "1")
    pid = _run()
    assert _kept() == {pid}
    deadline = time.monotonic() + 30  # the reaper may be in a 5 s sleep begun under the default idle time
    while (_kept() or _alive(pid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _kept() == set() and not _alive(pid)
    monkeypatch.setenv("EDGECNN_WORKER_IDLE_S", "0")
    pid = _run()
    assert _kept() == set() and not _alive(pid)


def test_a_worker_started_by_another_thread_is_not_kept_and_a_worn_out_one_retires(monkeypatch):
    got: list[int] = []
    t = threading.Thread(target=lambda: got.append(_run()))
    t.start()
    t.join()
    assert _kept() == set() and not _alive(got[0])  # its parent-death signal follows that thread
    monkeypatch.setattr(scheduler, "MAX_CONVERSIONS", 2)
    first = _run()
    assert _run() == first and _kept() == set()  # its second conversion was its last


@pytest.mark.slow
def test_two_real_conversions_share_their_workers_and_agree(lenet_run, tmp_path):
    from edgecnn.host.convert.api import convert
    from edgecnn.host.convert.openvino import _CONVERTED

    targets = ["tflite/int8", "onnx/fp32", "onnx/int8", "openvino/int8"]
    kinds = ("tensorflow", "onnx-quantizer", "openvino-nncf")
    first = convert(lenet_run, "host", out=tmp_path / "a", precisions=targets)
    kept = {kind: POOL.pids(kind) for kind in kinds}
    assert first.ok and all(kept.values()), kept  # each kind kept (with any kept for other environments)
    second = convert(lenet_run, "host", out=tmp_path / "b", precisions=targets)
    assert second.ok and {kind: POOL.pids(kind) for kind in kinds} == kept
    for a, b in zip(first.rows, second.rows, strict=True):  # the same answers from the kept workers
        assert (a.format, a.precision) == (b.format, b.precision)
        assert a.parity.agreement == b.parity.agreement and a.parity.max_abs_dp == pytest.approx(b.parity.max_abs_dp, abs=1e-6)
    name = "tflite-int8/model.tflite"
    assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    import onnx  # tf2onnx's added nodes are numbered as in a fresh worker, and no temporary path is recorded

    a, b = (onnx.load(str(tmp_path / d / "onnx-fp32" / "model.onnx")).graph for d in "ab")
    assert [n.name for n in a.node] == [n.name for n in b.node] and "/tmp" not in a.doc_string
    _CONVERTED["x"] = object()  # in a worker, the OpenVINO models of the last conversion are forgotten before the next
    scheduler.between_conversions()
    assert _CONVERTED == {}
