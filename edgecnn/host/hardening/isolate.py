"""Open and run a model file in a child process with a memory limit and a time limit.

The native runtimes do not promise that a malformed file is safe: one may abort, segfault, allocate without
bound or spin. In a child process (``edgecnn.childproc``: JSON lines, the conversion workers' protocol too) each of
those becomes a `ProbeResult` for the parent (a clear error), never a dead parent. The child stays up between files
(imports cost seconds); it is replaced after a crash or a hang.

    with IsolatedRunner(timeout=10, memory_mb=4096) as runner:
        result = runner.probe("model.tflite")   # outcome: ran | refused | uncaught | crashed | hung
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.childproc import Child, serve
from edgecnn.errors import EdgeCNNError, ModelError

KERAS = "keras"  # a .keras file: loaded by Keras itself (the probe is a host tool)


def runtime_for_file(path: Path) -> str | None:
    """The runtime a model file is opened with: its format's (``formats.runtime_for``), or Keras itself for a
    .keras file (the probe is a host tool); None for a file no runtime reads (sniffing it says what it is)."""
    from edgecnn.errors import ModelError
    from edgecnn.formats import runtime_for

    if path.suffix.lower() == ".keras":
        return KERAS
    try:
        return runtime_for(path)
    except ModelError:
        return None


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
    """Child side: one JSON request per line, one JSON answer per line (``edgecnn.childproc.serve``)."""

    def prepare() -> None:
        for name in filter(None, os.environ.get("EDGECNN_PROBE_PRELOAD", "").split(",")):
            try:
                __import__(name)
            except ImportError:
                pass

    serve(_probe_request, prepare=prepare, ready=True)


def _probe_request(req: dict[str, Any]) -> dict[str, Any]:
    t0 = time.perf_counter()
    try:
        outcome, detail = "ran", probe_in_process(req["path"], req.get("runtime"))
    except EdgeCNNError as exc:
        outcome, detail = "refused", exc.message
    except BaseException as exc:  # noqa: BLE001 - reporting exactly these is the point
        tb = traceback.extract_tb(exc.__traceback__)
        where = f" at {Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else ""
        outcome, detail = "uncaught", f"{type(exc).__module__}.{type(exc).__name__}{where}: {exc!s:.300}"
    return {"outcome": outcome, "detail": detail, "seconds": time.perf_counter() - t0}


class IsolatedRunner:
    """A child process that probes model files one at a time.

    Args:
        timeout: seconds a probe may take before the child is killed (reported as ``hung``).
        memory_mb: address-space limit of the child (RLIMIT_AS); an allocation beyond it fails in the child.
        preload: modules the child imports before it says it is ready (so imports do not count against ``timeout``).
    """

    def __init__(self, *, timeout: float = 10.0, memory_mb: int = 4096, preload: tuple[str, ...] = ()) -> None:
        self.timeout, self.memory_mb, self.preload = timeout, memory_mb, preload
        self._child: Child | None = None
        self.restarts = 0

    def _limit(self) -> None:  # runs in the child between fork and exec
        import resource

        limit = self.memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crash must not write gigabytes of core files

    def _start(self) -> Child:
        env = dict(os.environ, EDGECNN_PROBE_PRELOAD=",".join(self.preload), TF_CPP_MIN_LOG_LEVEL="3")
        env.setdefault("KERAS_BACKEND", "tensorflow")
        child = Child(["-c", "from edgecnn.host.hardening.isolate import _worker; _worker()"], name="probe process", env=env,
                      limit=self._limit, own_group=True)  # its own group: a kill reaches what the runtime forked too
        answer = child.read(max(120.0, self.timeout))
        if answer is None or not answer.get("ready"):
            tail = child.last_log_line()
            child.close()
            raise EdgeCNNError(f"the probe process did not start: {tail}")
        return child

    def probe(self, path: str | Path, runtime: str | None = None) -> ProbeResult:
        if self._child is None:
            self._child = self._start()
        child = self._child
        t0 = time.perf_counter()
        sent = child.send({"path": str(path), "runtime": runtime})
        answer = child.read(self.timeout) if sent else None
        if answer is not None:
            return ProbeResult(str(path), answer["outcome"], answer["detail"], answer["seconds"])
        seconds = time.perf_counter() - t0
        if not sent or child.output_ended:  # it died (a pipe closed): let it finish dying, or a crash reads as a hang
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(5)
        hung = child.poll() is None  # still alive after the timeout
        tail = child.last_log_line()
        child.kill()  # when it died, what it forked may not have
        how = child.ended_how()
        child.close()
        self._child = None
        self.restarts += 1
        if hung:
            return ProbeResult(str(path), "hung", f"no answer within {self.timeout:g} s; the child was killed", seconds)
        return ProbeResult(str(path), "crashed", f"the runtime crashed the child ({how}): {tail}", seconds)

    def close(self) -> None:
        if self._child is not None:
            self._child.close(grace=5)
            self._child = None

    def __enter__(self) -> IsolatedRunner:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def probe_isolated(path: str | Path, runtime: str | None = None, *, timeout: float = 30.0, memory_mb: int = 4096) -> ProbeResult:
    """One file, one child: the safe way to try a model of unknown origin."""
    with IsolatedRunner(timeout=timeout, memory_mb=memory_mb) as runner:
        return runner.probe(path, runtime)
