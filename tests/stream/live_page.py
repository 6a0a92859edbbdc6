"""``edgecnn classify --sink http://...`` as a user starts it: a real process, its address read from its terminal."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request


class LivePage:
    """The CLI serving the live page for ``source``; ``url`` is the address it printed, ``lines`` its stderr so far."""

    def __init__(self, artifact, source: str, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edgecnn", "classify", str(artifact), "--runtime", "litert", "--source", source]
            + ["--sink", "http://127.0.0.1:0", *extra],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
        )
        self.lines: list[str] = []
        self.started = time.monotonic()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.url = self.wait_for_line(r"live page: (http://\S+)").group(1)

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def wait_for_line(self, pattern: str, timeout: float = 60) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if m := re.search(pattern, line):
                    return m
            if self.proc.poll() is not None and not self.lines:
                break
            time.sleep(0.05)
        raise AssertionError(f"no line matching {pattern!r} in {timeout} s; stderr: {self.lines}")

    def state(self) -> dict:
        return json.loads(urllib.request.urlopen(self.url + "state.json", timeout=5).read())

    def stop(self) -> tuple[int, str]:
        """Ctrl-C, as a user stops it; (exit status, its last stderr line)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        rc = self.proc.wait(timeout=30)
        self._reader.join(timeout=5)
        return rc, (self.lines[-1] if self.lines else "")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
