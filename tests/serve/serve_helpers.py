"""Helpers for the service's tests: a mosquitto broker on a loopback port, a paho subscriber that records every
message, the service in a thread or as a process."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """mosquitto on 127.0.0.1:port with a config file of our own (no persistence: a restart forgets everything)."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        self.log = folder / "mosquitto.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not start: {self.log.read_text()[-500:]}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(5)
            self.proc = None


class Subscriber:
    """A paho client subscribed to everything; ``messages`` holds (time.time(), topic, payload bytes, retained)."""

    def __init__(self, port: int, topics: str = "#") -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[float, str, bytes, bool]] = []
        self._cond = threading.Condition()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *a: c.subscribe(topics, qos=1)
        self.client.reconnect_delay_set(0.2, 1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, client, userdata, msg) -> None:
        with self._cond:
            self.messages.append((time.time(), msg.topic, bytes(msg.payload), bool(msg.retain)))
            self._cond.notify_all()

    def on(self, topic: str) -> list[tuple[float, bytes, bool]]:
        with self._cond:
            return [(t, p, r) for t, top, p, r in self.messages if top == topic]

    def texts(self, topic: str) -> list[str]:
        return [p.decode() for _, p, _ in self.on(topic)]

    def wait(self, check, timeout: float = 10.0):
        """Wait until ``check()`` gives something true; return it (or fail naming what arrived)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while time.monotonic() < deadline:
                got = check()
                if got:
                    return got
                self._cond.wait(0.05)
        topics = sorted({t for _, t, _, _ in self.messages})
        raise AssertionError(f"not seen within {timeout} s; topics seen: {topics}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def retained(port: int, topic: str, timeout: float = 10.0) -> bytes | None:
    """What the broker holds retained on ``topic`` (a fresh subscriber's first message), or None."""
    s = Subscriber(port, topic)
    try:
        got = s.wait(lambda: [p for _, p, r in s.on(topic) if r], timeout)
        return got[-1]
    except AssertionError:
        return None
    finally:
        s.close()


def serve_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "edgecnn", "serve", *args]


@contextmanager
def serve_process(*args: str, env: dict | None = None):
    """``edgecnn serve ARGS`` as a process (stderr to a pipe); killed at exit if still running."""
    proc = subprocess.Popen(
        serve_cmd(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})}
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


@contextmanager
def service_thread(cfg, *, environ: dict | None = None, say=None):
    """The service in this process (its own thread), stopped at exit; yields (service, the thread's outcome)."""
    from edgecnn.serve.service import Service

    service = Service(cfg, environ=environ or {}, say=say)
    stop = threading.Event()
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["report"] = service.run(stop)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        yield service, outcome
    finally:
        stop.set()
        t.join(5)
        assert not t.is_alive(), "the service did not stop within 5 s"


def get_json(url: str, timeout: float = 5.0) -> tuple[int, dict]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())
