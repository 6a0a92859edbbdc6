"""A board reached with the system OpenSSH client: run a command there, copy a folder to it, find its edgecnn.

Every failure is one ``RemoteError`` line naming the board and the step (``connect``, ``copy``, ``run edgecnn``),
with the cause read from ssh's own message: unreachable, the key refused, the host key changed, no edgecnn there,
a full disk. Copies land in a ``.part`` folder that is renamed when complete, so a dropped connection never leaves
a folder that looks whole.

Hygiene, because a board is somebody else's computer: the user and host of a URL are checked before they reach ssh's
option parser (and ``--`` stands before the destination in every ssh, scp and rsync argv); a password in a URL is
refused; ``~/`` in a remote path means the remote home in every step; every byte a board sends back is cleaned of
control characters (``edgecnn.untrusted.clean``) before it is printed or saved. One command talks to a board over
one TCP connection: an OpenSSH ControlMaster in a private socket folder, closed when the command ends.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import re
import secrets
import shlex
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from edgecnn.errors import ConfigError, EdgeCNNError
from edgecnn.redact import redact
from edgecnn.signing import set_files
from edgecnn.untrusted import clean

DEFAULT_CACHE = "~/.cache/edgecnn/remote"
CONNECT_TIMEOUT_S = 10
CONTROL_PERSIST_S = 120
# a host name (letters, digits, '.', '-', '_'), an IPv4 address or an IPv6 one; a user name as POSIX allows it
_HOST = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9._-]{0,252})|[0-9A-Fa-f:.]+(?:%[A-Za-z0-9]+)?")
_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}\$?")


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
        """``user@host`` for ssh (checked again here: nothing that starts with '-' reaches its option parser)."""
        u = urlsplit(self.url)
        _check_url_parts(self.url, u)
        host = f"{u.username}@{u.hostname}" if u.username else (u.hostname or "")
        return host, u.port

    def copy_destination(self, path: str) -> str:
        """``user@host:path`` for scp and rsync (an IPv6 address in brackets)."""
        u = urlsplit(self.url)
        host = f"[{u.hostname}]" if ":" in (u.hostname or "") else u.hostname
        return f"{u.username + '@' if u.username else ''}{host}:{path}"

    def ssh_options(self, *, master: bool = False) -> list[str]:
        opts = ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={CONNECT_TIMEOUT_S}", "-o", "ServerAliveInterval=5"]
        # the socket's name holds the ssh config too: another key for the same host is another connection
        tag = hashlib.sha256(str(self.ssh_config).encode()).hexdigest()[:8]
        opts += ["-o", "ServerAliveCountMax=3", "-o", f"ControlPath={_control_dir()}/{tag}-%C"]
        # a master outlives an idle spell of CONTROL_PERSIST_S, so one left by a killed command goes away by itself
        opts += ["-o", "ControlMaster=yes", "-o", f"ControlPersist={CONTROL_PERSIST_S}"] if master else ["-o", "ControlMaster=no"]
        return (["-F", self.ssh_config] if self.ssh_config else []) + opts

    def ssh_argv(self, *, master: bool = False) -> list[str]:
        """``ssh OPTIONS [-p PORT]``: what rsync's ``-e`` runs, and the head of every ssh call (``--`` and the
        destination follow)."""
        _, port = self.destination()
        return ["ssh", *self.ssh_options(master=master), *(["-p", str(port)] if port else [])]


def _check_url_parts(text: str, u: Any) -> None:
    """The user and host of an ``ssh://`` URL: no password, nothing ssh could read as an option or a second host."""
    shown = redact(text)
    if u.password is not None:
        raise ConfigError(
            f"--on {shown}: a password in the URL is refused (it would be kept in results and shell history)",
            hint="use a key: ssh-copy-id USER@HOST, or your ssh agent",
        )
    if u.username is not None and not _USER.fullmatch(u.username):
        raise ConfigError(f"--on {shown}: the user {clean(u.username)[:40]!r} is not a user name (letters, digits, '.', '_', '-'; not first '-')")
    if not u.hostname or not _HOST.fullmatch(u.hostname) or u.hostname.startswith("-"):
        raise ConfigError(
            f"--on {shown}: {clean(u.hostname or '')[:60]!r} is not a host name or address",
            hint="write ssh://[user@]host[:port]; a host name is letters, digits, '.', '-' and '_' and starts with neither '-' nor '.'",
        )


