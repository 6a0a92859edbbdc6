"""edgecnn.cleanup: a stop (Ctrl-C, SIGTERM) that comes while a temporary file or folder is being made.

A SIGTERM during convert once left a worker's log in the temp folder ("stopped 0 worker process(es)"): the log was
made, then remembered, and the stop's os._exit came between the two. ``create_remembered`` makes and remembers
under the lock ``undo`` takes. Each check runs in a child: ``undo`` closes the process's clean-up for good."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

CHILD = textwrap.dedent(
    """
    import json, os, sys, tempfile, threading, time
    from pathlib import Path
    from edgecnn import cleanup

    folder = Path(sys.argv[1])
    made_before = cleanup.create_remembered(lambda: Path(tempfile.mkdtemp(dir=folder)), Path)
    seen_before = made_before.is_dir()
    events = []

    def maker():
        while True:  # makes and forgets, as a conversion's workers do, until the stop parks it
            path = cleanup.create_remembered(lambda: Path(tempfile.mkdtemp(dir=folder)), Path)
            events.append("made")
            path.rmdir()
            cleanup.forget(path)

    t = threading.Thread(target=maker, daemon=True)
    t.start()
    deadline = time.monotonic() + 20
    while len(events) <= 10 and time.monotonic() < deadline:  # busy, however little of a core this process gets
        time.sleep(0.005)
    procs, paths = cleanup.undo()
    left_at_undo = sorted(os.listdir(folder))
    n = len(events)
    time.sleep(0.3)
    print(json.dumps({"seen_before": seen_before, "before_removed": not made_before.exists(), "made": n,
                      "made_after_undo": len(events) - n, "left": left_at_undo, "left_later": sorted(os.listdir(folder)),
                      "parked": t.is_alive()}))
    """
)


def test_a_stop_finds_every_made_path_remembered_and_nothing_is_made_after_it(tmp_path):
    proc = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(proc.stdout)
    assert r["seen_before"] and r["before_removed"]
    assert r["made"] > 10  # the maker was busy when the stop came
    assert r["made_after_undo"] <= 1  # the one that was between made and appended; none once parked
    assert r["left"] == [] and r["left_later"] == []
    assert r["parked"]  # waits for the exit instead of making more
