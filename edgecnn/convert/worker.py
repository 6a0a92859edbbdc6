"""Child processes for the conversions that can run beside the rest, one per kind of library they need.

- ``tensorflow``: tf2onnx and TFLite int8. Both need TensorFlow and mostly run on one core; one child imports
  TensorFlow once for both (5-6 CPU-seconds each time on 2 cores).
- ``onnxruntime``: ONNX int8 (calibration, two quantised candidates, the choice between them), once tf2onnx is done.
- ``openvino``: OpenVINO IR, fp32/fp16 and NNCF int8. Its child imports no TensorFlow: OpenVINO's and NNCF's
  telemetry fork the process for every event they send, and forking a process that holds TensorFlow cost 3.5
  CPU-seconds of children per ``convert_model`` here (1.1 without TensorFlow).

The parent meanwhile computes the Keras reference outputs, converts TFLite fp32 and checks parity.
Each worker starts importing its libraries while the parent is still exporting the SavedModel and runs its jobs in
the order they are submitted. Jobs are JSON lines on its stdin; each answer is a JSON line on its stdout; the child's
stderr (and whatever the libraries print) goes to a log file, kept and named in the error when a job fails.

    python -m edgecnn.convert.worker tensorflow|onnxruntime|openvino      # reads jobs until stdin closes
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from edgecnn import cleanup
from edgecnn.convert.base import die_with_parent
from edgecnn.errors import ConversionError

LOG_PREFIX = "edgecnn-worker-"  # + pid: a killed conversion's worker logs are removed by the next one


def kind_of(job: str) -> str:
    return job.split("-")[0] if job else "job"


class Worker:
    """Parent side: submit jobs by name, ask whether one is still running, wait for its answer."""

    def __init__(self, kind: str = "tensorflow", cond: threading.Condition | None = None) -> None:
        if kind not in PRELOAD:
            raise ValueError(f"unknown worker kind {kind!r}")
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115
            prefix=f"{LOG_PREFIX}{os.getpid()}-{kind}-", suffix=".log", delete=False
        )
        self.log_path = Path(self._log.name)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "edgecnn.convert.worker", kind],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env=env,
            preexec_fn=die_with_parent,
        )
        cleanup.remember_process(self._proc)
        cleanup.remember(self.log_path)
        if self._proc.stdin is None or self._proc.stdout is None:  # Popen gives both for PIPE; never seen otherwise
            self._proc.kill()
            raise ConversionError(f"the {kind} conversion worker started without its job and answer pipes")
        self._jobs, self._replies = self._proc.stdin, self._proc.stdout
        self._answers: dict[str, dict[str, Any]] = {}
        self._submitted: set[str] = set()
        self._cond = cond or threading.Condition()  # shared by a source's workers: wait_for_any() waits on all
        self._eof = False
        self._keep_log = False
        threading.Thread(target=self._read, name="edgecnn-worker-reader", daemon=True).start()

    def _read(self) -> None:
        for line in self._replies:
            try:
                answer = json.loads(line)
            except ValueError:
                continue  # a library printed to stdout: not one of ours
            with self._cond:
                self._answers[answer["name"]] = answer
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def submit(self, name: str, kind: str, **params: Any) -> None:
        if name in self._submitted:
            return
        self._submitted.add(name)
        try:
            self._jobs.write(json.dumps({"name": name, "kind": kind, **params}) + "\n")
            self._jobs.flush()
        except (BrokenPipeError, OSError):
            pass  # it died: result() reports why

    def answered(self) -> int:
        """How many jobs have been answered (read under the shared condition)."""
        return len(self._answers)

    def ended(self) -> bool:
        """Whether the child's answers have ended (it exited or died)."""
        return self._eof

    def submitted(self, name: str) -> bool:
        return name in self._submitted

    def running(self, name: str) -> bool:
        """Submitted and not answered yet (False once the child has died)."""
        with self._cond:
            return name in self._submitted and name not in self._answers and not self._eof

    def result(self, name: str, timeout: float = 3600) -> dict[str, Any]:
        """The job's answer; ConversionError if it failed or the child died before answering."""
        with self._cond:
            done = self._cond.wait_for(lambda: name in self._answers or self._eof, timeout=timeout)
            answer = self._answers.get(name)
        if not done:
            raise ConversionError(f"{name}: the conversion process did not finish within {timeout / 60:.0f} minutes")
        if answer is None or not answer["ok"]:
            self._keep(kind_of(name))
            hint = f"the conversion process's full log: {self.log_path}"
            if answer is None:
                self._proc.wait(timeout=10)
                raise ConversionError(
                    f"{name}: the conversion process died (exit {self._proc.returncode}): {self.last_log_line()}", hint=hint
                )
            raise ConversionError(answer["error"], hint=answer.get("hint") or hint)
        return answer

    def last_log_line(self) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            text = ""
        lines = [ln for ln in text.splitlines() if ln.strip()]
        return (lines or ["no output"])[-1][:300]

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        cleanup.forget_process(self._proc)
        cleanup.forget(self.log_path)
        try:
            self._jobs.close()
        except OSError:
            pass
        # stdout is left to the reader thread, which ends at EOF (closing it here would wait on that thread's read)
        self._log.close()
        if not self._keep_log:
            self.log_path.unlink(missing_ok=True)

    def _keep(self, what: str) -> None:
        """Keep the log for the user (named in the error), out of the next run's sweep of dead workers' logs."""
        if not self._keep_log:
            kept = self.log_path.with_name(f"edgecnn-kept-log-{what}-{self.log_path.name[len(LOG_PREFIX) :]}")
            try:
                os.replace(self.log_path, kept)
                cleanup.forget(self.log_path)
                self.log_path = kept
            except OSError:
                pass
        self._keep_log = True