def parse_board(text: str, *, fleet: dict[str, Board] | None = None, **overrides: Any) -> Board:
    """``ssh://[user@]host[:port]`` or the name of a fleet board; ``overrides`` (edgecnn, cache, ssh_config) that are
    not None replace the board's own."""
    from edgecnn.registry import did_you_mean

    if text.startswith("ssh://"):
        board = Board(url=_checked_url(text))
    elif fleet and text in fleet:
        board = fleet[text]
    elif re.fullmatch(r"[A-Za-z0-9_.-]+", text):
        names = sorted(fleet or {})
        raise ConfigError(
            f"--on {text!r}: no board of that name in the fleet ({', '.join(names) or 'the fleet is empty'})",
            hint=did_you_mean(text, names) or "write ssh://[user@]host[:port], or add the board to fleet.yaml",
        )
    else:
        raise ConfigError(f"--on {clean(redact(text))[:200]!r}: write ssh://[user@]host[:port] or the name of a board in fleet.yaml")
    return replace(board, **{k: v for k, v in overrides.items() if v is not None})


def _checked_url(text: str) -> str:
    """An ``ssh://[user@]host[:port]`` URL checked (a port from 1 to 65535, nothing after it), without its last '/'."""
    u = urlsplit(text)
    try:
        port = u.port
    except ValueError:
        raise ConfigError(f"--on {redact(text)!r}: the port must be a number from 1 to 65535") from None
    if (u.path not in ("", "/")) or u.query or u.fragment:
        raise ConfigError(f"--on {redact(text)!r}: write ssh://[user@]host[:port], nothing after the host and port")
    _check_url_parts(text, u)
    if port == 0:
        raise ConfigError(f"--on {text!r}: the port must be a number from 1 to 65535")
    return text.rstrip("/")


# -- one connection per board and command: a ControlMaster in a private folder, closed at exit -------------------------

_CONTROL: dict[str, Any] = {"dir": None, "masters": {}, "lock": threading.Lock()}


CONTROL_PREFIX = "edgecnn-ssh-"  # + pid: the folder of a killed command is removed by the next one
# a Unix socket's path has at most 107 bytes; ssh adds a dot and 16 random characters while it binds, and our name is
# "TAG8-" + %C (40): with a long $TMPDIR (macOS: /var/folders/...) the master failed with "unix_listener: too long"
_SOCKET_NAME_BYTES = 1 + 9 + 40 + 17


def _control_dir() -> str:
    with _CONTROL["lock"]:
        if _CONTROL["dir"] is None:
            from edgecnn import cleanup
            from edgecnn.atomic import remove_stale_temp

            base = tempfile.gettempdir()
            if len(f"{base}/{CONTROL_PREFIX}99999999-xxxxxxxx".encode()) + _SOCKET_NAME_BYTES > 107 and Path("/tmp").is_dir():
                base = "/tmp"
            remove_stale_temp((CONTROL_PREFIX,), base)  # what a kill -9 left
            # mode 0700: nobody else can use the socket
            _CONTROL["dir"] = cleanup.create_remembered(
                lambda: tempfile.mkdtemp(prefix=f"{CONTROL_PREFIX}{os.getpid()}-", dir=base), str
            )
            atexit.register(close_connections)
            # Ctrl-C or SIGTERM end the CLI with os._exit (edgecnn.cleanup): neither atexit nor main's finally runs, and
            # the folder and every master (alive for ControlPersist) were left behind (issue #31)
            cleanup.on_stop(close_connections)
        return _CONTROL["dir"]


