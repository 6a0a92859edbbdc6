"""edgecnn.childproc: the one JSON-lines child-process protocol (conversion workers, the model-file probe)."""

from __future__ import annotations

import os
import signal
import sys
import textwrap
import time
from pathlib import Path

import pytest

from edgecnn.childproc import Child, ChildError

# a child that answers {"echo": request}; "print" prints to stdout first (as a chatty library would), "die" exits 3
# after a line on stderr, "hang" sleeps
SERVER = textwrap.dedent(
    """
    import sys, time
    from edgecnn.childproc import serve
    def handle(req):
        if req.get("print"):
            print("a library's chatter on stdout")
        if req.get("die"):
            print("fatal: the runtime gave up", file=sys.stderr, flush=True)
            sys.exit(3)
        if req.get("hang"):
            time.sleep(60)
        return {"echo": req}
    print("printed before the streams were taken")
    serve(handle, prepare=lambda: print("printed while preparing"), ready=True)
    """
)


def _child(**kw) -> Child:
    return Child(["-c", SERVER], name="test child", **kw)


def test_requests_and_answers_travel_as_json_lines_and_library_output_does_not_corrupt_them():
    child = _child()
    try:
        assert child.read(60) == {"ready": True}  # the stray line printed before serve() is skipped
        for i in range(3):
            assert child.send({"n": i, "print": True})
            assert child.read(10) == {"echo": {"n": i, "print": True}}
        assert "printed while preparing" in child.log_path.read_text()  # the library's output went to the log
        assert "a library's chatter on stdout" in child.log_path.read_text()
    finally:
        child.close()
    assert not child.log_path.exists()  # not kept: nothing went wrong


def test_a_dead_child_is_one_line_naming_how_it_ended_and_its_kept_log():
    child = _child()
    try:
        assert child.read(60) == {"ready": True}
        child.send({"die": True})
        assert child.read(10) is None
        child.wait(10)
        message = child.death("the test child")
        assert message.startswith("the test child died (exit 3): fatal: the runtime gave up; its log: "), message
        log = Path(message.rpartition("; its log: ")[2])
    finally:
        child.close()
    assert log.is_file() and "fatal: the runtime gave up" in log.read_text()  # kept for the user
    log.unlink()
    assert not child.send({"n": 1})  # a dead child's pipe: False, not an exception


def test_a_hanging_child_times_out_and_a_signal_is_named():
    child = _child()
    try:
        assert child.read(60) == {"ready": True}
        child.send({"hang": True})
        t0 = time.monotonic()
        assert child.read(0.3) is None and child.poll() is None
        assert time.monotonic() - t0 < 5
        os.kill(child.pid, signal.SIGSEGV)
        child.wait(10)
        assert child.ended_how() == "exit -11, SIGSEGV"
    finally:
        child.close()


def test_the_interpreter_is_a_parameter(tmp_path):
    """A worker on another Python (a toolchain's own environment) is one argument away."""
    marker = tmp_path / "ran-here"
    wrapper = tmp_path / "python"
    wrapper.write_text(f'#!/bin/sh\ntouch {marker}\nexec {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    child = _child(interpreter=str(wrapper))
    try:
        assert child.read(60) == {"ready": True} and marker.exists()
    finally:
        child.close()
    with pytest.raises(ChildError, match=r"the test child could not be started with /nowhere/python: No such file"):
        _child(interpreter="/nowhere/python")
