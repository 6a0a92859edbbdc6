"""Host side: background jobs in worker processes, one process per library they need. Knows nothing of formats.

A converter declares its background work as ``Job`` records: a name, the worker that runs it (named after the
library it loads: the converter registers the worker and its imports), the function to call (``module:function``,
looked up by the child), its parameters, the jobs it must wait for, and whether it needs the calibration samples.
The ``Scheduler`` starts each worker the first time a job needs it, so that the child imports its libraries while
the parent is still exporting the SavedModel, submits a job as soon as what it waits for is there, and answers
"is it done", "wait for any answer" and "give me its result" (a failed job is one ConversionError line, and its
worker's full log is kept and named). Jobs are JSON lines on a worker's stdin; answers are JSON lines on its stdout;
its stderr (and whatever the libraries print) goes to a log file.

    python -m edgecnn.convert.scheduler MODULE...      # a worker: imports MODULEs, then runs jobs until stdin closes
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgecnn import cleanup
from edgecnn.errors import ConversionError, first_line
from edgecnn.registry import Registry

WORKERS: Registry[tuple[str, ...]] = Registry("conversion worker")  # worker name -> the modules it imports first
# worker name -> a function giving the interpreter it runs on (a toolchain's own venv, edgecnn.toolchain); others
# run on sys.executable. Such a worker imports edgecnn from this checkout (PYTHONPATH), never the venv's packages.
INTERPRETERS: dict[str, Any] = {}
LOG_PREFIX = "edgecnn-worker-"  # + pid: a killed conversion's worker logs are removed by the next one


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
        folder.mkdir(exist_ok=True)
        link.symlink_to(Path(__file__).resolve().parents[1], target_is_directory=True)
        cleanup.remember(folder)
    return str(folder)


class Worker:
    """Parent side of one worker process: submit jobs by name, ask whether one is still running, read its answer."""

    def __init__(self, kind: str, cond: threading.Condition | None = None) -> None:
        preload = WORKERS.get(kind)
        self.kind = kind
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed in close()
            prefix=f"{LOG_PREFIX}{os.getpid()}-{kind}-", suffix=".log", delete=False
        )
        self.log_path = Path(self._log.name)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
        python = sys.executable
        if kind in INTERPRETERS:
            python = str(INTERPRETERS[kind]())
            env["PYTHONPATH"] = _edgecnn_only()
        self._proc = subprocess.Popen(
            [python, "-m", "edgecnn.convert.scheduler", *preload],
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
        self._cond = cond or threading.Condition()  # shared by a scheduler's workers: wait_any() waits on all
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

    def submit(self, job: Job, params: dict[str, Any]) -> None:
        if job.name in self._submitted:
            return
        self._submitted.add(job.name)
        try:
            self._jobs.write(json.dumps({"name": job.name, "function": job.function, "params": params}) + "\n")
            self._jobs.flush()
        except (BrokenPipeError, OSError):
            pass  # it died: result() reports why

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
            self._keep(name)
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

    def _keep(self, job: str) -> None:
        """Keep the log for the user (named in the error), out of the next run's sweep of dead workers' logs."""
        if not self._keep_log:
            kept = self.log_path.with_name(f"edgecnn-kept-log-{job}-{self.log_path.name[len(LOG_PREFIX) :]}")
            try:
                os.replace(self.log_path, kept)
                cleanup.forget(self.log_path)
                self.log_path = kept
            except OSError:
                pass
        self._keep_log = True


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
    for module in preload:  # imported now, while the parent is still exporting the SavedModel
        importlib.import_module(module)
    logging.getLogger("tf2onnx").setLevel(logging.WARNING)
    for line in jobs:
        job = json.loads(line)
        module, _, function = job["function"].partition(":")
        try:
            answer = {"name": job["name"], "ok": True, **getattr(importlib.import_module(module), function)(**job["params"])}
        except EdgeCNNError as exc:
            traceback.print_exc()  # with the library's own message it was raised from
            answer = {"name": job["name"], "ok": False, "error": exc.message, "hint": exc.hint}
        except Exception as exc:  # noqa: BLE001 - reported to the parent as one line, the traceback to the log
            traceback.print_exc()
            answer = {"name": job["name"], "ok": False, "error": first_line(exc, 300, with_type=True)}
        out.write(json.dumps(answer) + "\n")
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
