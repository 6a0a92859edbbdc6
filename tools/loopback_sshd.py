"""A real OpenSSH server on 127.0.0.1, a board for the tests and tools (tests/remote, tools/hostile_inputs.py, tools/
deploy_kill_trials.py): host and user keys made here, an ssh client config that trusts it, ``stop()`` / ``start()``
to kill it mid-copy, ``kill_sessions()`` to cut every connection. Raises ``Unavailable`` (the tests skip on it, with
the reason) where sshd is not installed."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

SSHD = "/usr/sbin/sshd"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Unavailable(RuntimeError):
    """No OpenSSH server or client on this machine."""


class SSHServer:
    """``rsync=False``: a board without rsync (only scp over the SFTP subsystem): the sessions' PATH is a folder of
    links to every command of /usr/bin but rsync. The log is kept at VERBOSE: ``connections()`` counts the TCP
    connections the server accepted."""

    def __init__(self, folder: Path, *, rsync: bool = True) -> None:
        if not Path(SSHD).is_file() or not shutil.which("ssh-keygen") or not shutil.which("ssh"):
            raise Unavailable("needs OpenSSH's server and client (apt-get install openssh-server openssh-client)")
        self.folder = folder
        self.port = _free_port()
        folder.mkdir(parents=True, exist_ok=True)
        self.host_key, self.user_key, self.other_key = folder / "host_key", folder / "user_key", folder / "other_key"
        for key in (self.host_key, self.user_key, self.other_key):
            for old in (key, key.with_name(key.name + ".pub")):  # a rerun over the same folder: ssh-keygen would ask
                old.unlink(missing_ok=True)
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        (folder / "authorized_keys").write_text((folder / "user_key.pub").read_text())
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # privilege separation folder sshd insists on
        env = ""
        if not rsync:
            bin_dir = folder / "bin"
            bin_dir.mkdir(exist_ok=True)
            for tool in Path("/usr/bin").iterdir():
                if tool.name != "rsync" and not (bin_dir / tool.name).exists():
                    (bin_dir / tool.name).symlink_to(tool)
            env = f"SetEnv PATH={bin_dir}\n"
        (folder / "sshd_config").write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {self.host_key}\n"
            f"AuthorizedKeysFile {folder / 'authorized_keys'}\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\n"
            f"PidFile {folder / 'sshd.pid'}\nLogLevel VERBOSE\nSubsystem sftp internal-sftp\n{env}"
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

    def connections(self) -> int:
        """SSH connections made so far: each one that logged in (sshd logs them at VERBOSE); start()'s own probe of
        the port is no login."""
        log = self.folder / "sshd.log"
        return log.read_text(errors="replace").count("Accepted publickey for ") if log.is_file() else 0

    def kill_sessions(self) -> int:
        """Kill every session's sshd process but keep the listener: each connection drops, new ones are accepted."""
        import psutil

        killed = 0
        if self.proc is not None:
            for child in psutil.Process(self.proc.pid).children(recursive=False):
                try:
                    child.kill()
                    killed += 1
                except psutil.NoSuchProcess:
                    pass
        return killed

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