def connect(board: Board) -> None:
    """Open (or check) the board's master connection; every later ssh, scp and rsync of this process rides on it.
    A dropped master is opened again here; a call made while none is open connects on its own."""
    control = _control_dir()
    dest, _ = board.destination()
    check = subprocess.run([*board.ssh_argv(), "-O", "check", "--", dest], capture_output=True, timeout=30,
                           stdin=subprocess.DEVNULL)
    if check.returncode == 0:
        return
    # -f: into the background once connected; its output goes to a file, never to a pipe we would wait on
    with tempfile.TemporaryFile(dir=control) as err:
        try:
            proc = subprocess.run([*board.ssh_argv(master=True), "-N", "-f", "--", dest], stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=err, timeout=CONNECT_TIMEOUT_S + 20)
        except FileNotFoundError:
            raise RemoteError("the ssh command is not installed here", hint="install OpenSSH's client (openssh-client)") from None
        except subprocess.TimeoutExpired:
            raise RemoteError(f"{board.label}: connect: no answer within {CONNECT_TIMEOUT_S + 20} s") from None
        err.seek(0)
        text = err.read().decode("utf-8", "replace")
    if proc.returncode != 0:
        raise _why(board, "connect", text, proc.returncode)
    with _CONTROL["lock"]:
        _CONTROL["masters"][board] = time.monotonic()


def _keep_connected(board: Board) -> None:
    """Before a call on a board this process connected to: open the master again when it may have idled out (or
    dropped); a failure here is left to the call itself, which then connects on its own."""
    last = _CONTROL["masters"].get(board)
    if last is not None and time.monotonic() - last > CONTROL_PERSIST_S / 2:
        try:
            connect(board)
        except EdgeCNNError:
            pass
    if last is not None:
        _CONTROL["masters"][board] = time.monotonic()


def close_connections() -> None:
    """Close every master this process opened and remove the socket folder."""
    for board in list(_CONTROL["masters"]):
        try:
            dest, _ = board.destination()
            subprocess.run([*board.ssh_argv(), "-O", "exit", "--", dest], capture_output=True, timeout=10,
                           stdin=subprocess.DEVNULL)
        except (OSError, subprocess.SubprocessError, EdgeCNNError):
            pass
    _CONTROL["masters"].clear()
    _HOMES.clear()
    _VERSIONS.clear()  # the next command asks again (and so opens its own connection)
    if _CONTROL["dir"]:
        from edgecnn import cleanup

        shutil.rmtree(_CONTROL["dir"], ignore_errors=True)
        cleanup.forget(_CONTROL["dir"])
        _CONTROL["dir"] = None


def _why(board: Board, step: str, stderr: str, code: int) -> RemoteError:
    """ssh's own message, turned into the cause a user can act on (the board's bytes cleaned first)."""
    text = clean(stderr).strip()
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
        (r"Connection (closed|reset)|Broken pipe|lost connection|closed by remote host", "the connection dropped", "run it again"),
    )
    for pattern, cause, hint in rules:
        if re.search(pattern, text, re.MULTILINE):
            detail = next((ln for ln in text.splitlines() if re.search(pattern, ln)), "")
            return RemoteError(f"{board.label}: {step}: {cause} ({detail.strip()[:200]})", hint=hint)
    last = text.splitlines()[-1][:300] if text else f"exit status {code}"
    return RemoteError(f"{board.label}: {step}: {last}")


