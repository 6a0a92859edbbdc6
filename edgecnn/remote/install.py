"""Device side: ``edgecnn board install``: edgecnn in a venv on a bare board, over SSH, from the package index (the
board's own pip) or, offline, from a wheelhouse the host builds for the board's platform; then the installed
edgecnn's self-check on the board's own runtime.

Steps: probe (Python, architecture, libc, free space, profile) -> copy edgecnn's wheel (and the wheelhouse) into
the board's content-addressed cache -> venv -> pip install -> the installed edgecnn's ``verify --run`` of the small
artifact bundled with it -> a marker in the prefix (the wheel's sha256, extras, mode), so that a second run with
the same wheel installs nothing. Every failure is one RemoteError naming the board and the step."""

from __future__ import annotations

import json
import re
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from edgecnn.errors import ConfigError
from edgecnn.remote.board import DEFAULT_PREFIX, MARKER, BoardFacts, check_python, detect_profile, probe
from edgecnn.remote.transport import Board, RemoteError, push_cached, ssh
from edgecnn.remote.wheelhouse import edgecnn_wheel, folder_size, no_wheels_error, sha256, wheel_metadata

# a profile's first runtime, by accelerator, when its extra is not the runtime's own (runtime.base.RUNTIMES): CUDA
# is onnxruntime-gpu; TensorRT is a Jetson's, whose onnxruntime-gpu comes from JetPack (`jetson` brings LiteRT, the
# CPU fallback, and no pip OpenCV)
ACCELERATOR_EXTRA = {"CUDA": "gpu", "TensorRT": "jetson"}
NOT_ON_BOARDS = {"train": "the training toolchain", "all": "the training toolchain", "dev": "the test tools"}
OTHER_RUNTIME_PACKAGES = ("tflite-runtime", "onnxruntime-gpu")  # what a board may hold instead (README: Install, Per device)
# what the venv takes on disk, at least: edgecnn[litert] measured 345 MB on x86_64 and 244 MB on aarch64 (numpy,
# OpenCV, ai-edge-litert); the other runtimes are larger
NEEDED_BYTES = 300 * 1024 * 1024


@dataclass(frozen=True)
class InstallOptions:
    extras: tuple[str, ...] = ()  # empty: the extra the board's profile names
    prefix: str | None = None  # None: the fleet entry's edgecnn (PREFIX/bin/edgecnn), else DEFAULT_PREFIX
    offline: bool = False
    python: str | None = None
    upgrade: bool = False
    self_check: bool = True


@dataclass
class InstallReport:
    board: str
    prefix: str
    mode: str  # connected, offline, or "already installed"
    profile: str
    profile_reason: str
    extras: list[str]
    python: str
    platform: str
    installed: bool = False  # False: the same wheel was there already
    versions: dict[str, str] = field(default_factory=dict)
    size_bytes: int = 0
    bytes_copied: int = 0
    seconds: float = 0.0
    steps: dict[str, float] = field(default_factory=dict)
    self_check: str = ""
    edgecnn: str = ""  # the installed edgecnn command

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Steps:
    """One line per step on a terminal (a spinner while it runs, with what it is doing); timings kept either way."""

    def __init__(self, board: str, *, show: bool) -> None:
        self.board, self.show, self.times = board, show, {}
        self._status = None

    def run(self, name: str, fn: Callable[[], Any]) -> Any:
        t0 = time.monotonic()
        if not self.show:
            result = fn()
        else:
            from rich.console import Console
            from rich.text import Text

            console = Console(stderr=True, highlight=False)
            with console.status(Text(f"[{self.board}] {name}")) as status:
                self._status = (status, name)
                try:
                    result = fn()
                finally:
                    self._status = None
            console.print(f"[{self.board}] {name}: done in {time.monotonic() - t0:.1f} s", markup=False, soft_wrap=True)
        self.times[name] = round(self.times.get(name, 0) + time.monotonic() - t0, 2)
        return result

    def note(self, text: str) -> None:
        if self._status is not None:
            status, name = self._status
            from rich.text import Text

            status.update(Text(f"[{self.board}] {name}: {text}"))


def install_prefix(board: Board, options: InstallOptions) -> str:
    """--prefix, else the venv a fleet entry's ``edgecnn: PREFIX/bin/edgecnn`` names, else the default."""
    if options.prefix:
        return options.prefix
    if board.edgecnn != "edgecnn" and board.edgecnn.endswith("/bin/edgecnn"):
        return board.edgecnn[: -len("/bin/edgecnn")]
    return DEFAULT_PREFIX


