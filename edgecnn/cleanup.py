"""Device side: Ctrl-C and SIGTERM for the command line, and what a stopped command must undo.

The native libraries under ``convert`` and ``train`` (TensorFlow, OpenVINO, LiteRT) run threads of their own, and
two things went wrong when a signal was handled the usual way. The kernel delivers SIGTERM to any thread that does
not block it; on this AVX-512 machine a library thread's alternate signal stack is too small for the signal frame,
and the kernel killed the process with SIGSEGV instead (4 of 8 SIGTERMs during a conversion). And an exception
raised from a Python handler can land anywhere, inside a ``__del__`` where it is swallowed (the conversion then ran
to the end, exit 0). So the CLI blocks both signals in every thread (``watch_signals``, before any thread exists)
and one thread of its own takes them with ``sigwait``: no handler runs on anyone's stack. It then either sets the
stop events a long-running loop registered (``classify`` ends cleanly with its summary), or undoes what writers
registered (worker processes, staging folders, temporary exports), says so in one line and exits (``stop_now``).
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
_lock = threading.Lock()
_paths: dict[str, Path] = {}
_processes: dict[int, Any] = {}
_stoppers: list[tuple[threading.Event, dict[str, str]]] = []
_on_stop: list[Any] = []  # callables run first by undo(): what a path or a pid cannot express (SSH masters to close)
_watching = False
SIGNALS = {signal.SIGINT, signal.SIGTERM}


_closing = False  # set once stop_now has begun: anything registered from then on is removed at once


def remember(path: str | Path) -> None:
    with _lock:
        _paths[str(path)] = Path(path)
        closing = _closing
    if closing:
        _remove(Path(path))


def create_remembered(make: Callable[[], T], path: Callable[[T], str | Path]) -> T:
    """``make()`` a temporary file or folder and remember ``path(made)`` as one step. ``undo`` takes the same lock, so
    a stop either finds it remembered or began first, and then nothing is made: this thread parks until the exit.
    (Made, then remembered, a SIGTERM between the two left a worker's log in the temp folder.)"""
    with _lock:
        if not _closing:
            made = make()
            where = path(made)
            _paths[str(where)] = Path(where)
            return made
    park_if_stopping()
    raise AssertionError("unreachable: park_if_stopping returns only while no stop has begun")


def forget(path: str | Path) -> None:
    with _lock:
        _paths.pop(str(path), None)


def remember_process(proc: Any) -> None:
    with _lock:
        _processes[proc.pid] = proc


def forget_process(proc: Any) -> None:
    with _lock:
        _processes.pop(proc.pid, None)


def on_stop(fn: Any) -> None:
    """Run ``fn()`` when a signal stops the command (before processes are killed and paths removed)."""
    with _lock:
        if fn not in _on_stop:
            _on_stop.append(fn)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def undo() -> tuple[int, int]:
    """Kill the registered processes and remove the registered paths; (processes, paths) done. The main thread may
    still be writing into a staging folder meanwhile: removal is repeated until the paths stay gone."""
    global _closing
    with _lock:
        _closing = True
        callbacks = list(_on_stop)
    for fn in callbacks:
        try:
            fn()
        except Exception:  # noqa: BLE001 - the rest of the clean-up goes on whatever one step raised
            pass
    with _lock:
        procs, paths = list(_processes.values()), list(_paths.values())
        _processes.clear()
    for proc in procs:
        try:
            proc.kill()
        except OSError:
            pass
    for proc in procs:
        try:
            proc.wait(timeout=5)
        except Exception:  # noqa: BLE001 - a child that will not die is left to the kernel (it has PDEATHSIG)
            pass
    import time

    for _ in range(20):
        with _lock:
            paths = list(_paths.values()) or paths
        for path in paths:
            _remove(path)
        time.sleep(0.02)
        if not any(p.exists() for p in paths):
            break
    return len(procs), len(paths)


def stop_now(by: str, code: int) -> None:
    """Undo what is registered, say so on stderr in one line, and exit at once with ``code`` (no unwinding)."""
    try:
        procs, paths = undo()
        done = (
            f" (stopped {procs} worker process(es), removed {paths} staging folder(s) and temporary file(s))"
            if procs or paths
            else ""
        )
        from edgecnn import liblog

        fd, log = liblog.terminal()
        note = f"\n  library messages: {log}" if log else ""
        os.write(fd, f"error: interrupted by {by}{done}{note}\n".encode())
    finally:  # a closed or broken stderr must not stop the exit: threads that made temp files park until it comes
        os._exit(code)


def park_if_stopping() -> None:
    """In the main thread: when stop_now has begun, wait for it to end the process instead of going on (an error
    from a removed staging folder must not be printed, nor the process end with another exit code)."""
    if _closing:
        while True:
            threading.Event().wait(3600)


def watch_signals() -> None:
    """Block SIGINT and SIGTERM in this thread, and so in every thread created after it, and take them in a thread
    of our own. Call first thing in a process's entry point (children inherit the blocked mask)."""
    global _watching
    if _watching or threading.current_thread() is not threading.main_thread():
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    threading.Thread(target=_take_signals, name="edgecnn-signals", daemon=True).start()
    _watching = True


def watching() -> bool:
    return _watching


def _take_signals() -> None:
    stopped_once = False
    while True:
        signum = signal.sigwait(SIGNALS)
        name = "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C"
        with _lock:
            stoppers = list(_stoppers)
        if stoppers and not stopped_once:  # a loop that ends cleanly on its own; a second signal does not wait
            stopped_once = True
            for event, caught in stoppers:
                caught.setdefault("signal", "SIGTERM" if signum == signal.SIGTERM else "SIGINT")
                event.set()
            continue
        stop_now(name, 128 + signum)


@contextmanager
def stopping(event: threading.Event) -> Iterator[dict[str, str]]:
    """While inside, Ctrl-C or SIGTERM set ``event`` (the yielded dict then names the signal) instead of exiting."""
    caught: dict[str, str] = {}
    with _lock:
        _stoppers.append((event, caught))
    try:
        yield caught
    finally:
        with _lock:
            _stoppers[:] = [s for s in _stoppers if s[0] is not event]
