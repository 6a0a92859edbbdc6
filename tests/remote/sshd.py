"""A real OpenSSH server on 127.0.0.1 for the tests: host and user keys made here, an ssh client config that trusts
it, and ``stop()`` / ``start()`` to kill it mid-copy. Skips (with the reason) where sshd is not installed."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

SSHD = "/usr/sbin/sshd"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SSHServer:
    def __init__(self, folder: Path) -> None:
        if not Path(SSHD).is_file() or not shutil.which("ssh-keygen") or not shutil.which("ssh"):
            pytest.skip("needs OpenSSH's server and client (apt-get install openssh-server openssh-client)")
        self.folder = folder
        self.port = _free_port()
        folder.mkdir(parents=True, exist_ok=True)
        self.host_key, self.user_key, self.other_key = folder / "host_key", folder / "user_key", folder / "other_key"
        for key in (self.host_key, self.user_key, self.other_key):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        (folder / "authorized_keys").write_text((folder / "user_key.pub").read_text())
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # privilege separation folder sshd insists on
        (folder / "sshd_config").write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {self.host_key}\n"
            f"AuthorizedKeysFile {folder / 'authorized_keys'}\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\n"
            f"PidFile {folder / 'sshd.pid'}\nLogLevel ERROR\n"
        )
        (folder / "known_hosts").write_text(f"[127.0.0.1]:{self.port} {(folder / 'host_key.pub').read_text()}")
        self.config = self.client_config(self.user_key)
        self.proc: subprocess.Popen | None = None
        self.start()

    def client_config(self, key: Path) -> Path:
        path = self.folder / f"ssh_config-{key.name}"
        path.write_text(
            f"Host *\n  IdentityFile {key}\n  IdentitiesOnly yes\n  UserKnownHostsFile {self.folder / 'known_hosts'}\n"
            "  StrictHostKeyChecking yes\n  LogLevel ERROR\n"
        )
        return path

    @property
    def url(self) -> str:
        import getpass

        return f"ssh://{getpass.getuser()}@127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(self.folder / "sshd_config")], stderr=open(self.folder / "sshd.log", "ab")
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {(self.folder / 'sshd.log').read_text()[-500:]}")
            time.sleep(0.05)
        raise RuntimeError("sshd did not listen within 10 s")

    def stop(self) -> None:
        """Kill the listener and every session it forked (a dropped connection, as a board that goes away)."""
        import psutil

        if self.proc is not None:
            for child in psutil.Process(self.proc.pid).children(recursive=True):
                try:
                    child.kill()
                except psutil.NoSuchProcess:
                    pass
            self.proc.kill()
            self.proc.wait()
            self.proc = None