def choose_extras(profile: str, asked: tuple[str, ...], wheel_extras: list[str]) -> list[str]:
    """The runtime extra the board's profile names, or the ones asked for (checked against the wheel's extras)."""
    if asked:
        allowed = sorted(set(wheel_extras) - set(NOT_ON_BOARDS))
        for extra in asked:
            if extra in NOT_ON_BOARDS:
                raise ConfigError(
                    f"--extras {extra}: {NOT_ON_BOARDS[extra]} does not go on a board", hint=f"choose from {', '.join(allowed)}"
                )
            if extra not in wheel_extras:
                raise ConfigError(f"--extras {extra}: edgecnn has no such extra (allowed: {', '.join(allowed)})")
        return sorted(set(asked))
    from edgecnn.devices import load_profile
    from edgecnn.runtime.base import RUNTIMES

    chain = load_profile(profile).runtime_chain()
    if not chain:
        raise ConfigError(f"device profile {profile!r} names no runtime", hint="name the extras with --extras")
    runtime, accelerator = chain[0]
    return [ACCELERATOR_EXTRA.get(accelerator or "", RUNTIMES.get(runtime).extra)]


def _selfcheck_artifact() -> Path:
    from edgecnn.resources import resource_dir

    return resource_dir("assets") / "selfcheck" / "lenet5-digits"


def install(board: Board, options: InstallOptions, *, cache: Path, show: bool = False) -> InstallReport:
    """Install edgecnn on ``board``; see the module's docstring."""
    t0 = time.monotonic()
    steps = Steps(board.label, show=show)
    prefix = install_prefix(board, options)
    facts = steps.run("probe", lambda: probe(board, python=options.python, prefix=prefix))
    check_python(board, facts)
    profile, reason = (board.device, "named in fleet.yaml") if board.device else detect_profile(facts)
    wheel = steps.run("edgecnn wheel", lambda: edgecnn_wheel(cache / "wheels", log=steps.note))
    version, _, wheel_extras = wheel_metadata(wheel)
    extras = choose_extras(profile, options.extras, wheel_extras)
    report = InstallReport(
        board=board.label,
        prefix=facts.prefix,
        mode="offline" if options.offline else "connected",
        profile=profile,
        profile_reason=reason,
        extras=extras,
        python=f"{facts.python} ({'.'.join(map(str, facts.version))})",
        platform=facts.target.describe(),
        edgecnn=f"{facts.prefix}/bin/edgecnn",
    )
    wheel_sha = sha256(wheel)
    if _same_install(board, facts, wheel_sha, extras, options):
        report.mode, report.versions = "already installed", facts.installed.get("versions", {})  # type: ignore[union-attr]
        report.size_bytes = facts.installed.get("size_bytes", 0)  # type: ignore[union-attr]
    else:
        _check_space(board, facts)
        _install(board, facts, options, wheel, extras, cache, steps, report)
        extras = report.extras = sorted(set(extras) | set((facts.installed or {}).get("extras", [])))  # pip keeps the old ones
        _write_marker(board, facts, {"wheel": wheel.name, "sha256": wheel_sha, "extras": extras, "version": version}, report)
    if options.self_check:
        report.self_check = steps.run("self-check", lambda: self_check(board, report))
    report.steps, report.seconds = steps.times, round(time.monotonic() - t0, 1)
    return report


def _same_install(board: Board, facts: BoardFacts, wheel_sha: str, extras: list[str], options: InstallOptions) -> bool:
    """True when the prefix holds this very wheel with these extras (and it still runs); a different one needs
    --upgrade."""
    mine = facts.installed
    if not mine:  # never into (nor, on failure, removing) a folder edgecnn did not make, --upgrade or not
        if facts.prefix_exists:
            listing = ssh(board, f"ls -A {shlex.quote(facts.prefix)} | head -3", step="probe", check=False).stdout.split()
            if listing:
                raise RemoteError(
                    f"{board.label}: probe: {facts.prefix} exists and is not an edgecnn install ({', '.join(listing)} ...)",
                    hint="choose another --prefix, or remove that folder there (an interrupted install leaves its venv)",
                )
        return False
    had = sorted(mine.get("extras", []))
    if mine.get("sha256") == wheel_sha and set(extras) <= set(had):
        alive = ssh(board, f"{shlex.quote(facts.prefix)}/bin/edgecnn --version", step="probe", check=False)
        return alive.returncode == 0
    if not options.upgrade:
        what = "from another wheel" if mine.get("sha256") != wheel_sha else f"without {', '.join(sorted(set(extras) - set(had)))}"
        raise RemoteError(
            f"{board.label}: probe: edgecnn {mine.get('version')} [{','.join(had)}] {what} is installed at {facts.prefix}",
            hint="add --upgrade to replace it in place (extras are added), or choose another --prefix",
        )
    return False


