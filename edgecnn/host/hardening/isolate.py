"""Open and run a model file in a child process with a memory limit and a time limit.

The native runtimes do not promise that a malformed file is safe: one may abort, segfault, allocate without
bound or spin. In a child process each of those becomes a `ProbeResult` for the parent (a clear error), never a
dead parent. The child stays up between files (imports cost seconds); it is replaced after a crash or a hang.

    with IsolatedRunner(timeout=10, memory_mb=4096) as runner:
        result = runner.probe("model.tflite")   # outcome: ran | refused | uncaught | crashed | hung
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
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.errors import EdgeCNNError, ModelError

KERAS = "keras"  # a .keras file: loaded by Keras itself (the probe is a host tool)


def runtime_for_file(path: Path) -> str | None:
    """The runtime a model file is opened with: its format's, or Keras for a .keras file."""
    from edgecnn.formats import format_for_suffix

    if path.suffix.lower() == ".keras":
        return KERAS
    info = format_for_suffix(path.suffix)
    return info.runtime if info else None


OUTCOMES = ("ran", "refused", "uncaught", "crashed", "hung")


@dataclass(frozen=True)
class ProbeResult:
    """What happened to one file. ``refused`` is an EdgeCNNError (the wanted answer for a broken file);
    ``uncaught`` is any other exception type (a bug to fix); ``crashed``/``hung`` are the child's death or a kill."""

    path: str
    outcome: str
    detail: str
    seconds: float


def probe_in_process(path: str | Path, runtime: str | None = None) -> str:
    """Sniff ``path``, open it with the runtime the device would use, run one zero input; describe the output.

    Raises EdgeCNNError for anything edgecnn recognises as wrong. This is what the child runs."""
    from edgecnn.formats import sniff_model_file

    path = Path(path)
    sniff_model_file(path)
    runtime = runtime or runtime_for_file(path)
    if runtime == KERAS:
        from edgecnn.host.models.io import load_keras_model

        model = load_keras_model(path)
        try:
            shape = tuple(int(d) if d else 1 for d in model.inputs[0].shape)
            y = np.asarray(model(np.zeros(shape, np.float32), training=False))
        except Exception as exc:  # noqa: BLE001 - whatever Keras raises on a hostile model becomes one ModelError
            raise ModelError(f"{path}: the Keras model failed on a {shape} input: {type(exc).__name__}: {exc!s:.200}") from None
    else:
        from edgecnn.runtime.base import open_backend

        backend = open_backend(runtime, path)
        try:
            shape = tuple(d if d > 0 else 1 for d in backend.input.shape)
            y = backend.run(np.zeros(shape, np.float32))
        finally:
            backend.close()
    return f"output {tuple(y.shape)} {y.dtype}, finite: {bool(np.isfinite(y).all())}"


def _worker() -> None:
    """Child side: one JSON request per line on stdin, one JSON answer per line on the protocol fd."""
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # native libraries that print to stdout must not corrupt the protocol
    preload = os.environ.get("EDGECNN_PROBE_PRELOAD", "")
    for name in filter(None, preload.split(",")):
        try:
            __import__(name)
        except ImportError:
            pass
    proto.write('{"ready": true}\n')
    for line in sys.stdin:
        req = json.loads(line)
        t0 = time.perf_counter()
        try:
            outcome, detail = "ran", probe_in_process(req["path"], req.get("runtime"))
        except EdgeCNNError as exc:
            outcome, detail = "refused", exc.message
        except BaseException as exc:  # noqa: BLE001 - reporting exactly these is the point
            tb = traceback.extract_tb(exc.__traceback__)
            where = f" at {Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else ""
            outcome, detail = "uncaught", f"{type(exc).__module__}.{type(exc).__name__}{where}: {exc!s:.300}"
        proto.write(json.dumps({"outcome": outcome, "detail": detail, "seconds": time.perf_counter() - t0}) + "\n")


