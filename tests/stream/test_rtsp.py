"""A real RTSP stream on loopback (GStreamer's RTSP server, RTP/JPEG) through the rtsp:// source."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from edgecnn.stream.capture import Capture
from edgecnn.stream.sources import SourceOptions, open_source

SERVER = Path(__file__).with_name("rtsp_server.py")
# a real-time stream with timing bounds; its server answered 503 to DESCRIBE beside another test's conversion
pytestmark = pytest.mark.serial


def _system_python_with_rtsp() -> str | None:
    for py in ("/usr/bin/python3", shutil.which("python3")):
        if (
            py
            and subprocess.run(
                [py, "-c", "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"],
                capture_output=True,
                timeout=30,
            ).returncode
            == 0
        ):
            return py
    return None


@pytest.fixture()
def rtsp_url():
    py = _system_python_with_rtsp()
    if not py:
        pytest.skip(
            "needs GStreamer's RTSP server: apt-get install python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good"
        )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([py, str(SERVER), str(port)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout.readline().strip() == "ready"
    yield f"rtsp://127.0.0.1:{port}/test", proc
    proc.kill()
    proc.wait()


def test_rtsp_frames_then_server_loss_is_detected(rtsp_url):
    url, proc = rtsp_url
    cap = Capture(open_source(url, SourceOptions(open_timeout=5, read_timeout=1.0)), backoff=(0.3, 1.0)).start()
    frames = []
    t_end = time.monotonic() + 10
    while len(frames) < 20 and time.monotonic() < t_end:
        f = cap.get(0.5)
        if f is not None:
            frames.append(f)
    assert len(frames) == 20 and frames[0].image.shape == (120, 160, 3)
    proc.kill()
    killed = time.monotonic()
    time.sleep(2.5)
    cap.stop()
    failures = [t for t, msg in cap.stats.events if "read failed" in msg and t > killed]
    assert failures and failures[0] - killed <= 1.0 + 0.5
    assert any("reconnect failed" in msg for _, msg in cap.stats.events)  # it keeps trying, with backoff
