"""Device side: what `edgecnn board install` copies to a board, made on the host: edgecnn's own wheel (built from
this checkout, or rebuilt from this install) and, for an offline board, a wheelhouse of every dependency for the
board's platform (``pip download --only-binary :all: --platform ...``), both cached by content.

The wheelhouse is cached under ``$EDGECNN_CACHE/wheelhouse/<key>``, the key being the board's platform tags, its
Python and the requirement set (edgecnn's declared dependencies and the extras asked for), so a second board of the
same kind copies it only. edgecnn's wheel is kept apart from it: a new edgecnn with the same dependencies reuses it.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecnn.errors import EdgeCNNError

# the oldest glibc each architecture's manylinux tags start at (PEP 600: manylinux2014 is manylinux_2_17)
_GLIBC_FLOOR = {"x86_64": 5, "i686": 5}
_LEGACY = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}


class WheelhouseError(EdgeCNNError):
    """The wheels a board needs cannot be made or found here."""


@dataclass(frozen=True)
class Target:
    """The platform a board's pip installs for: what pip download needs to fetch wheels it will accept."""

    arch: str  # x86_64, aarch64, armv7l (a 32-bit userland on a 64-bit kernel is armv7l)
    python: tuple[int, int]
    libc: str  # glibc or musl
    libc_version: tuple[int, int]

    @property
    def platforms(self) -> list[str]:
        """Every platform tag the board's pip accepts, newest first (ai-edge-litert's aarch64 wheels are
        manylinux_2_27: naming only manylinux2014 would miss them)."""
        major, minor = self.libc_version
        if self.libc == "musl":
            return [f"musllinux_{major}_{m}_{self.arch}" for m in range(minor, -1, -1)]
        floor = _GLIBC_FLOOR.get(self.arch, 17)
        tags = []
        for m in range(minor, floor - 1, -1):
            tags.append(f"manylinux_2_{m}_{self.arch}")
            if m in _LEGACY and (m != 5 or self.arch in _GLIBC_FLOOR):
                tags.append(f"{_LEGACY[m]}_{self.arch}")
        return [*tags, f"linux_{self.arch}"]  # piwheels (Raspberry Pi OS) publishes linux_armv7l wheels

    def describe(self) -> str:
        tags = [t for t in self.platforms if not t.startswith("linux_")]
        span = f"{tags[-1]}..{tags[0]}" if len(tags) > 1 else ", ".join(tags)
        return f"linux {self.arch}, CPython {self.python[0]}.{self.python[1]}, {self.libc} " + (
            f"{self.libc_version[0]}.{self.libc_version[1]} ({span})"
        )

    def pip_options(self) -> list[str]:
        cp = f"cp{self.python[0]}{self.python[1]}"
        opts = ["--only-binary", ":all:", "--python-version", f"{self.python[0]}.{self.python[1]}", "--implementation", "cp"]
        opts += ["--abi", cp, "--abi", "abi3", "--abi", "none"]
        for tag in self.platforms:
            opts += ["--platform", tag]
        return opts


# ---- edgecnn's own wheel ----------------------------------------------------------------------------------------
def _checkout() -> Path | None:
    """The source tree this edgecnn runs from, when it is one (pyproject.toml naming edgecnn beside the package)."""
    root = Path(__file__).resolve().parents[2]
    project = root / "pyproject.toml"
    if project.is_file() and re.search(r'^name\s*=\s*"edgecnn"', project.read_text(), re.M):
        return root
    return None


