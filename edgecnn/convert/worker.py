"""One child process for the TensorFlow-side conversions that can run beside the rest: tf2onnx and TFLite int8.

Both need TensorFlow, both mostly run on one core, and the parent is busy meanwhile (Keras reference outputs,
TFLite fp32, OpenVINO, ONNX quantisation, parity). One child imports TensorFlow once for both (5-6 CPU-seconds each
time on 2 cores), starts importing it while the parent is still exporting the SavedModel, and runs the jobs in the
order they are submitted. Jobs are JSON lines on its stdin; each answer is a JSON line on its stdout; the child's
stderr (tf2onnx logs there) goes to a file whose last line is quoted if the child dies.

    python -m edgecnn.convert.worker      # reads jobs until stdin closes
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

from edgecnn.convert.base import die_with_parent
from edgecnn.errors import ConversionError


class Worker:
    """Parent side: submit jobs by name, ask whether one is still running, wait for its answer."""

    def __init__(self) -> None:
        self._log = tempfile.NamedTemporaryFile(prefix="edgecnn-worker-", suffix=".log", delete=False)  # noqa: SIM115
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "edgecnn.convert.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env=env,
            preexec_fn=die_with_parent,
        )
        self._answers: dict[str, dict[str, Any]] = {}
        self._submitted: set[str] = set()
        self._cond = threading.Condition()
        self._eof = False
        self._keep_log = False
        threading.Thread(target=self._read, name="edgecnn-worker-reader", daemon=True).start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
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
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(json.dumps({"name": name, "kind": kind, **params}) + "\n")
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # it died: result() reports why

    def submitted(self, name: str) -> bool:
        return name in self._submitted

    def running(self, name: str) -> bool:
        """Submitted and not answered yet (False once the child has died)."""
        with self._cond:
            return name in self._submitted and name not in self._answers and not self._eof

    def wait_for_answer(self, timeout: float = 3600) -> None:
        """Until one more job is answered (or the child has died)."""
        with self._cond:
            seen = len(self._answers)
            self._cond.wait_for(lambda: len(self._answers) > seen or self._eof, timeout=timeout)

    def result(self, name: str, timeout: float = 3600) -> dict[str, Any]:
        """The job's answer; ConversionError if it failed or the child died before answering."""
        with self._cond:
            done = self._cond.wait_for(lambda: name in self._answers or self._eof, timeout=timeout)
            answer = self._answers.get(name)
        if not done:
            raise ConversionError(f"{name}: the conversion process did not finish within {timeout / 60:.0f} minutes")
        if answer is None or not answer["ok"]:
            self._keep_log = True  # the full log is what a user needs to report this
            hint = f"the conversion process's full log: {self._log.name}"
            if answer is None:
                self._proc.wait(timeout=10)
                raise ConversionError(
                    f"{name}: the conversion process died (exit {self._proc.returncode}): {self.last_log_line()}", hint=hint
                )
            raise ConversionError(answer["error"], hint=answer.get("hint") or hint)
        return answer

    def last_log_line(self) -> str:
        try:
            text = Path(self._log.name).read_text(errors="replace")
        except OSError:
            text = ""
        lines = [ln for ln in text.splitlines() if ln.strip()]
        return (lines or ["no output"])[-1][:300]

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        for stream in (self._proc.stdin, self._proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        self._log.close()
        if not self._keep_log:
            Path(self._log.name).unlink(missing_ok=True)


def worker_for(source: Any) -> Worker:
    """The source model's worker, started on first use and stopped with the source."""
    if "worker" not in source.cache:
        source.cache["worker"] = Worker()
        source.on_cleanup(source.cache["worker"].close)
    return source.cache["worker"]


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


JOBS = {"tf2onnx": _tf2onnx, "tflite-int8": _tflite_int8}


def _main() -> int:
    import logging
    import traceback

    from edgecnn.errors import EdgeCNNError

    out = sys.stdout
    sys.stdout = sys.stderr  # whatever the libraries print goes to the log, not into the answers
    import tensorflow  # noqa: F401 - imported now, while the parent is still exporting the SavedModel

    logging.getLogger("tf2onnx").setLevel(logging.WARNING)
    for line in sys.stdin:
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
    sys.exit(_main())