def ssh(board: Board, command: str, *, step: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``command`` (a shell line) on the board; its output comes back cleaned of control characters."""
    _keep_connected(board)
    host, _ = board.destination()
    argv = [*board.ssh_argv(), "--", host, command]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, errors="replace", timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise RemoteError("the ssh command is not installed here", hint="install OpenSSH's client (openssh-client)") from None
    except subprocess.TimeoutExpired:
        raise RemoteError(f"{board.label}: {step}: no answer within {timeout:g} s") from None
    proc.stdout, proc.stderr = clean(proc.stdout), clean(proc.stderr)
    if check and proc.returncode == 255:  # ssh's own failure: the connection, not the command
        raise _why(board, "connect", proc.stderr, proc.returncode)
    if check and proc.returncode != 0:
        raise _why(board, step, proc.stderr or proc.stdout, proc.returncode)
    return proc


_HOMES: dict[Board, str] = {}


def remote_path(board: Board, path: str) -> str:
    """``path`` on the board as an absolute path: ``~`` and ``~/x`` are the remote user's home, a relative path is
    relative to it (as ssh and scp take it), so every step (ssh, scp, rsync) means the same folder."""
    if path.startswith("/"):
        return path.rstrip("/") or "/"
    if path.startswith("~") and not (path == "~" or path.startswith("~/")):
        raise ConfigError(f"remote path {path!r}: write ~/PATH for the board user's home, or an absolute path")
    if board not in _HOMES:
        home = ssh(board, 'printf "%s" "$HOME"', step="find the home folder", timeout=60).stdout.strip()
        if not home.startswith("/") or "\n" in home:
            raise RemoteError(f"{board.label}: the board's $HOME is not an absolute path ({home[:80]!r})")
        _HOMES[board] = home.rstrip("/")
    rest = path[1:].lstrip("/") if path.startswith("~") else path
    return f"{_HOMES[board]}/{rest}".rstrip("/")


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


def stream_edgecnn(board: Board, args: list[str], on_line: Any, *, timeout: float) -> tuple[int, str]:
    """The board's edgecnn with ``args``, its output lines (cleaned) handed to ``on_line`` as they come;
    (exit status, its error output). 255 is ssh's: the connection dropped."""
    _keep_connected(board)
    host, _ = board.destination()
    argv = [*board.ssh_argv(), "--", host, edgecnn_line(board, args)]
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, text=True,
                                errors="replace")
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            for line in proc.stdout:
                on_line(clean(line.rstrip("\n")))
            code = proc.wait()
        finally:
            timer.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        err.seek(0)
        return code, clean(err.read().decode("utf-8", "replace"))


_VERSIONS: dict[Board, str] = {}  # boards whose edgecnn this process has checked: one round trip per board


def check_version(board: Board) -> str:
    """The board's edgecnn version; refused unless its major.minor is ours (the JSON and options must match).
    Asked once per board and process (a benchmark measures many artifacts on it); opens the board's connection."""
    from edgecnn import __version__

    if board in _VERSIONS:
        return _VERSIONS[board]
    connect(board)
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
    for path in set_files(folder):
        h.update(path.relative_to(folder).as_posix().encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


@dataclass
class Pushed:
    remote: str  # the folder's path on the board
    copied: bool  # False: it was in the cache already
    seconds: float
    method: str  # rsync, scp, or cached


STALE_PART_S = 3600  # a .part folder older than this is a copy that died; the next copy there removes it


def push(board: Board, local: Path, remote_parent: str, name: str) -> Pushed:
    """Copy ``local`` (a folder of plain files) to ``remote_parent/name`` unless it is there already; a copy goes into
    ``name.part-<random>`` first and is renamed when whole. Neither rsync nor scp follows a link: a folder holding
    one is refused before anything moves, and rsync is told not to copy any."""
    t0 = time.monotonic()
    set_files(local)
    remote_parent = remote_path(board, remote_parent)
    final = f"{remote_parent}/{name}"
    q = shlex.quote
    probe = ssh(
        board,
        f"mkdir -p {q(remote_parent)} && {{ test -d {q(final)} && echo cached; command -v rsync >/dev/null && echo rsync; "
        f"find {q(remote_parent)} -maxdepth 1 -name '*.part-*' -mmin +{STALE_PART_S // 60} -exec rm -rf {{}} + ; true; }}",
        step="copy",
    )  # one round trip when the folder is there already; stale .part folders of dead copies go
    if "cached" in probe.stdout.split():
        return Pushed(final, False, time.monotonic() - t0, "cached")
    part = f"{final}.part-{secrets.token_hex(4)}"
    ssh(board, f"mkdir {q(part)}", step="copy")
    use_rsync = "rsync" in probe.stdout.split() and shutil.which("rsync")
    if use_rsync:
        argv = ["rsync", "-rt", "--no-links", "--chmod=D755,F644", "-e", shlex.join(board.ssh_argv()),
                "--", f"{local}/", board.copy_destination(f"{part}/")]
    else:  # every entry is a plain file or folder (checked above), so scp -r has no link to follow
        argv = ["scp", "-q", "-r", *board.ssh_argv()[1:]]
        argv = [a if a != "-p" else "-P" for a in argv]
        argv += ["--", *(str(p) for p in sorted(local.iterdir())), board.copy_destination(f"{part}/")]
    proc = subprocess.run(argv, capture_output=True, text=True, errors="replace", timeout=3600, stdin=subprocess.DEVNULL)
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
