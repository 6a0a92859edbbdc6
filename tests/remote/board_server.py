"""A bare board on loopback for `edgecnn board install`: the real OpenSSH server of sshd.py, whose sessions get a
home of their own (a fresh default prefix, board cache and pip state) and the environment a board would have (its
PATH, its pip's index). Used by tests/remote/test_install.py and by tools/arm64_check.sh's emulated board."""

from __future__ import annotations

from pathlib import Path

from sshd import SSHServer


class BoardServer(SSHServer):
    def __init__(self, folder: Path, **env: str) -> None:
        self.home = folder / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.env = {"HOME": str(self.home), **env}
        super().__init__(folder / "sshd")

    def start(self) -> None:
        config = self.folder / "sshd_config"
        text = config.read_text()
        if "\nSetEnv " not in text:  # one line: sshd keeps the first value of a keyword given twice
            config.write_text(text + "SetEnv " + " ".join(f"{k}={v}" for k, v in self.env.items()) + "\n")
        super().start()

    def on(self, *more: str) -> list[str]:
        """--on and the ssh config that reach it, with the board's cache in its home (the default is the login
        user's, shared by every test)."""
        return ["--on", self.url, "--ssh-config", str(self.config), "--remote-cache", str(self.home / "board-cache"), *more]

    @property
    def prefix(self) -> Path:
        return self.home / ".local" / "share" / "edgecnn" / "venv"
