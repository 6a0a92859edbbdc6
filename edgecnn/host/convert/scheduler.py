"""Host side: background jobs in worker processes, one process per library they need. Knows nothing of formats.

A converter declares its background work as ``Job`` records: a name, the worker that runs it (named after the
library it loads: the converter registers the worker and its imports), the function to call (``module:function``,
looked up by the child), its parameters, the jobs it must wait for, and whether it needs the calibration samples.
The ``Scheduler`` starts each worker the first time a job needs it, so that the child imports its libraries while
the parent is still exporting the SavedModel, submits a job as soon as what it waits for is there, and answers
"is it done", "wait for any answer" and "give me its result" (a failed job is one ConversionError line, and its
worker's full log is kept and named). Jobs and answers are JSON lines (``edgecnn.childproc``, shared with the
model-file probe): a worker's stderr (and whatever the libraries print) goes to a log file.

A worker whose conversion ended well is kept for the next conversion in this process (``POOL``: ``benchmark``'s
conversions, a script converting several models), so that it does not import TensorFlow (about 6 CPU-seconds),
ONNX Runtime or OpenVINO again. Only a worker in exactly the same environment is reused (interpreter, environment
variables, working folder), after it ran the ``BETWEEN`` hooks (each module's per-conversion caches); one whose job
failed, or that is busy, is closed instead. Idle workers end after ``EDGECNN_WORKER_IDLE_S`` seconds (default 120;
0: never reuse), after 20 conversions, and with this process.

    python -m edgecnn.host.convert.scheduler MODULE...      # a worker: imports MODULEs, then runs jobs until stdin closes
"""

from __future__ import annotations

import atexit
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgecnn import cleanup
from edgecnn.childproc import LOG_PREFIX, Child, ChildError, serve
from edgecnn.errors import ConversionError, first_line
from edgecnn.registry import Registry

WORKERS: Registry[tuple[str, ...]] = Registry("conversion worker")  # worker name -> the modules it imports first
__all__ = ["BETWEEN", "LOG_PREFIX", "POOL", "WORKERS", "Job", "Scheduler", "Worker"]  # LOG_PREFIX: the sweep of dead workers' logs
# worker name -> a function giving the interpreter it runs on (a toolchain's own venv, edgecnn.host.toolchain); others
# run on sys.executable. Such a worker imports edgecnn from this checkout (PYTHONPATH), never the venv's packages.
INTERPRETERS: dict[str, Any] = {}
# in a worker: what to forget before its next conversion (a module's cache of converted models): registered by the
# modules whose jobs keep such state, run by the ``between_conversions`` job the pool sends to a worker it keeps
BETWEEN: list[Callable[[], None]] = []
MAX_CONVERSIONS = 20  # a kept worker is retired after this many conversions (libraries' caches, memory)


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

    def __init__(
        self,
        kind: str,
        cond: threading.Condition | None = None,
        *,
        interpreter: str | None = None,
        spec: tuple[str | None, dict[str, str]] | None = None,
    ) -> None:
        preload = WORKERS.get(kind)
        self.kind = kind
        interpreter, env = spec or spawn_spec(kind, interpreter)
        self.key = _pool_key(kind, interpreter, env)
        self.conversions = 1
        self.failed = False  # a job failed or the child died: never kept for another conversion
        self._creator = threading.current_thread()
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

    @property
    def pid(self) -> int:
        return self._child.pid

    def idle(self) -> bool:
        """Alive, every job it was given answered, none failed (whether or not anyone asked for the result)."""
        with self._cond:
            done = all(self._answers.get(n, {}).get("ok") for n in self._submitted)
        return done and not self.failed and not self._eof and self._child.poll() is None

    def keepable(self) -> bool:
        """Whether another conversion may use it: idle, started by a thread that outlives it (the parent-death signal
        follows the thread that started the child: only the main thread's workers are kept), not worn out."""
        return self.idle() and self._creator is threading.main_thread() and self.conversions < MAX_CONVERSIONS

    def forgotten(self, timeout: float) -> bool:
        """Whether the between-conversions job the pool sent answered well (waiting at most ``timeout`` s) and the
        worker is idle: unlike ``result``, a failure keeps no log (nobody would be told of it)."""
        with self._cond:
            self._cond.wait_for(lambda: BETWEEN_JOB in self._answers or self._eof, timeout=timeout)
        return self.idle()

    def rebind(self, cond: threading.Condition) -> None:
        """Hand a kept worker to another conversion: its answers start afresh, under that scheduler's condition."""
        with self._cond:
            self._answers, self._submitted = {}, set()
        self._cond = cond
        self.conversions += 1

    def _read(self) -> None:
        for answer in self._child.answers():
            cond = self._cond  # one object for the lock and the notification (``rebind`` may swap the attribute)
            with cond:
                self._answers[str(answer.get("name"))] = answer
                cond.notify_all()
        cond = self._cond
        with cond:
            self._eof = True
            cond.notify_all()

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
            self.failed = True
            raise ConversionError(f"{name}: the conversion process did not finish within {timeout / 60:.0f} minutes")
        if answer is None or not answer["ok"]:
            self.failed = True
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
            WORKERS.get(kind)  # an unknown kind is named before anything starts
            spec = spawn_spec(kind)
            kept = POOL.take(kind, spec)
            if kept is not None:
                kept.rebind(self._cond)
            self._workers[kind] = kept or Worker(kind, self._cond, spec=spec)
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
        ok = bool(w._answers.get(job.name, {}).get("ok"))
        w.failed |= not ok
        return ok

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
        """Keep each worker that finished cleanly for the next conversion (``POOL``); close the others."""
        for w in self._workers.values():
            if not POOL.put(w):
                w.close()
        self._workers.clear()


