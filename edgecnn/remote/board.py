"""Device side: what a bare board is, asked over SSH before anything is installed there: its Python (version,
architecture, libc, the venv module), the free space where edgecnn will go, what is installed there already, and the
device profile it matches (detected here, with edgecnn's own detection, from the files the board's Python reads).

The probe is one Python script run by the board's interpreter, written for any Python 3 (a Jetson Nano's 3.6 must
be able to say that it is 3.6)."""

from __future__ import annotations

import json
import shlex
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecnn.remote.transport import DEFAULT_VENV, Board, RemoteError, ssh
from edgecnn.remote.wheelhouse import Target

DEFAULT_PREFIX = f"~/{DEFAULT_VENV}"  # the board's venv; `--on` finds its edgecnn there (transport.run_edgecnn)
MARKER = "edgecnn-install.json"  # in the prefix: which wheel, extras and mode made this install
MIN_PYTHON = (3, 10)  # pyproject.toml's requires-python

# no f-strings, no walrus: it must run on the Python 3.6 of JetPack 4 to say which Python that is
_PROBE = r"""
import glob, json, os, platform, subprocess, sys
def read(p, n=20000):
    try:
        with open(p, "rb") as f:
            return f.read(n).replace(b"\0", b"").decode("utf-8", "replace").strip()
    except Exception:
        return ""
prefix = os.path.abspath(os.path.expanduser(sys.argv[1]))
up = prefix
while not os.path.isdir(up):
    up = os.path.dirname(up)
st = os.statvfs(up)
libc, libc_version = platform.libc_ver()
musl = glob.glob("/lib/ld-musl-*.so.1")
if not libc and musl:
    libc = "musl"
    try:
        out = subprocess.run([musl[0]], stderr=subprocess.PIPE, universal_newlines=True).stderr
        libc_version = [ln.split()[1] for ln in out.splitlines() if ln.startswith("Version")][0]
    except Exception:
        libc_version = "1.1"
try:
    import venv
    has_venv = True
except ImportError:
    has_venv = False
gpus = []
for d in os.environ.get("PATH", "").split(os.pathsep):
    smi = os.path.join(d, "nvidia-smi")
    if os.access(smi, os.X_OK):
        try:
            out = subprocess.run([smi, "--query-gpu=name", "--format=csv,noheader"], stdout=subprocess.PIPE,
                                 universal_newlines=True, timeout=10).stdout
            gpus = [ln.strip() for ln in out.splitlines() if ln.strip()]
        except Exception:
            pass
        break
try:
    installed = json.loads(read(os.path.join(prefix, "edgecnn-install.json"), 200000))
except ValueError:
    installed = None
print(json.dumps({
    "python": sys.executable, "version": list(sys.version_info[:3]), "implementation": platform.python_implementation(),
    "machine": platform.machine(), "bits64": sys.maxsize > 2 ** 32, "libc": libc, "libc_version": libc_version,
    "venv": has_venv, "prefix": prefix, "prefix_exists": os.path.isdir(prefix), "free": st.f_bavail * st.f_frsize,
    "installed": installed, "cpuinfo": read("/proc/cpuinfo"), "meminfo": read("/proc/meminfo", 2000),
    "device_tree_model": read("/proc/device-tree/model"), "tegra_release": read("/etc/nv_tegra_release"), "gpus": gpus,
    "os_release": read("/etc/os-release", 4000),
}))
"""
_NO_PYTHON = "edgecnn-probe: no python"


@dataclass(frozen=True)
class BoardFacts:
    """What the probe found."""

    python: str  # the interpreter's path on the board
    version: tuple[int, int, int]
    machine: str  # the Python's own architecture (armv7l for a 32-bit Python on a 64-bit kernel)
    libc: str
    libc_version: tuple[int, int]
    venv: bool
    prefix: str  # absolute, ~ expanded there
    prefix_exists: bool
    free: int  # bytes free on the prefix's file system
    installed: dict[str, Any] | None  # the prefix's marker
    raw: dict[str, Any]

    @property
    def target(self) -> Target:
        return Target(arch=self.machine, python=self.version[:2], libc=self.libc, libc_version=self.libc_version)

    @property
    def os_name(self) -> str:
        for line in self.raw.get("os_release", "").splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
        return "Linux"


def _version_pair(text: str) -> tuple[int, int]:
    parts = [int(p) for p in text.split(".")[:2] if p.isdigit()]
    return (parts + [0, 0])[0], (parts + [0, 0])[1]