def _check_space(board: Board, facts: BoardFacts) -> None:
    if facts.free < NEEDED_BYTES:
        raise RemoteError(
            f"{board.label}: probe: no space for edgecnn at {facts.prefix}: {facts.free / 2**20:.0f} MB free there, "
            f"about {NEEDED_BYTES / 2**20:.0f} MB needed",
            hint="free space there, or choose a --prefix on a larger disk",
        )


def _install(
    board: Board,
    facts: BoardFacts,
    options: InstallOptions,
    wheel: Path,
    extras: list[str],
    cache: Path,
    steps: Steps,
    report: InstallReport,
) -> None:
    from edgecnn.remote.wheelhouse import bootstrap_folder, wheelhouse

    boot = steps.run("bootstrap wheels", lambda: bootstrap_folder(wheel, cache / "wheels", log=steps.note))
    remote_boot = _copy(board, boot, steps, "copy edgecnn's wheel", report)
    remote_house = None
    if options.offline:
        house, _ = steps.run("wheelhouse", lambda: wheelhouse(facts.target, wheel, extras, cache / "wheelhouse", log=steps.note))
        remote_house = _copy(board, house, steps, "copy the wheelhouse", report)
    steps.run("venv", lambda: _venv(board, facts, extras, remote_boot, options))
    steps.run(
        "pip install", lambda: _pip_install(board, facts, wheel, extras, remote_boot, remote_house, options, facts.installed)
    )
    report.installed = True
    report.versions, report.size_bytes = steps.run("inventory", lambda: _inventory(board, facts.prefix))


def _copy(board: Board, folder: Path, steps: Steps, name: str, report: InstallReport) -> str:
    """``folder`` in the board's content-addressed cache (nothing copied when it is there): its path there."""
    size = folder_size(folder)
    pushed = steps.run(f"{name} ({size / 2**20:.1f} MB)", lambda: push_cached(board, folder))
    report.bytes_copied += size if pushed.copied else 0
    return pushed.remote


def _venv(board: Board, facts: BoardFacts, extras: list[str], boot: str, options: InstallOptions) -> None:
    """The venv, without ensurepip (Debian's python3 without python3-venv's wheels cannot make one with pip), and
    pip from the wheel the host pushed."""
    q = shlex.quote
    py = f"{q(facts.prefix)}/bin/python"
    if facts.installed and options.upgrade:
        return  # in place: the venv is there
    system = " --system-site-packages" if "jetson" in extras else ""  # JetPack's OpenCV and onnxruntime-gpu
    pip_wheel = f"$(ls {q(boot)}/pip-*.whl | head -1)"
    line = (
        f"{q(facts.python)} -m venv --without-pip{system} {q(facts.prefix)} && "
        f'PIP_CONFIG_FILE=/dev/null {py} "{pip_wheel}/pip" install -q --no-index --disable-pip-version-check "{pip_wheel}"'
    )
    proc = ssh(board, line, step="venv", timeout=900, check=False)
    if proc.returncode == 255:
        ssh(board, "true", step="venv")  # ssh's own failure, read as ssh reads it
    if proc.returncode != 0:
        if not facts.prefix_exists:
            ssh(board, f"rm -rf {q(facts.prefix)}", step="venv", check=False)
        raise _pip_error(board, "venv", proc.stderr + proc.stdout, facts, offline=options.offline)


def _pip_install(
    board: Board,
    facts: BoardFacts,
    wheel: Path,
    extras: list[str],
    boot: str,
    house: str | None,
    options: InstallOptions,
    before: dict | None,
) -> None:
    q = shlex.quote
    py = f"{q(facts.prefix)}/bin/python"
    spec = f"{boot}/{wheel.name}" + (f"[{','.join(extras)}]" if extras else "")
    pip = f"{py} -m pip install --disable-pip-version-check --progress-bar off"
    if house:  # the wheelhouse only: not the index, nor what the board's pip configuration adds (find-links)
        pip = f"PIP_CONFIG_FILE=/dev/null {pip} --no-index --find-links {q(house)}"
    line = f"{pip}{' --upgrade' if before else ''} {q(spec)}"
    if before:  # the same version number from another wheel (a checkout's build): pip keeps it unless forced
        line += f" && {pip} --no-deps --force-reinstall {q(f'{boot}/{wheel.name}')}"
    proc = ssh(board, line, step="pip install", timeout=3600, check=False)
    if proc.returncode == 255:
        ssh(board, "true", step="pip install")
    if proc.returncode != 0:
        if not before and not facts.prefix_exists:
            ssh(board, f"rm -rf {q(facts.prefix)}", step="pip install", check=False)
        raise _pip_error(board, "pip install", proc.stderr + proc.stdout, facts, offline=options.offline)