def spawn_spec(kind: str, interpreter: str | None = None) -> tuple[str | None, dict[str, str]]:
    """(interpreter, environment) a worker of ``kind`` starts with: this Python or its toolchain's, this process's
    environment with TensorFlow's logging quiet (and, on another interpreter, a path holding only edgecnn)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
    interpreter = interpreter or (str(INTERPRETERS[kind]()) if kind in INTERPRETERS else None)
    if interpreter is not None:
        env["PYTHONPATH"] = _edgecnn_only()
    return interpreter, env


# variables that say where the caller is, not how a worker behaves: they differ between conversions without meaning
# anything to the libraries a worker runs (pytest names the test it is in)
_BOOKKEEPING = frozenset({"PYTEST_CURRENT_TEST"})


def _pool_key(kind: str, interpreter: str | None, env: dict[str, str]) -> tuple[Any, ...] | None:
    """What must be the same for a kept worker to serve a conversion: what a new one would be started with. None
    (never kept, never reused) when the working folder is gone: a worker started there cannot be matched."""
    env_key = tuple(sorted((k, v) for k, v in env.items() if k not in _BOOKKEEPING))
    try:
        cwd = os.getcwd()
    except OSError:
        return None
    return kind, interpreter or sys.executable, env_key, cwd


BETWEEN_JOB = "edgecnn-between-conversions"


class _Pool:
    """Workers kept between the conversions of this process, by what they were started with (``Worker.key``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: list[tuple[Worker, float]] = []  # (worker, since when it waits)
        self._reaper: threading.Thread | None = None

    @staticmethod
    def idle_seconds() -> float:
        try:
            return max(0.0, float(os.environ.get("EDGECNN_WORKER_IDLE_S", "120")))
        except ValueError:
            return 120.0

    def put(self, worker: Worker) -> bool:
        """Keep ``worker`` if it can serve another conversion (it starts forgetting this one's caches now); False:
        the caller closes it."""
        if self.idle_seconds() == 0 or worker.key is None or not worker.keepable():
            return False
        worker.submit(Job(BETWEEN_JOB, worker.kind, f"{__name__}:between_conversions"), {})
        with self._lock:  # one kept worker a kind, the newest: a TensorFlow worker holds about 700 MB
            replaced = [w for w, _ in self._idle if w.kind == worker.kind]
            self._idle = [(w, t) for w, t in self._idle if w.kind != worker.kind] + [(worker, time.monotonic())]
            if self._reaper is None:
                self._reaper = threading.Thread(target=self._reap, name="edgecnn-worker-pool", daemon=True)
                self._reaper.start()
        for w in replaced:
            w.close()
        return True

    def take(self, kind: str, spec: tuple[str | None, dict[str, str]]) -> Worker | None:
        """A kept worker of ``kind`` started exactly as a new one with ``spec`` would be, its last conversion
        forgotten; or None (one that died meanwhile, or whose forgetting failed, is closed: its log goes with it)."""
        key = _pool_key(kind, *spec)
        if key is None:
            return None
        with self._lock:
            found = next((w for w, _ in self._idle if w.key == key), None)
            if found is None:
                return None
            self._idle = [(w, t) for w, t in self._idle if w is not found]
        if not found.forgotten(timeout=30):
            found.close()
            return None
        return found

    def pids(self, kind: str | None = None) -> set[int]:
        """The kept workers' process ids (of ``kind`` only, when given): what a check for stray children allows."""
        with self._lock:
            return {w.pid for w, _ in self._idle if kind in (None, w.kind)}

    def _reap(self) -> None:
        while True:
            time.sleep(min(5.0, max(0.5, self.idle_seconds() / 4)))
            now, limit = time.monotonic(), self.idle_seconds()
            with self._lock:
                old = [w for w, t in self._idle if now - t >= limit or w.ended()]
                self._idle = [(w, t) for w, t in self._idle if w not in old]
            for w in old:
                w.close()

    def close_all(self, kind: str | None = None) -> None:
        """End the kept workers (of ``kind`` only, when given)."""
        with self._lock:
            idle = [w for w, _ in self._idle if kind in (None, w.kind)]
            self._idle = [(w, t) for w, t in self._idle if w not in idle]
        for w in idle:
            w.close()


POOL = _Pool()
atexit.register(POOL.close_all)


def between_conversions() -> dict[str, Any]:
    """In a kept worker, before its next conversion: each module's ``BETWEEN`` hook, then a garbage collection."""
    import gc

    for forget in BETWEEN:
        forget()
    gc.collect()
    return {}


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