def probe(board: Board, *, python: str | None, prefix: str) -> BoardFacts:
    """Ask the board (one round trip). ``python``: its interpreter (default python3 on its PATH)."""
    q = shlex.quote
    command = python or "python3"
    line = f'py=$(command -v {q(command)}) || {{ echo "{_NO_PYTHON}"; exit 0; }}; "$py" -c {q(_PROBE)} {q(prefix)}'
    proc = ssh(board, line, step="probe", timeout=120)
    if _NO_PYTHON in proc.stdout:
        raise RemoteError(
            f"{board.label}: probe: no Python on the board ({command!r} is not on its PATH)",
            hint="install Python 3.10 or newer there (Debian, Ubuntu, Raspberry Pi OS: sudo apt install python3 python3-venv), "
            "or name it with --python PATH",
        )
    try:
        raw = json.loads(proc.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        raise RemoteError(f"{board.label}: probe: {command} did not answer as a Python 3 would: {proc.stdout[-200:]!r}") from None
    machine = raw["machine"]
    if machine in ("aarch64", "arm64") and not raw["bits64"]:
        machine = "armv7l"  # a 32-bit Raspberry Pi OS on a 64-bit kernel: its pip wants armv7l wheels
    return BoardFacts(
        python=raw["python"],
        version=tuple(raw["version"]),  # type: ignore[arg-type]
        machine="aarch64" if machine == "arm64" else machine,
        libc=raw["libc"] or "unknown",
        libc_version=_version_pair(str(raw["libc_version"])),
        venv=bool(raw["venv"]),
        prefix=raw["prefix"],
        prefix_exists=bool(raw["prefix_exists"]),
        free=int(raw["free"]),
        installed=raw["installed"] if isinstance(raw["installed"], dict) else None,
        raw=raw,
    )


def check_python(board: Board, facts: BoardFacts) -> None:
    """Refuse, with what to do, a Python edgecnn cannot run on, or one that cannot make a venv."""
    v = ".".join(map(str, facts.version))
    if facts.raw.get("implementation", "CPython") != "CPython":
        raise RemoteError(
            f"{board.label}: probe: {facts.python} is {facts.raw['implementation']} {v}; edgecnn's wheels need CPython"
        )
    if facts.version[:2] < MIN_PYTHON:
        jetson = facts.raw.get("tegra_release") or facts.version[:2] == (3, 6)
        hint = (
            "JetPack 4 (Ubuntu 18.04) ships Python 3.6: install Miniforge's aarch64 Python there "
            "(bash Miniforge3-Linux-aarch64.sh -b -p ~/miniforge3 && ~/miniforge3/bin/conda create -y -p ~/py310 python=3.10) "
            "and run again with --python ~/py310/bin/python3"
            if jetson
            else "install Python 3.10 or newer there (your distribution's python3.11, or Miniforge) and pass --python PATH"
        )
        raise RemoteError(f"{board.label}: probe: {facts.python} is Python {v}; edgecnn needs 3.10 or newer", hint=hint)
    if facts.libc not in ("glibc", "musl"):
        raise RemoteError(f"{board.label}: probe: no glibc or musl found for {facts.python}: no wheel on the index fits it")
    if not facts.venv:
        raise RemoteError(
            f"{board.label}: probe: {facts.python} (Python {v}) has no venv module",
            hint=f"Debian, Ubuntu, Raspberry Pi OS: sudo apt install python3-venv (or python{facts.version[0]}.{facts.version[1]}-venv)",
        )


def detect_profile(facts: BoardFacts) -> tuple[str, str]:
    """The device profile the board matches, by edgecnn's own detection run here on the files its Python read."""
    from edgecnn.devices import detect, host_facts

    with tempfile.TemporaryDirectory(prefix="edgecnn-board-") as tmp:
        root = Path(tmp)
        for rel, key in (
            ("proc/cpuinfo", "cpuinfo"),
            ("proc/meminfo", "meminfo"),
            ("proc/device-tree/model", "device_tree_model"),
            ("etc/nv_tegra_release", "tegra_release"),
        ):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(facts.raw.get(key) or "")
        found = host_facts(root, query_gpu=False)
    from dataclasses import replace

    return detect(facts=replace(found, arch=facts.machine, gpus=tuple(facts.raw.get("gpus") or ())))