class IsolatedRunner:
    """A child process that probes model files one at a time.

    Args:
        timeout: seconds a probe may take before the child is killed (reported as ``hung``).
        memory_mb: address-space limit of the child (RLIMIT_AS); an allocation beyond it fails in the child.
        preload: modules the child imports before it says it is ready (so imports do not count against ``timeout``).
    """

    def __init__(self, *, timeout: float = 10.0, memory_mb: int = 4096, preload: tuple[str, ...] = ()) -> None:
        self.timeout, self.memory_mb, self.preload = timeout, memory_mb, preload
        self._proc: subprocess.Popen | None = None
        self._stderr = tempfile.TemporaryFile()
        self.restarts = 0

    def _limit(self) -> None:  # runs in the child between fork and exec
        import resource

        limit = self.memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crash must not write gigabytes of core files

    def _start(self) -> None:
        env = dict(os.environ, EDGECNN_PROBE_PRELOAD=",".join(self.preload), TF_CPP_MIN_LOG_LEVEL="3")
        env.setdefault("KERAS_BACKEND", "tensorflow")
        self._stderr.seek(0)
        self._stderr.truncate()
        self._proc = subprocess.Popen(
            [sys.executable, "-c", "from edgecnn.host.hardening.isolate import _worker; _worker()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env=env,
            preexec_fn=self._limit,
            start_new_session=True,  # its own process group: a kill reaches what the runtime forked too
        )
        answer = self._answer(max(120.0, self.timeout))
        if answer is None or not answer.get("ready"):
            self._kill()
            raise EdgeCNNError(f"the probe process did not start: {self._stderr_tail()}")

    def _child(self) -> subprocess.Popen:
        if self._proc is None or self._proc.stdin is None or self._proc.stdout is None:
            raise EdgeCNNError("the probe process is not running (closed, or it failed to start)")
        return self._proc

    def _answer(self, timeout: float) -> dict | None:
        stdout = self._child().stdout
        with selectors.DefaultSelector() as sel:
            sel.register(stdout, selectors.EVENT_READ)
            if not sel.select(timeout):
                return None
        line = stdout.readline()
        return json.loads(line) if line else None

    def _stderr_tail(self) -> str:
        self._stderr.seek(0)
        lines = [ln for ln in self._stderr.read().decode(errors="replace").splitlines() if ln.strip()]
        return lines[-1][:200] if lines else "no message"

    def _kill(self) -> None:
        """Kill the child's whole process group: a runtime may have forked (OpenVINO's telemetry does), and a fork
        left behind in a futex wait outlives the test run."""
        if self._proc is not None:
            try:
                os.killpg(self._proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._proc.wait()
            self._proc = None

    def probe(self, path: str | Path, runtime: str | None = None) -> ProbeResult:
        if self._proc is None:
            self._start()
        stdin = self._child().stdin
        t0 = time.perf_counter()
        try:
            stdin.write(json.dumps({"path": str(path), "runtime": runtime}) + "\n")
            stdin.flush()
            answer = self._answer(self.timeout)
        except (BrokenPipeError, ValueError):
            answer = None
        if answer is not None:
            return ProbeResult(str(path), answer["outcome"], answer["detail"], answer["seconds"])
        seconds = time.perf_counter() - t0
        code = self._proc.poll()
        if code is None:  # still alive after the timeout
            self._kill()
            self.restarts += 1
            return ProbeResult(str(path), "hung", f"no answer within {self.timeout:g} s; the child was killed", seconds)
        tail = self._stderr_tail()
        self._kill()  # it is dead; what it forked may not be
        self.restarts += 1
        what = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
        return ProbeResult(str(path), "crashed", f"the runtime crashed the child ({what}): {tail}", seconds)

    def close(self) -> None:
        if self._proc is not None:
            try:
                self._proc.stdin.close()  # type: ignore[union-attr]
                self._proc.wait(timeout=5)
            except (subprocess.TimeoutExpired, OSError):
                pass
            self._kill()
        self._stderr.close()

    def __enter__(self) -> IsolatedRunner:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def probe_isolated(path: str | Path, runtime: str | None = None, *, timeout: float = 30.0, memory_mb: int = 4096) -> ProbeResult:
    """One file, one child: the safe way to try a model of unknown origin."""
    with IsolatedRunner(timeout=timeout, memory_mb=memory_mb) as runner:
        return runner.probe(path, runtime)