def _source_digest(root: Path) -> str:
    h = hashlib.sha256()
    files = [root / "pyproject.toml", root / "README.md"]
    for folder in ("edgecnn", "devices", "recipes", "assets"):
        files += sorted(p for p in (root / folder).rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    for path in files:
        if path.is_file():
            h.update(path.relative_to(root).as_posix().encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()[:24]


def edgecnn_wheel(cache: Path, *, log: Callable[[str], None] = lambda _: None) -> Path:
    """edgecnn's wheel for the board: built from this checkout (once per content), else rebuilt from the files of
    this install (an edgecnn installed from its wheel carries everything its wheel held)."""
    root = _checkout()
    if root is None:
        return _wheel_from_install(cache)
    folder = cache / f"src-{_source_digest(root)}"
    found = sorted(folder.glob("edgecnn-*.whl"))
    if found:
        return found[0]
    log("building edgecnn's wheel from this checkout")
    import importlib.util

    # with the build backend here, no index is needed to build (a host that is offline too)
    isolation = ["--no-build-isolation"] if importlib.util.find_spec("hatchling") else []
    with tempfile.TemporaryDirectory(prefix="edgecnn-wheel-", dir=_made(cache)) as tmp:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--no-deps",
                *isolation,
                "--disable-pip-version-check",
                "-q",
                "-w",
                tmp,
                str(root),
            ],
            capture_output=True,
            text=True,
            timeout=900,
        )
        wheels = sorted(Path(tmp).glob("edgecnn-*.whl"))
        if proc.returncode != 0 or not wheels:
            last = (proc.stderr.strip().splitlines() or ["no wheel made"])[-1]
            raise WheelhouseError(f"building edgecnn's wheel from {root} failed: {last[:300]}", hint="pip wheel --no-deps .")
        folder.mkdir(parents=True, exist_ok=True)
        shutil.move(str(wheels[0]), folder / wheels[0].name)
    return folder / wheels[0].name


