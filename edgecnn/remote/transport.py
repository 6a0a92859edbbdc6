"""A board reached with the system OpenSSH client: run a command there, copy a folder to it, find its edgecnn.

Every failure is one ``RemoteError`` line naming the board and the step (``connect``, ``copy``, ``run edgecnn``),
with the cause read from ssh's own message: unreachable, the key refused, the host key changed, no edgecnn there,
a full disk. Copies land in a ``.part`` folder that is renamed when complete, so a dropped connection never leaves
a folder that looks whole.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from edgecnn.errors import ConfigError, EdgeCNNError

DEFAULT_CACHE = ".cache/edgecnn/remote"  # relative to the remote user's home
CONNECT_TIMEOUT_S = 10


class RemoteError(EdgeCNNError):
    """A board could not be reached, or a step on it failed."""


@dataclass(frozen=True)
class Board:
    """Where a board is and how to run edgecnn on it (a fleet.yaml entry, or an ``ssh://`` URL on the command line)."""

    url: str
    name: str = ""
    device: str | None = None  # its device profile
    edgecnn: str = "edgecnn"  # the board's edgecnn command
    cache: str = DEFAULT_CACHE  # where copied artifacts are kept, by content
    ssh_config: str | None = None  # passed to ssh as -F
    labels: tuple[str, ...] = field(default_factory=tuple)

    @property
    def label(self) -> str:
        return self.name or self.url

    def destination(self) -> tuple[str, int | None]:
        u = urlsplit(self.url)
        host = f"{u.username}@{u.hostname}" if u.username else (u.hostname or "")
        return host, u.port

    def ssh_options(self) -> list[str]:
        opts = ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={CONNECT_TIMEOUT_S}", "-o", "ServerAliveInterval=5"]
        opts += ["-o", "ServerAliveCountMax=3"]
        return (["-F", self.ssh_config] if self.ssh_config else []) + opts


def parse_board(text: str, *, fleet: dict[str, Board] | None = None, **overrides: Any) -> Board:
    """``ssh://[user@]host[:port]`` or the name of a fleet board; ``overrides`` (edgecnn, cache, ssh_config) that are
    not None replace the board's own."""
    from edgecnn.registry import did_you_mean

    if text.startswith("ssh://"):
        u = urlsplit(text)
        try:
            port = u.port
        except ValueError:
            raise ConfigError(f"--on {text!r}: the port must be a number from 1 to 65535") from None
        if not u.hostname or (u.path not in ("", "/")) or u.query:
            raise ConfigError(f"--on {text!r}: write ssh://[user@]host[:port], nothing after the host and port")
        if port == 0:
            raise ConfigError(f"--on {text!r}: the port must be a number from 1 to 65535")
        board = Board(url=text.rstrip("/"))
    elif fleet and text in fleet:
        board = fleet[text]
    elif re.fullmatch(r"[A-Za-z0-9_.-]+", text):
        names = sorted(fleet or {})
        raise ConfigError(
            f"--on {text!r}: no board of that name in the fleet ({', '.join(names) or 'the fleet is empty'})",
            hint=did_you_mean(text, names) or "write ssh://[user@]host[:port], or add the board to fleet.yaml",
        )
    else:
        raise ConfigError(f"--on {text!r}: write ssh://[user@]host[:port] or the name of a board in fleet.yaml")
    return replace(board, **{k: v for k, v in overrides.items() if v is not None})


def _why(board: Board, step: str, stderr: str, code: int) -> RemoteError:
    """ssh's own message, turned into the cause a user can act on."""
    text = stderr.strip()
    rules = (
        # ssh's refusal names the methods it tried; a file the board cannot write is also "Permission denied"
        (
            r"Permission denied \((publickey|password|keyboard)|Too many authentication failures",
            "the board refused the key",
            "check the key with ssh",
        ),
        (r"Connection refused", "connection refused (no SSH server on that port?)", None),
        (r"timed out|No route to host|Network is unreachable", "the board did not answer (unreachable)", None),
        (r"Could not resolve hostname|Name or service not known", "the host name does not resolve", None),
        (r"REMOTE HOST IDENTIFICATION HAS CHANGED|Host key verification failed", "its host key is not trusted", None),
        (r"No space left on device|Disk quota exceeded", "no space left on the board", "free space there"),
        (r"Read-only file system|Permission denied|cannot create", "cannot write there", None),
        (r"Connection (closed|reset)|Broken pipe|lost connection", "the connection dropped", "run it again"),
    )
    for pattern, cause, hint in rules:
        if re.search(pattern, text, re.MULTILINE):
            detail = next((ln for ln in text.splitlines() if re.search(pattern, ln)), "")
            return RemoteError(f"{board.label}: {step}: {cause} ({detail.strip()[:200]})", hint=hint)
    last = text.splitlines()[-1][:300] if text else f"exit status {code}"
    return RemoteError(f"{board.label}: {step}: {last}")


def ssh(board: Board, command: str, *, step: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``command`` (a shell line) on the board."""
    host, port = board.destination()
    argv = ["ssh", *board.ssh_options(), *(["-p", str(port)] if port else []), host, "--", command]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise RemoteError("the ssh command is not installed here", hint="install OpenSSH's client (openssh-client)") from None
    except subprocess.TimeoutExpired:
        raise RemoteError(f"{board.label}: {step}: no answer within {timeout:g} s") from None
    if check and proc.returncode == 255:  # ssh's own failure: the connection, not the command
        raise _why(board, "connect", proc.stderr, proc.returncode)
    if check and proc.returncode != 0:
        raise _why(board, step, proc.stderr or proc.stdout, proc.returncode)
    return proc


def run_edgecnn(board: Board, args: list[str], *, step: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    """The board's edgecnn with ``args``; an edgecnn error there comes back as its own first line."""
    line = edgecnn_line(board, args)
    proc = ssh(board, line, step=step, timeout=timeout, check=False)
    if proc.returncode == 255:
        raise _why(board, "connect", proc.stderr, 255)
    if proc.returncode == 127:
        raise RemoteError(
            f"{board.label}: no edgecnn there ({board.edgecnn!r}: command not found)",
            hint=f"edgecnn board install --on {board.label}, or give its path with --remote-edgecnn",
        )
    return proc


_VERSIONS: dict[Board, str] = {}  # boards whose edgecnn this process has checked: one round trip per board


def check_version(board: Board) -> str:
    """The board's edgecnn version; refused unless its major.minor is ours (the JSON and options must match).
    Asked once per board and process (a benchmark measures many artifacts on it)."""
    from edgecnn import __version__

    if board in _VERSIONS:
        return _VERSIONS[board]
    proc = run_edgecnn(board, ["--version"], step="edgecnn --version", timeout=60)
    found = re.search(r"edgecnn (\S+)", proc.stdout)
    if proc.returncode != 0 or not found:
        raise _why(board, "edgecnn --version", proc.stderr or proc.stdout, proc.returncode)
    theirs = found.group(1)
    if theirs.split(".")[:2] != __version__.split(".")[:2]:
        raise RemoteError(
            f"{board.label}: edgecnn {theirs} there, {__version__} here: their options and results may differ",
            hint=f'pip install "edgecnn=={__version__}" on the board (with its runtime extra)',
        )
    _VERSIONS[board] = theirs
    return theirs


DEFAULT_VENV = ".local/share/edgecnn/venv"  # under $HOME: where `edgecnn board install` puts edgecnn (#26)


def edgecnn_line(board: Board, args: list[str]) -> str:
    """The shell line that runs the board's edgecnn with ``args``: the default command, when it is not on the
    board's PATH, is the one in the venv `edgecnn board install` made (#26)."""
    line = shlex.join([board.edgecnn, *args])
    if board.edgecnn == "edgecnn":
        line = f'command -v edgecnn >/dev/null 2>&1 || PATH="$HOME/{DEFAULT_VENV}/bin:$PATH"; {line}'
    return line


def folder_digest(folder: Path) -> str:
    """sha256 over every file's relative path and content: the name a folder has in the board's cache."""
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(path.relative_to(folder).as_posix().encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


@dataclass
class Pushed:
    remote: str  # the folder's path on the board
    copied: bool  # False: it was in the cache already
    seconds: float
    method: str  # rsync, scp, or cached


def push(board: Board, local: Path, remote_parent: str, name: str) -> Pushed:
    """Copy ``local`` (a folder) to ``remote_parent/name`` unless it is there already; a copy goes into
    ``name.part-<random>`` first and is renamed when whole."""
    import time

    t0 = time.monotonic()
    final = f"{remote_parent}/{name}"
    q = shlex.quote
    probe = ssh(
        board,
        f"mkdir -p {q(remote_parent)} && {{ test -d {q(final)} && echo cached; command -v rsync >/dev/null && echo rsync; true; }}",
        step="copy",
    )  # one round trip when the folder is there already
    if "cached" in probe.stdout.split():
        return Pushed(final, False, time.monotonic() - t0, "cached")
    part = f"{final}.part-{secrets.token_hex(4)}"
    ssh(board, f"mkdir {q(part)}", step="copy")
    host, port = board.destination()
    use_rsync = "rsync" in probe.stdout.split() and shutil.which("rsync")
    if use_rsync:
        shell = shlex.join(["ssh", *board.ssh_options(), *(["-p", str(port)] if port else [])])
        argv = ["rsync", "-a", "-e", shell, f"{local}/", f"{host}:{part}/"]
    else:
        argv = ["scp", "-q", "-r", *board.ssh_options(), *(["-P", str(port)] if port else [])]
        argv += [*(str(p) for p in sorted(local.iterdir())), f"{host}:{part}/"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=3600, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        ssh(board, f"rm -rf {q(part)}", step="copy", check=False)
        raise _why(board, f"copy {local.name}", proc.stderr or proc.stdout, proc.returncode)
    # another copy of the same content may have won the race: then ours goes
    ssh(board, f"mv -T {q(part)} {q(final)} 2>/dev/null || rm -rf {q(part)}", step="copy")
    return Pushed(final, True, time.monotonic() - t0, "rsync" if use_rsync else "scp")


def push_cached(board: Board, local: Path) -> Pushed:
    """``local`` in the board's content-addressed cache: ``CACHE/<digest>/<folder name>``. Repeating copies nothing."""
    digest = folder_digest(local)
    return push(board, local, f"{board.cache}/{digest[:32]}", local.name)


def json_answer(board: Board, proc: subprocess.CompletedProcess, step: str) -> dict[str, Any]:
    """The JSON the board's edgecnn printed, or its error line as a RemoteError."""
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr or "").splitlines() if ln.strip()]
        error = next((ln for ln in lines if ln.startswith("error:")), lines[-1] if lines else f"exit {proc.returncode}")
        hint = next((ln.strip().removeprefix("hint:").strip() for ln in lines if ln.strip().startswith("hint:")), None)
        raise RemoteError(f"{board.label}: {step}: {error.removeprefix('error: ')}", hint=hint)
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise RemoteError(f"{board.label}: {step}: the board's edgecnn did not answer in JSON: {proc.stdout[:200]!r}") from None