_NETWORK = r"NewConnectionError|Failed to establish a new connection|Temporary failure in name resolution|Network is unreachable|ProxyError|Could not fetch URL"


def _pip_error(board: Board, step: str, output: str, facts: BoardFacts, *, offline: bool) -> RemoteError:
    """The board's pip failure as one line: no network, no space, no wheel for this platform, or pip's last error."""
    if re.search(r"No space left on device|Errno 28|Disk quota exceeded", output):
        return RemoteError(
            f"{board.label}: {step}: no space left on the board at {facts.prefix}",
            hint="free space there, or choose a --prefix on a larger disk",
        )
    if not offline and re.search(_NETWORK, output):
        return RemoteError(
            f"{board.label}: {step}: the board cannot reach the package index",
            hint="run again with --offline: the host downloads the wheels for the board and copies them",
        )
    if re.search(r"Could not find a version that satisfies|No matching distribution", output):
        why = no_wheels_error(output, facts.target.describe(), where="on the board")
        if offline:
            return RemoteError(f"{board.label}: {step}: {why.message} in the wheelhouse", hint=why.hint)
        # pip names no connection error when told not to retry: an index it cannot reach looks the same
        return RemoteError(f"{board.label}: {step}: {why.message}", hint=f"{why.hint}; if the board has no index, use --offline")
    last = [ln for ln in output.splitlines() if ln.strip()]
    error = next((ln for ln in reversed(last) if ln.startswith("ERROR") or "Error" in ln), last[-1] if last else "failed")
    return RemoteError(f"{board.label}: {step}: {error.strip()[:300]}")


def _inventory_script() -> str:
    from edgecnn.runtime.base import RUNTIMES

    names = ["edgecnn", "numpy", "opencv-python-headless"]
    names += [RUNTIMES.get(n).package for n in RUNTIMES.names()] + list(OTHER_RUNTIME_PACKAGES)
    return (
        "import json, importlib.metadata as m\n"
        f"names = {names!r}\n"
        "out = {}\n"
        "for n in names:\n"
        "    try:\n        out[n] = m.version(n)\n"
        "    except m.PackageNotFoundError:\n        pass\n"
        "print(json.dumps(out))\n"
    )


def _inventory(board: Board, prefix: str) -> tuple[dict[str, str], int]:
    """(package versions, bytes on disk) of the install."""
    q = shlex.quote
    proc = ssh(board, f"{q(prefix)}/bin/python -c {q(_inventory_script())} && du -sk {q(prefix)}", step="inventory", timeout=300)
    lines = proc.stdout.strip().splitlines()
    return json.loads(lines[0]), int(lines[-1].split()[0]) * 1024


def _write_marker(board: Board, facts: BoardFacts, wheel: dict[str, Any], report: InstallReport) -> None:
    marker = {**wheel, "mode": report.mode, "versions": report.versions, "size_bytes": report.size_bytes}
    marker["installed_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    path = f"{facts.prefix}/{MARKER}"
    ssh(board, f"printf '%s\\n' {shlex.quote(json.dumps(marker))} > {shlex.quote(path)}", step="marker")


def self_check(board: Board, report: InstallReport) -> str:
    """The installed edgecnn's ``verify --run`` of the artifact bundled with it, on the board's own runtime."""
    from edgecnn.remote.run import verify_on

    artifact = _selfcheck_artifact()
    if push_cached(board, artifact).copied:  # verify_on finds it in the board's cache: counted here
        report.bytes_copied += folder_size(artifact)
    records = verify_on(replace(board, edgecnn=report.edgecnn), artifact, run=True)
    checks = [r for r in records if r.get("kind") == "self-check"]
    passed = [r for r in checks if (r.get("result") or {}).get("passed")]
    if not passed:
        why = (checks or [r for r in records if r.get("kind") == "skipped"] or [{"text": "no self-check ran"}])[0]
        raise RemoteError(f"{board.label}: self-check: {str(why.get('text', '')).strip()}")
    return str(passed[0]["text"]).strip().removeprefix("self-check passed: ")
