"""What a stopped command leaves (issue #31: /tmp held 146 edgecnn-ssh-* and 68 edgecnn-release-* folders from test
runs). Ctrl-C and SIGTERM end the CLI with os._exit after their clean-up (edgecnn.cleanup), so neither atexit nor a
``with`` block's exit runs: the SSH control folder and every ControlMaster (alive for ControlPersist) were left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from sshd import SSHServer  # noqa: E402
from waiting import until  # noqa: E402

pytestmark = pytest.mark.slow


def _masters(pid: int) -> list[str]:
    """The ssh masters of the edgecnn process ``pid`` (its control folder, named with its pid, is in their argv)."""
    out = subprocess.run(["pgrep", "-af", "^ssh .*ControlMaster=yes"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if f"/edgecnn-ssh-{pid}-" in line]


def _folders(pid: int, tmpdir: str) -> list[str]:
    """Its control folders: in its TMPDIR, or in /tmp where that path would make the socket's too long."""
    return [str(p) for base in (tmpdir, "/tmp") for p in Path(base).glob(f"edgecnn-ssh-{pid}-*")]


def _profile_on(server, artifact, tmpdir: str, cache: Path) -> subprocess.Popen:
    edgecnn = str(Path(sys.executable).with_name("edgecnn"))
    argv = [sys.executable, "-m", "edgecnn", "profile", str(artifact), "--runs", "100000", "--min-seconds", "30"]
    argv += ["--on", server.url, "--ssh-config", str(server.config), "--remote-edgecnn", edgecnn, "--remote-cache", str(cache)]
    return subprocess.Popen(
        argv, env=dict(os.environ, TMPDIR=tmpdir), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stopped_command_leaves_no_ssh_folder_and_no_master(lenet_artifacts, tmp_path, sig):
    server = SSHServer(tmp_path / "sshd")
    tmpdir = tempfile.mkdtemp(prefix="e31-", dir="/tmp")  # its own temp folder: only this command's files are in it
    try:
        proc = _profile_on(server, lenet_artifacts / "tflite-int8", tmpdir, tmp_path / "cache")
        deadline = time.monotonic() + 60
        while not _masters(proc.pid) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert _masters(proc.pid) and _folders(proc.pid, tmpdir), f"never connected: {proc.poll()}"
        time.sleep(3)  # measuring on the board
        proc.send_signal(sig)
        err = proc.communicate(timeout=30)[1]
        assert proc.returncode == 128 + sig, err
        # `ssh -O exit` answers before its master has gone
        until(lambda: _folders(proc.pid, tmpdir) == [] and _masters(proc.pid) == [], "the ssh folder and master to go")
        assert os.listdir(tmpdir) == []
    finally:
        for line in _masters(proc.pid):
            os.kill(int(line.split()[0]), signal.SIGKILL)
        server.stop()
        subprocess.run(["rm", "-rf", tmpdir], check=False)


def test_a_long_temp_folder_still_holds_the_control_socket(lenet_artifacts, tmp_path):
    """A $TMPDIR of 60 characters (macOS's are about 50) made ssh's control socket path too long ("unix_listener:
    path ... too long for Unix domain socket"): the folder then goes under /tmp."""
    server = SSHServer(tmp_path / "sshd")
    tmpdir = tmp_path / ("t" * max(1, 60 - len(str(tmp_path)) - 1))
    tmpdir.mkdir()
    edgecnn = str(Path(sys.executable).with_name("edgecnn"))
    try:
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "edgecnn",
                "profile",
                str(lenet_artifacts / "tflite-int8"),
                "--runs",
                "5",
                "--min-seconds",
                "0",
                "--on",
                server.url,
                "--ssh-config",
                str(server.config),
                "--remote-edgecnn",
                edgecnn,
                "--remote-cache",
                str(tmp_path / "cache"),
                "--quiet",
            ],
            env=dict(os.environ, TMPDIR=str(tmpdir)),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 0, r.stderr
        assert "unix_listener" not in r.stderr and os.listdir(tmpdir) == []
    finally:
        server.stop()


def test_a_folder_left_by_a_killed_command_is_removed_by_the_next(tmp_path, monkeypatch):
    from edgecnn.atomic import temporary_directory

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    left = tmp_path / f"edgecnn-release-{dead.pid}-abc"
    alive = tmp_path / f"edgecnn-release-{os.getppid()}-def"  # a running process's folder stays
    left.mkdir()
    alive.mkdir()
    with temporary_directory("edgecnn-release-") as tmp:
        assert Path(tmp).name.startswith(f"edgecnn-release-{os.getpid()}-") and Path(tmp).is_dir()
        assert not left.exists() and alive.exists()
    assert not Path(tmp).exists()