def _made(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder


_NOT_IN_WHEEL = ("RECORD", "INSTALLER", "REQUESTED", "direct_url.json")


def _in_wheel(f: Any, info: str) -> bool:
    """An installed file its wheel held: not a script pip wrote (../../bin), a .pyc, or pip's own records."""
    if f.parts[0] == ".." or f.suffix == ".pyc" or "__pycache__" in f.parts:
        return False
    return not (f.parts[0] == info and f.name in _NOT_IN_WHEEL)


def _wheel_from_install(cache: Path, name: str = "edgecnn") -> Path:
    """The wheel an installed distribution came from, made again from its RECORD: its packages and .dist-info
    (without what pip added at install time and the scripts it wrote), with a fresh RECORD."""
    import base64
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        dist = distribution(name)
    except PackageNotFoundError:
        raise WheelhouseError(f"{name} is not installed here", hint=f"pip install {name}") from None
    files = list(dist.files or [])
    info = next((f.parts[0] for f in files if f.parts[0].endswith(".dist-info")), None)
    if info is None:
        raise WheelhouseError(
            f"{name} here was not installed from a wheel (no RECORD)", hint=f"pip install --force-reinstall {name}"
        )
    members = [f for f in files if _in_wheel(f, info)]
    digest = hashlib.sha256("".join(sorted(f"{f}:{f.hash.value if f.hash else ''}" for f in members)).encode())
    out = (
        cache
        / f"installed-{digest.hexdigest()[:24]}"
        / f"{dist.metadata['Name'].replace('-', '_')}-{dist.version}-py3-none-any.whl"
    )
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    part = out.with_suffix(".part")
    with zipfile.ZipFile(part, "w", zipfile.ZIP_DEFLATED) as zf:
        record = []
        for f in sorted(members, key=str):
            data = Path(str(f.locate())).read_bytes()
            zf.writestr(f.as_posix(), data)
            sha = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{f.as_posix()},sha256={sha},{len(data)}")
        record.append(f"{info}/RECORD,,")
        zf.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    part.replace(out)
    return out


def bootstrap_folder(wheel: Path, cache: Path, *, log: Callable[[str], None] = lambda _: None) -> Path:
    """A folder with edgecnn's wheel and pip's (rebuilt from this pip, so no network is needed): what every install
    copies first. pip's wheel lets the board make its venv without ensurepip."""
    log("pip's wheel from this pip")
    pip = _wheel_from_install(cache, "pip")
    folder = cache / f"boot-{sha256(wheel)[:16]}-{sha256(pip)[:8]}" / "edgecnn-wheels"
    if not (folder / wheel.name).is_file():
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy2(pip, folder / pip.name)
        shutil.copy2(wheel, folder / (wheel.name + ".part"))
        (folder / (wheel.name + ".part")).replace(folder / wheel.name)
    return folder


def wheel_metadata(wheel: Path) -> tuple[str, list[str], list[str]]:
    """(version, Requires-Dist lines, Provides-Extra names) of a wheel."""
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        text = zf.read(name).decode()
    version = re.search(r"^Version: (.+)$", text, re.M)
    requires = re.findall(r"^Requires-Dist: (.+)$", text, re.M)
    extras = re.findall(r"^Provides-Extra: (.+)$", text, re.M)
    return (version.group(1).strip() if version else "?"), requires, extras


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---- the wheelhouse for a board's platform -----------------------------------------------------------------------
def wheelhouse(
    target: Target, wheel: Path, extras: list[str], cache: Path, *, log: Callable[[str], None] = lambda _: None
) -> tuple[Path, bool]:
    """A folder of every wheel ``edgecnn[extras]`` needs on ``target``, but not edgecnn's own: (folder, made now).
    Cached by platform and requirement set."""
    _, requires, _ = wheel_metadata(wheel)
    key = {"platforms": target.platforms, "python": target.python, "requires": sorted(requires), "extras": sorted(extras)}
    folder = cache / (
        f"{target.arch}-cp{target.python[0]}{target.python[1]}-{'-'.join(sorted(extras)) or 'base'}-"
        + hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    )
    if (folder / "wheelhouse.json").is_file():
        return folder, False
    with tempfile.TemporaryDirectory(prefix="wheelhouse-", dir=_made(cache)) as tmp:
        dest = Path(tmp) / "wheelhouse"
        spec = f"{wheel}[{','.join(extras)}]" if extras else str(wheel)
        argv = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--progress-bar", "off"]
        argv += [*target.pip_options(), "--dest", str(dest), spec]
        _download(argv, target, log)
        (dest / wheel.name).unlink(missing_ok=True)
        files = sorted(p.name for p in dest.glob("*.whl"))
        (dest / "wheelhouse.json").write_text(json.dumps({**key, "wheels": files}, indent=1))
        shutil.rmtree(folder, ignore_errors=True)
        shutil.move(str(dest), folder)
    return folder, True


def _download(argv: list[str], target: Target, log: Callable[[str], None]) -> None:
    """Run pip download, passing each wheel it fetches to ``log``; its failure as one line."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout or []:
        lines.append(line.rstrip())
        got = re.match(r"\s*(?:Downloading|Saved|File was already downloaded) (\S+)", line)
        if got:
            log(f"downloading {Path(got.group(1)).name}")
    if proc.wait() != 0:
        raise no_wheels_error("\n".join(lines), target.describe(), where="here (the host)")


def no_wheels_error(output: str, platform: str, *, where: str) -> WheelhouseError:
    """pip's failure to find or fetch a package, as one line that names the package and the platform."""
    if re.search(r"NewConnectionError|Failed to establish|Temporary failure in name resolution|Network is unreachable", output):
        return WheelhouseError(
            f"pip cannot reach the package index {where}", hint="the wheelhouse is made on the host: give it a network"
        )
    missing = re.search(r"Could not find a version that satisfies the requirement (\S+)(?: \(from ([^)]+)\))?", output)
    if missing:
        why = f" (needed by {missing.group(2)})" if missing.group(2) else ""
        hint = (
            "32-bit Raspberry Pi OS: PyPI has no armv7l wheels of it; install connected (the board's pip reads piwheels, "
            "/etc/pip.conf there) with --extras opencv, then tflite-runtime 2.14 and numpy<2 (README: Install, Per device), "
            "or use the 64-bit OS"
            if "armv7l" in platform
            else "ask for a runtime that has wheels for this board with --extras (litert, onnx, openvino), "
            "or install that runtime there by hand"
        )
        return WheelhouseError(f"no wheel of {missing.group(1)}{why} for {platform}", hint=hint)
    last = next((ln for ln in reversed(output.splitlines()) if ln.startswith("ERROR")), output.strip()[-300:])
    return WheelhouseError(f"pip download failed {where} for {platform}: {last[:300]}")


def folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
