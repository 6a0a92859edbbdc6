"""Host side: converter toolchains that cannot share edgecnn's environment, each in its own venv under edgecnn's cache.

Sony's IMX500 toolchain (Edge-MDT: Model Compression Toolkit + ``imxconv-tf``) needs TensorFlow 2.15 / Keras 2 on
Python < 3.12 and a Java 17 runtime, so it can never be imported next to Keras 3. ``edgecnn toolchain install
imx500`` builds ``<cache>/toolchains/imx500/`` (a venv of its own, with its pip's progress, size and time) and
writes ``toolchain.json`` beside it (packages, versions, Java, seconds, bytes); a conversion only *finds* it
(``require``) and runs its worker on that interpreter (``convert.scheduler.INTERPRETERS``). Nothing is installed at
conversion time: a missing toolchain or Java is one line naming the command to run. The wheels are proprietary
(Sony's licence): the user installs them from the package index, edgecnn never ships them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecnn.errors import ConfigError, EdgeCNNError
from edgecnn.resources import cache_dir


class ToolchainError(EdgeCNNError):
    """A toolchain is missing, broken or cannot be installed here."""


@dataclass(frozen=True)
class ToolchainSpec:
    """What one toolchain is: its pip requirements, the Python it needs, the Java it needs, what proves it works."""

    name: str
    description: str
    requirements: tuple[str, ...]
    pythons: tuple[str, ...]  # interpreters to look for, in order (the first found is used)
    java: int | None  # major version of the Java runtime it needs (None: none)
    java_package: str | None  # the Debian package that provides it
    probe: str  # Python run in the venv after the install: prints a JSON dict of versions
    licence: str


IMX500 = ToolchainSpec(
    name="imx500",
    description="Sony IMX500 (Raspberry Pi AI Camera): Edge-MDT = Model Compression Toolkit + imxconv-tf",
    requirements=("edge-mdt[tf]",),
    pythons=("python3.11", "python3.10"),
    java=17,
    java_package="openjdk-17-jre-headless",
    probe=(
        "import json, importlib.metadata as m\n"
        "names = ['edge-mdt', 'model-compression-toolkit', 'imx500-converter', 'tensorflow']\n"
        "v = {}\n"
        "for n in names:\n"
        "    try: v[n] = m.version(n)\n"
        "    except m.PackageNotFoundError: pass\n"
        "import model_compression_toolkit, tensorflow\n"
        "print(json.dumps(v))\n"
    ),
    licence="proprietary wheels (Sony Semiconductor Solutions); installed by the user from the package index",
)
TOOLCHAINS: dict[str, ToolchainSpec] = {IMX500.name: IMX500}


def spec(name: str) -> ToolchainSpec:
    if name not in TOOLCHAINS:
        raise ConfigError(f"unknown toolchain '{name}' (known: {', '.join(TOOLCHAINS)})")
    return TOOLCHAINS[name]


def root() -> Path:
    return cache_dir("toolchains")


def venv_dir(name: str) -> Path:
    return root() / spec(name).name


def python_of(name: str) -> Path:
    return venv_dir(name) / "bin" / "python"


def record_of(name: str) -> dict[str, Any] | None:
    """toolchain.json of an installed toolchain, or None when it is not (completely) installed."""
    path = venv_dir(name) / "toolchain.json"
    if not path.is_file() or not python_of(name).exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def java_version(java: str | None = None) -> int | None:
    """The major version of the ``java`` on PATH (or ``$JAVA_HOME/bin/java``); None when there is none."""
    exe = java or (os.path.join(os.environ["JAVA_HOME"], "bin", "java") if os.environ.get("JAVA_HOME") else "java")
    if not shutil.which(exe):
        return None
    try:
        out = subprocess.run([exe, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not m:
        return None
    major = int(m.group(1))
    return int(m.group(2) or 0) if major == 1 else major  # "1.8.0" is Java 8


def check_java(s: ToolchainSpec) -> int | None:
    """The Java major version, or ToolchainError naming the Debian package when it is missing or too old."""
    if s.java is None:
        return None
    found = java_version()
    if found is None or found < s.java:
        what = "no Java runtime (java) on PATH" if found is None else f"Java {found} found"
        raise ToolchainError(
            f"the {s.name} toolchain needs a Java {s.java} runtime; {what}: apt-get install {s.java_package}",
            hint=f"install it: apt-get install {s.java_package} (or set JAVA_HOME)",
        )
    return found


def require(name: str) -> Path:
    """The toolchain's interpreter, or ToolchainError with the one command that installs it (a conversion calls this;
    it never installs anything)."""
    s = spec(name)
    if record_of(name) is None:
        raise ToolchainError(
            f"the {s.name} toolchain is not installed (looked in {venv_dir(name)}): run edgecnn toolchain install {s.name}",
            hint=f"run: edgecnn toolchain install {s.name}",
        )
    check_java(s)
    return python_of(name)


def find_python(s: ToolchainSpec, python: str | None = None) -> str:
    """An interpreter for the toolchain's venv: ``python`` if given, else the first of the spec's that exists."""
    for candidate in [python] if python else s.pythons:
        path = shutil.which(candidate) if candidate else None
        if path:
            return path
    wanted = python or " or ".join(s.pythons)
    raise ToolchainError(
        f"the {s.name} toolchain needs {wanted} (its TensorFlow 2.15 has no wheels for Python {sys.version_info.major}."
        f"{sys.version_info.minor} and newer than 3.11); none found on PATH",
        hint="install Python 3.11 (apt-get install python3.11 python3.11-venv, or pyenv) or pass --python PATH",
    )


def folder_bytes(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total


def _run(cmd: list[str], say: Callable[[str], None], what: str) -> None:
    """Run ``cmd``, passing its pip progress lines ("Collecting", "Downloading", "Installing") to ``say``."""
    import threading

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    tail: list[str] = []
    quiet = threading.Event()
    t0 = time.monotonic()

    def heartbeat() -> None:  # pip says nothing while it unpacks TensorFlow (minutes)
        while not quiet.wait(30):
            say(f"  ... still working ({time.monotonic() - t0:.0f} s)")

    threading.Thread(target=heartbeat, daemon=True).start()
    try:
        for line in proc.stdout or ():
            line = line.rstrip()
            tail = (tail + [line])[-20:]
            if line.startswith(("Collecting", "Installing", "Successfully installed", "Downloading")):
                say(line[:160])
    finally:
        quiet.set()
    if proc.wait() != 0:
        last = next((ln for ln in reversed(tail) if ln.strip()), "no output")
        raise ToolchainError(f"{what} failed (exit {proc.returncode}): {last[:300]}")


def install(name: str, *, python: str | None = None, force: bool = False, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Build the toolchain's venv (replacing a half-built one; ``force``: a complete one too); its toolchain.json."""
    s = spec(name)
    java = check_java(s)
    existing = record_of(name)
    if existing and not force:
        say(f"{s.name} is already installed in {venv_dir(name)} (--force rebuilds it)")
        return existing
    interpreter = find_python(s, python)
    target = venv_dir(name)
    if target.exists():
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    say(f"creating a venv with {interpreter} in {target}")
    _run([interpreter, "-m", "venv", str(target)], say, "creating the venv")
    py = str(python_of(name))
    _run([py, "-m", "pip", "install", "--upgrade", "pip"], say, "upgrading pip")
    say(f"installing {' '.join(s.requirements)} ({s.licence})")
    _run([py, "-m", "pip", "install", *s.requirements], say, f"pip install {' '.join(s.requirements)}")
    say("checking that it imports")
    probe = subprocess.run([py, "-c", s.probe], capture_output=True, text=True, timeout=600)
    if probe.returncode != 0:
        raise ToolchainError(f"the {s.name} toolchain was installed but does not import: {probe.stderr.strip()[-300:]}")
    record = {
        "name": s.name,
        "python": subprocess.run([py, "-c", "import platform; print(platform.python_version())"], capture_output=True,
                                 text=True).stdout.strip(),
        "requirements": list(s.requirements),
        "versions": json.loads(probe.stdout.strip().splitlines()[-1]),
        "java": java,
        "seconds": round(time.perf_counter() - t0, 1),
        "bytes": folder_bytes(target),
        "installed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "licence": s.licence,
    }  # fmt: skip
    (target / "toolchain.json").write_text(json.dumps(record, indent=2))
    return record


def listing() -> list[dict[str, Any]]:
    """One row per known toolchain: installed or not, with its record."""
    rows = []
    for name, s in TOOLCHAINS.items():
        rec = record_of(name)
        rows.append({"name": name, "installed": rec is not None, "path": str(venv_dir(name)), "description": s.description,
                     **(rec or {})})  # fmt: skip
    return rows
