"""Device side: a child process that speaks JSON lines: one request a line on its stdin, one answer a line on its
stdout, its stderr (and whatever the libraries it loads print) in a log file that a dead child's error names.

Both ends are here. The parent: ``Child(argv, name=...)`` starts ``INTERPRETER argv`` (``interpreter`` defaults to
this Python; a worker whose toolchain lives in another environment names that environment's python), ``send``s a
request, reads answers with a timeout (``read``) or from a thread (``answers``), and says how it died, naming
its log (``death``). The child: ``serve(handle)`` answers each request with ``handle(request)``, on private copies of the
standard streams, so that a library that prints to stdout cannot corrupt the answers. Nothing here imports more
than the standard library: the conversion scheduler (convert/scheduler.py) and the model-file probe
(hardening/isolate.py) both use it.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from edgecnn import cleanup
from edgecnn.errors import EdgeCNNError

LOG_PREFIX = "edgecnn-worker-"  # + pid: a killed edgecnn's children's logs are removed by the next run's sweep


class ChildError(EdgeCNNError):
    """A child process could not be started, or stopped answering."""


class Child:
    """Parent side of one child process.

    Args:
        argv: what follows the interpreter (``["-m", "edgecnn.host.convert.scheduler", ...]``).
        name: what the child is, for its log's name and for error messages ("tflite conversion worker").
        interpreter: the Python (or any program) that runs it; default this one (``sys.executable``).
        env: its environment (default this process's).
        limit: run in the child between fork and exec (resource limits, a parent-death signal).
        own_group: a process group of its own, so that ``kill`` reaches whatever the child forked.
    """

    def __init__(
        self,
        argv: list[str],
        *,
        name: str,
        interpreter: str | None = None,
        env: dict[str, str] | None = None,
        limit: Callable[[], None] | None = None,
        own_group: bool = False,
    ) -> None:
        self.name = name
        self._log = cleanup.create_remembered(
            lambda: tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed in close()
                prefix=f"{LOG_PREFIX}{os.getpid()}-{name.split()[0]}-", suffix=".log", delete=False
            ),
            lambda f: f.name,
        )
        self.log_path = Path(self._log.name)
        self._keep_log = False
        try:
            self._proc = subprocess.Popen(
                [interpreter or sys.executable, *argv],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, env=env,
                preexec_fn=limit, start_new_session=own_group,
            )
        except OSError as exc:
            self.close()
            raise ChildError(f"the {name} could not be started with {interpreter or sys.executable}: {exc.strerror}") from None
        cleanup.remember_process(self._proc)
        self._own_group = own_group
        self._pending = b""
        self.output_ended = False  # its stdout reached its end: the child has exited or is exiting

    @property
    def pid(self) -> int:
        return self._proc.pid

    def send(self, request: dict[str, Any]) -> bool:
        """Write one request line; False when the child is gone (``death`` says why)."""
        try:
            self._proc.stdin.write(json.dumps(request).encode() + b"\n")  # type: ignore[union-attr]
            self._proc.stdin.flush()  # type: ignore[union-attr]
            return True
        except (BrokenPipeError, OSError, ValueError):
            return False

    def read(self, timeout: float) -> dict[str, Any] | None:
        """The next answer, waiting at most ``timeout`` seconds; None when none came (the child hangs, or ended:
        ``poll`` tells which). A line that is not a JSON object is skipped."""
        deadline = time.monotonic() + timeout
        while True:
            line = self._line(max(0.0, deadline - time.monotonic()))
            if line is None:
                return None
            answer = _answer(line)
            if answer is not None:
                return answer

    def answers(self) -> Iterator[dict[str, Any]]:
        """Every answer until the child's stdout ends (for a reader thread); lines that are not JSON objects are
        skipped (a library printed before the child took over its streams)."""
        while (line := self._line(None)) is not None:
            answer = _answer(line)
            if answer is not None:
                yield answer

    def _line(self, timeout: float | None) -> bytes | None:
        """The next line of the child's stdout; None at its end, or when ``timeout`` seconds pass first. Read from
        the file descriptor into our own buffer: a buffered reader would hold lines that ``select`` cannot see."""
        fd = self._proc.stdout.fileno()  # type: ignore[union-attr]
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self._pending:
            if deadline is not None:
                with selectors.DefaultSelector() as sel:
                    sel.register(fd, selectors.EVENT_READ)
                    if not sel.select(max(0.0, deadline - time.monotonic())):
                        return None
            chunk = os.read(fd, 65536)
            if not chunk:
                self.output_ended = True
                rest, self._pending = self._pending, b""
                return rest or None
            self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        return line

    def poll(self) -> int | None:
        return self._proc.poll()

    def wait(self, timeout: float | None = None) -> int:
        return self._proc.wait(timeout=timeout)

    def last_log_line(self) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            text = ""
        lines = [ln for ln in text.splitlines() if ln.strip()]
        return (lines or ["no output"])[-1][:300]

    def ended_how(self) -> str:
        """``exit 3``, ``exit -11, SIGSEGV`` (a signal), or ``still running``."""
        code = self._proc.poll()
        if code is None:
            return "still running"
        if code < 0 and -code in {s.value for s in signal.Signals}:
            return f"exit {code}, {signal.Signals(-code).name}"
        return f"exit {code}"

    def death(self, what: str) -> str:
        """``WHAT died (exit -9, SIGKILL): LAST LOG LINE; its log: PATH``: a dead child as one line of an error (the
        log is kept)."""
        log = self.keep_log(what.split()[0] if what else "child")
        return f"{what} died ({self.ended_how()}): {self.last_log_line()}; its log: {log}"

    def keep_log(self, tag: str) -> Path:
        """Keep the log when the child closes (it is named in an error), under a name the next run's sweep of
        dead children's logs leaves alone."""
        if not self._keep_log:
            kept = self.log_path.with_name(f"edgecnn-kept-log-{tag}-{self.log_path.name[len(LOG_PREFIX):]}")
            try:
                os.replace(self.log_path, kept)
                cleanup.forget(self.log_path)
                self.log_path = kept
            except OSError:
                pass
        self._keep_log = True
        return self.log_path

    def kill(self) -> None:
        """Kill it (its whole process group when it has one: a runtime may have forked) and reap it."""
        if self._proc.poll() is None or self._own_group:
            try:
                if self._own_group:
                    os.killpg(self._proc.pid, signal.SIGKILL)
                else:
                    self._proc.kill()
            except (ProcessLookupError, PermissionError):
                pass
        self._proc.wait()

    def close(self, *, grace: float = 0.0) -> None:
        """End the child (stdin closed first; killed after ``grace`` seconds) and remove its log unless kept."""
        proc = getattr(self, "_proc", None)
        if proc is not None:
            try:
                proc.stdin.close()  # type: ignore[union-attr]
            except OSError:
                pass
            if grace:
                try:
                    proc.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    pass
            self.kill()
            cleanup.forget_process(proc)
            # stdout is left to a reader thread, which ends at EOF (closing it here would wait on that thread's read)
        self._log.close()
        if not self._keep_log:
            self.log_path.unlink(missing_ok=True)  # then forgotten: a stop in between still removes it
        cleanup.forget(self.log_path)


def _answer(line: bytes) -> dict[str, Any] | None:
    try:
        answer = json.loads(line)
    except ValueError:
        return None
    return answer if isinstance(answer, dict) else None


# -- the child's side ---------------------------------------------------------------------------------------------------


def serve(
    handle: Callable[[dict[str, Any]], dict[str, Any]], *, prepare: Callable[[], None] | None = None, ready: bool = False
) -> int:
    """Answer every request line on stdin with ``handle(request)`` until stdin closes. ``prepare`` runs once the
    streams are taken (imports whose libraries print); ``ready``: then answer ``{"ready": true}`` first (a parent
    that waits for those imports before it starts timing requests).

    Requests and answers travel on private copies of fds 0 and 1; the standard streams become /dev/null and the log.
    (OpenVINO's telemetry forks the process from a thread while the main thread waits on the requests: a fork that
    inherited sys.stdin locked by that wait hung in multiprocessing's stdin close, and a fork that inherited the
    answers' pipe kept the parent from ever seeing the child end. Forked children close both.)"""
    requests, answers = take_streams()
    if prepare is not None:
        prepare()
    if ready:
        answers.write('{"ready": true}\n')
        answers.flush()
    for line in requests:
        answers.write(json.dumps(handle(json.loads(line))) + "\n")
        answers.flush()
    return 0


def take_streams() -> tuple[Any, Any]:
    """(requests, answers): private copies of stdin and stdout; fd 0 becomes /dev/null and fd 1 the log (stderr),
    so that whatever a library prints never reaches the answers. Call it before importing such libraries."""
    requests, answers = os.fdopen(os.dup(0), "r"), os.fdopen(os.dup(1), "w")
    null = os.open(os.devnull, os.O_RDWR)
    # (pointed at /dev/null rather than closed, so that the numbers are never reused for another file)
    if hasattr(os, "register_at_fork"):  # POSIX (Windows has no fork)
        os.register_at_fork(after_in_child=lambda: [os.dup2(null, f) for f in (requests.fileno(), answers.fileno())])
    os.dup2(null, 0)
    os.dup2(2, 1)
    sys.stdin, sys.stdout = open(os.devnull), sys.stderr  # noqa: SIM115
    return requests, answers
