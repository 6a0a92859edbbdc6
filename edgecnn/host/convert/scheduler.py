"""Host side: background jobs in worker processes, one process per library they need. Knows nothing of formats.

A converter declares its background work as ``Job`` records: a name, the worker that runs it (named after the
library it loads: the converter registers the worker and its imports), the function to call (``module:function``,
looked up by the child), its parameters, the jobs it must wait for, and whether it needs the calibration samples.
The ``Scheduler`` starts each worker the first time a job needs it, so that the child imports its libraries while
the parent is still exporting the SavedModel, submits a job as soon as what it waits for is there, and answers
"is it done", "wait for any answer" and "give me its result" (a failed job is one ConversionError line, and its
worker's full log is kept and named). Jobs and answers are JSON lines (``edgecnn.childproc``, shared with the
model-file probe): a worker's stderr (and whatever the libraries print) goes to a log file.

    python -m edgecnn.host.convert.scheduler MODULE...      # a worker: imports MODULEs, then runs jobs until stdin closes
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgecnn import cleanup
from edgecnn.childproc import LOG_PREFIX, Child, ChildError, serve
from edgecnn.errors import ConversionError, first_line
from edgecnn.registry import Registry

WORKERS: Registry[tuple[str, ...]] = Registry("conversion worker")  # worker name -> the modules it imports first
__all__ = ["LOG_PREFIX", "WORKERS", "Job", "Scheduler", "Worker"]  # LOG_PREFIX: the sweep of dead workers' logs
# worker name -> a function giving the interpreter it runs on (a toolchain's own venv, edgecnn.host.toolchain); others
# run on sys.executable. Such a worker imports edgecnn from this checkout (PYTHONPATH), never the venv's packages.
INTERPRETERS: dict[str, Any] = {}


@dataclass(frozen=True)
class Job:
    """One piece of background work. ``params`` get ``calibration`` (the samples' .npy) when ``needs_calibration``."""

    name: str
    worker: str
    function: str  # "package.module:function"
    params: dict[str, Any] = field(default_factory=dict)
    after: tuple[str, ...] = ()
    needs_calibration: bool = False


def die_with_parent() -> None:
    """preexec_fn for conversion children: on Linux they get SIGKILL when edgecnn dies, instead of running on.

    (PR_SET_PDEATHSIG follows the thread that started the child: start them from a thread that outlives them.)"""
    import ctypes
    import signal

    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass


def _edgecnn_only() -> str:
    """A folder holding only a link to this edgecnn package: another interpreter's PYTHONPATH (the folder above
    edgecnn may be a site-packages of this environment, whose libraries must not shadow the toolchain's)."""
    folder = Path(tempfile.gettempdir()) / f"{LOG_PREFIX}{os.getpid()}-path"  # swept with a killed run's logs
    link = folder / "edgecnn"
    if not link.exists():
        cleanup.create_remembered(lambda: folder.mkdir(exist_ok=True), lambda _: folder)
        link.symlink_to(Path(__file__).resolve().parents[2], target_is_directory=True)  # edgecnn/host/convert/..
    return str(folder)


class Worker:
    """Parent side of one worker process: submit jobs by name, ask whether one is still running, read its answer.
    ``interpreter``: the Python it runs on (default this one; a toolchain in an environment of its own names its
    python there)."""

    def __init__(self, kind: str, cond: threading.Condition | None = None, *, interpreter: str | None = None) -> None:
        preload = WORKERS.get(kind)
        self.kind = kind
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
        interpreter = interpreter or (str(INTERPRETERS[kind]()) if kind in INTERPRETERS else None)
        if interpreter is not None:
            env["PYTHONPATH"] = _edgecnn_only()
        try:
            self._child = Child(["-m", "edgecnn.host.convert.scheduler", *preload], name=f"{kind} conversion worker",
                                interpreter=interpreter, env=env, limit=die_with_parent)
        except ChildError as exc:
            raise ConversionError(exc.message) from None
        self._answers: dict[str, dict[str, Any]] = {}
        self._submitted: set[str] = set()
        self._cond = cond or threading.Condition()  # shared by a scheduler's workers: wait_any() waits on all
        self._eof = False
        threading.Thread(target=self._read, name="edgecnn-worker-reader", daemon=True).start()

    @property
    def log_path(self) -> Path:
        return self._child.log_path

    def _read(self) -> None:
        for answer in self._child.answers():
            with self._cond:
                self._answers[str(answer.get("name"))] = answer
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def submit(self, job: Job, params: dict[str, Any]) -> None:
        if job.name in self._submitted:
            return
        self._submitted.add(job.name)
        self._child.send({"name": job.name, "function": job.function, "params": params})  # dead: result() says why

    def answered(self, name: str | None = None) -> int | bool:
        """How many jobs have been answered, or whether ``name`` has been (read under the shared condition)."""
        return len(self._answers) if name is None else name in self._answers

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
            if answer is None:
                self._child.wait(timeout=10)
                raise ConversionError(f"{name}: {self._child.death('the conversion process')}")
            hint = f"the conversion process's full log: {self._child.keep_log(name)}"
            raise ConversionError(answer["error"], hint=answer.get("hint") or hint)
        return answer

    def last_log_line(self) -> str:
        return self._child.last_log_line()

    def close(self) -> None:
        self._child.close()


class Scheduler:
    """The jobs of one conversion: workers started on first use, each job submitted once what it needs is there."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._workers: dict[str, Worker] = {}
        self._jobs: dict[str, Job] = {}
        self._failed: dict[str, str] = {}  # jobs never submitted because one they wait for failed
        self.calibration: Path | None = None

    def add(self, jobs: list[Job]) -> None:
        for job in jobs:
            self._jobs.setdefault(job.name, job)
            self.worker(job.worker)  # start it now: it imports its libraries meanwhile
        self.pump()

    def worker(self, kind: str) -> Worker:
        if kind not in self._workers:
            self._workers[kind] = Worker(kind, self._cond)
        return self._workers[kind]

    def pump(self) -> None:
        """Submit every job whose dependencies have answered (and whose calibration samples exist)."""
        for job in self._jobs.values():
            w = self.worker(job.worker)
            if w.submitted(job.name) or job.name in self._failed:
                continue
            if job.needs_calibration and self.calibration is None:
                continue
            deps = [self._jobs[d] for d in job.after if d in self._jobs]
            if any(not self.worker(d.worker).answered(d.name) for d in deps):
                continue
            bad = next((d.name for d in deps if not self._answer_ok(d)), None)
            if bad:
                self._failed[job.name] = bad
                continue
            params = job.params | ({"calibration": str(self.calibration)} if job.needs_calibration else {})
            w.submit(job, params)

    def _answer_ok(self, job: Job) -> bool:
        w = self.worker(job.worker)
        return bool(w._answers.get(job.name, {}).get("ok"))

    def has(self, name: str) -> bool:
        return name in self._jobs

    def busy(self, name: str) -> bool:
        """The job exists and has no answer yet (queued or running): what a converter waits on."""
        if name not in self._jobs or name in self._failed:
            return False
        w = self.worker(self._jobs[name].worker)
        return not w.answered(name) and not w.ended()

    def result(self, name: str) -> dict[str, Any]:
        """The job's answer (waiting for it); ConversionError when it, or a job it waited for, failed."""
        if name in self._failed:
            self.result(self._failed[name])  # raises the failure of the job it waited for
        job = self._jobs[name]
        while not self.worker(job.worker).submitted(name):
            self.wait_any()
            self.pump()
            if name in self._failed:
                return self.result(name)
        return self.worker(job.worker).result(name)

    def wait_any(self, timeout: float = 3600) -> None:
        """Until one more job of any worker is answered (or every worker has died)."""
        workers = list(self._workers.values())
        if not workers:
            return

        def answered() -> int:
            return sum(w.answered() for w in workers)

        with self._cond:
            seen = answered()
            self._cond.wait_for(lambda: answered() > seen or all(w.ended() for w in workers), timeout=timeout)

    def close(self) -> None:
        for w in self._workers.values():
            w.close()
        self._workers.clear()


def _main(preload: list[str]) -> int:
    import importlib
    import logging

    def prepare() -> None:
        for module in preload:  # imported now, while the parent is still exporting the SavedModel
            importlib.import_module(module)
        logging.getLogger("tf2onnx").setLevel(logging.WARNING)

    return serve(_run_job, prepare=prepare)


def _run_job(job: dict[str, Any]) -> dict[str, Any]:
    """One job in the worker: its function's answer, or its failure as one line (the traceback to the log)."""
    import importlib
    import traceback

    from edgecnn.errors import EdgeCNNError

    module, _, function = job["function"].partition(":")
    try:
        return {"name": job["name"], "ok": True, **getattr(importlib.import_module(module), function)(**job["params"])}
    except EdgeCNNError as exc:
        traceback.print_exc()  # with the library's own message it was raised from
        return {"name": job["name"], "ok": False, "error": exc.message, "hint": exc.hint}
    except Exception as exc:  # noqa: BLE001 - reported to the parent as one line, the traceback to the log
        traceback.print_exc()
        return {"name": job["name"], "ok": False, "error": first_line(exc, 300, with_type=True)}


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