def worker_for(source: Any, kind: str = "tensorflow") -> Worker:
    """The source model's worker of this kind, started on first use and stopped with the source."""
    key = f"worker-{kind}"
    if key not in source.cache:
        cond = source.cache.setdefault("workers-answered", threading.Condition())
        source.cache[key] = Worker(kind, cond)
        source.on_cleanup(source.cache[key].close)
    return source.cache[key]


def wait_for_any(source: Any, timeout: float = 3600) -> None:
    """Until one more job of any of the source's workers is answered (or every worker has died)."""
    workers = [w for k, w in source.cache.items() if k.startswith("worker-")]
    cond = source.cache.get("workers-answered")
    if not workers or cond is None:
        return

    def answered() -> int:
        return sum(w.answered() for w in workers)

    with cond:
        seen = answered()
        cond.wait_for(lambda: answered() > seen or all(w.ended() for w in workers), timeout=timeout)


def running(source: Any, kind: str, job: str) -> bool:
    """Whether the source's worker of this kind is still on ``job`` (False when there is no such worker)."""
    worker = source.cache.get(f"worker-{kind}")
    return worker is not None and worker.running(job)


def calibration_file(source: Any, calibration: Any) -> Path:
    """The calibration samples saved once beside the SavedModel, for the workers to read."""
    path = source.workdir() / "calibration.npy"
    if source.cache.get("calibration_file") is not calibration:
        import numpy as np

        np.save(path, calibration.samples)
        source.cache["calibration_file"] = calibration
    return path


def _tf2onnx(argv: list[str]) -> dict[str, Any]:
    from tf2onnx import convert

    sys.argv = ["tf2onnx.convert", *argv]
    try:
        convert.main()
    except SystemExit as exc:  # its argument parser exits
        if exc.code:
            raise RuntimeError(f"tf2onnx exited with {exc.code}") from None
    return {}


def _tflite_int8(saved_model: str, calibration: str, out: str, io: str, weights: str) -> dict[str, Any]:
    import numpy as np

    from edgecnn.convert.base import Precision
    from edgecnn.convert.tflite import _convert_blob
    from edgecnn.data.calibration import CalibrationSet

    blob, version = _convert_blob(
        Path(saved_model), Precision.INT8, CalibrationSet(np.load(calibration), "calibration"), io, weights
    )
    Path(out).write_bytes(blob)
    return {"tools": {"tensorflow": version}}


def _openvino(**job: Any) -> dict[str, Any]:
    from edgecnn.convert.openvino import job_main

    return job_main(**job)


def _onnx_int8(**job: Any) -> dict[str, Any]:
    from edgecnn.convert.onnx import job_main

    return job_main(**job)


JOBS = {"tf2onnx": _tf2onnx, "tflite-int8": _tflite_int8, "openvino": _openvino, "onnx-int8": _onnx_int8}
PRELOAD = {
    "tensorflow": ("tensorflow",),
    "openvino": ("openvino", "nncf"),
    "onnxruntime": ("onnx", "onnxruntime", "onnxruntime.quantization"),
}


def _main(kind: str) -> int:
    import importlib
    import logging
    import traceback

    from edgecnn.errors import EdgeCNNError

    # Jobs and answers travel on private copies of fds 0 and 1; the standard streams become /dev/null and the log.
    # OpenVINO's telemetry forks this process (multiprocessing) from a thread while the main thread waits on the
    # jobs: a child that inherited sys.stdin locked by that wait hung in multiprocessing's stdin close, and a child
    # that inherited the answers' pipe kept the parent from ever seeing this worker end. Forked children close both.
    jobs, out = os.fdopen(os.dup(0), "r"), os.fdopen(os.dup(1), "w")
    null = os.open(os.devnull, os.O_RDWR)
    # (pointed at /dev/null rather than closed, so that the numbers are never reused for another file)
    if hasattr(os, "register_at_fork"):  # POSIX (Windows has no fork)
        os.register_at_fork(after_in_child=lambda: [os.dup2(null, f) for f in (jobs.fileno(), out.fileno())])
    os.dup2(null, 0)
    os.dup2(2, 1)  # whatever the libraries print goes to the log, not into the answers
    sys.stdin, sys.stdout = open(os.devnull), sys.stderr  # noqa: SIM115
    for module in PRELOAD[kind]:  # imported now, while the parent is still exporting the SavedModel
        importlib.import_module(module)
    logging.getLogger("tf2onnx").setLevel(logging.WARNING)
    for line in jobs:
        job = json.loads(line)
        name, kind = job.pop("name"), job.pop("kind")
        try:
            answer = {"name": name, "ok": True, **JOBS[kind](**job)}
        except EdgeCNNError as exc:
            traceback.print_exc()  # with the library's own message it was raised from
            answer = {"name": name, "ok": False, "error": exc.message, "hint": exc.hint}
        except Exception as exc:  # noqa: BLE001 - reported to the parent as one line, the traceback to the log
            traceback.print_exc()
            first = (str(exc).strip().splitlines() or [""])[0][:300]
            answer = {"name": name, "ok": False, "error": f"{type(exc).__name__}: {first}"}
        out.write(json.dumps(answer) + "\n")
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(_main(*sys.argv[1:2]))
