"""Device side: device profiles: what to produce for a board, which runtime to try first, and its figures.

This module alone knows device names. Profiles live in YAML (``devices/*.yaml`` in the repo,
shipped inside the wheel); ``host`` is completed at run time from this machine.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from edgecnn import config
from edgecnn.errors import ConfigError, UnknownNameError
from edgecnn.registry import did_you_mean


@dataclass(frozen=True)
class DetectRule:
    """How to recognise the device (any rule matching is enough)."""

    device_tree_model: str | None = None  # substring of /proc/device-tree/model
    tegra_release: tuple[str, ...] = ()  # substrings of /etc/nv_tegra_release ("# R32" = Nano, "# R36" = Orin)
    nvidia_smi: bool = False  # an NVIDIA discrete GPU answers nvidia-smi
    usb_id: str | None = None  # e.g. Coral USB "1a6e:089a"


@dataclass(frozen=True)
class CPUSpec:
    model: str = "unknown"
    cores: int = 1
    clock_ghz: float = 1.0
    peak_fp32_gflops: float = 10.0
    peak_int8_gops: float = 20.0
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class MemorySpec:
    size_gb: float = 1.0
    bandwidth_gbps: float = 5.0


@dataclass(frozen=True)
class Accelerator:
    name: str
    kind: str  # gpu, npu, tpu
    peak_fp16_tflops: float = 0.0
    peak_int8_tops: float = 0.0
    memory_bandwidth_gbps: float = 0.0


@dataclass(frozen=True)
class DeviceProfile:
    """One target device.

    ``artifacts`` are ``format/precision`` pairs in order of preference; ``runtimes`` is the
    fallback chain as ``runtime[:accelerator]`` entries (``onnxruntime:CUDA``, ``litert``).
    """

    name: str
    description: str
    arch: str
    cpu: CPUSpec
    memory: MemorySpec
    artifacts: tuple[str, ...]
    runtimes: tuple[str, ...]
    threads: int = 4
    int8_io: str = "int8"  # dtype of a full-integer model's input/output: int8 or uint8
    # the oldest LiteRT (tflite-runtime) the TFLite artifacts must load in: "2.14" is the last tflite-runtime with
    # wheels for 32-bit Raspberry Pi OS, and it cannot load dynamic-range models whose dense layers have one scale
    # per channel (FULLY_CONNECTED version 12, what TensorFlow 2.21's converter writes): those get one per tensor
    litert_floor: str | None = None
    accelerators: tuple[Accelerator, ...] = ()
    detect: DetectRule = field(default_factory=DetectRule)
    notes: tuple[str, ...] = ()

    def artifact_pairs(self) -> list[tuple[str, str]]:
        return [tuple(a.split("/", 1)) for a in self.artifacts]  # type: ignore[misc]

    def runtime_chain(self) -> list[tuple[str, str | None]]:
        out = []
        for entry in self.runtimes:
            name, _, acc = entry.partition(":")
            out.append((name, acc or None))
        return out


def profiles_dir() -> Path:
    """Where device YAMLs live: inside the wheel, else the repository's ``devices/``."""
    from edgecnn.resources import resource_dir

    return resource_dir("devices")


@cache
def _profile_files() -> dict[str, Path]:
    return {p.stem: p for p in sorted(profiles_dir().glob("*.yaml"))}


def list_profiles() -> list[str]:
    return list(_profile_files())


def load_profile(name: str) -> DeviceProfile:
    """Load a profile by name (or from a YAML path); ``host`` is filled in from this machine."""
    if name.endswith((".yaml", ".yml")) and Path(name).is_file():
        return _validate(config.load(DeviceProfile, name), name)
    files = _profile_files()
    if name not in files:
        known = sorted(files)
        raise UnknownNameError(f"unknown device '{name}' (known: {', '.join(known)}).{did_you_mean(name, known)}")
    profile = _validate(config.load(DeviceProfile, files[name]), str(files[name]))
    if name == "host":
        profile = complete_host(profile)
    return profile


def _validate(profile: DeviceProfile, source: str) -> DeviceProfile:
    from edgecnn.formats import parse_pair
    from edgecnn.runtime.base import RUNTIMES

    for item in profile.artifacts:
        try:
            parse_pair(item)
        except ConfigError as exc:
            raise ConfigError(f"{source}: artifact '{item}' is not format/precision (e.g. tflite/int8): {exc.message}") from None
    for entry in profile.runtimes:
        name, _, accelerator = entry.partition(":")
        if name not in RUNTIMES:
            raise ConfigError(f"{source}: runtime '{entry}' is unknown (known: {', '.join(sorted(RUNTIMES.names()))})")
        if accelerator and accelerator not in RUNTIMES.get(name).accelerators:
            raise ConfigError(f"{source}: runtime '{name}' has no accelerator '{accelerator}'")
    if profile.int8_io not in ("int8", "uint8"):
        raise ConfigError(f"{source}: int8_io must be int8 or uint8; received {profile.int8_io!r}")
    return profile


# ---- host detection ------------------------------------------------------------------------
def _read(path: Path) -> str:
    try:
        return path.read_bytes().replace(b"\x00", b"").decode("utf-8", "replace").strip()
    except OSError:
        return ""


def nvidia_smi(fields: tuple[str, ...]) -> list[dict[str, str]]:
    """One dict per NVIDIA GPU with these ``--query-gpu`` fields, as nvidia-smi reports them (no units); empty without
    nvidia-smi or when it fails."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    query = [exe, f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits"]
    try:
        out = subprocess.run(query, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return []
    rows = [[v.strip() for v in line.split(",")] for line in out.stdout.splitlines() if line.strip()]
    return [dict(zip(fields, r)) for r in rows if len(r) == len(fields)] if out.returncode == 0 else []


def _nvidia_gpus() -> list[str]:
    return [g["name"] for g in nvidia_smi(("name",))]


@dataclass(frozen=True)
class HostFacts:
    """What this machine says about itself (read from ``root`` so tests can use fixtures)."""

    cpu_model: str
    cores: int
    clock_ghz: float
    flags: tuple[str, ...]
    arch: str
    memory_gb: float
    device_tree_model: str
    tegra_release: str
    gpus: tuple[str, ...]


# Arm's CPU part numbers (/proc/cpuinfo "CPU part" with implementer 0x41): an Arm Linux kernel names no model
_ARM_PARTS = {
    "0xd03": "Cortex-A53",
    "0xd04": "Cortex-A35",
    "0xd05": "Cortex-A55",
    "0xd07": "Cortex-A57",
    "0xd08": "Cortex-A72",
    "0xd09": "Cortex-A73",
    "0xd0a": "Cortex-A75",
    "0xd0b": "Cortex-A76",
    "0xd0c": "Neoverse-N1",
    "0xd0d": "Cortex-A77",
    "0xd40": "Neoverse-V1",
    "0xd41": "Cortex-A78",
    "0xd42": "Cortex-A78AE",
    "0xd44": "Cortex-X1",
    "0xd46": "Cortex-A510",
    "0xd47": "Cortex-A710",
    "0xd48": "Cortex-X2",
    "0xd49": "Neoverse-N2",
    "0xd4b": "Cortex-A78C",
    "0xd4f": "Neoverse-V2",
}


def _cpu_model(cpuinfo: str) -> str | None:
    """The CPU's name: x86's "model name", else the Arm core from its part number (a Pi kernel's "Model" line
    names the board, not the CPU)."""
    named = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    if named:
        return named.group(1).strip()
    impl = re.search(r"^CPU implementer\s*:\s*(0x[0-9a-f]+)", cpuinfo, re.M | re.I)
    part = re.search(r"^CPU part\s*:\s*(0x[0-9a-f]+)", cpuinfo, re.M | re.I)
    if impl and part and impl.group(1).lower() == "0x41" and part.group(1).lower() in _ARM_PARTS:
        return _ARM_PARTS[part.group(1).lower()]
    other = re.search(r"^(?:Model|Hardware)\s*:\s*(.+)$", cpuinfo, re.M)
    return other.group(1).strip() if other else None


# The instruction sets that change which precision runs fastest, read from /proc/cpuinfo (x86 "flags", Arm "Features")
CPU_FEATURES: dict[str, tuple[str, ...]] = {
    "int8 dot product": ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp"),
    "int8 matrix": ("amx_int8", "i8mm"),
    "bf16": ("avx512_bf16", "amx_bf16", "bf16"),
    "fp16 arithmetic": ("avx512_fp16", "asimdhp", "fphp"),
    "vectors": ("avx2", "avx512f", "asimd", "sve", "sve2"),
}


_INTERESTING = frozenset({"avx", "fma", "neon"}.union(*CPU_FEATURES.values()))  # the flags host_facts keeps


def cpu_features(flags: tuple[str, ...] | list[str]) -> dict[str, list[str]]:
    """What the CPU offers that matters for inference: capability -> the flags that give it (empty: not there)."""
    have = set(flags)
    return {what: [f for f in group if f in have] for what, group in CPU_FEATURES.items()}


def int8_outlook(flags: tuple[str, ...] | list[str], arch: str) -> str:
    """Whether int8 can be faster than fp32 on this CPU, and why (the benchmark and devices --detect say it)."""
    dot = cpu_features(flags)["int8 dot product"]
    if dot:
        return f"int8 can beat fp32 here: the CPU has int8 dot-product instructions ({', '.join(dot)})"
    if arch.startswith(("aarch64", "arm")):
        return ("int8 is unlikely to beat fp32 by much here: this Arm CPU has no dot-product instructions (asimddp, "
                "Armv8.2+; a Cortex-A72 has none, a Cortex-A76 has them); int8 still cuts the model's size by 4x")
    return ("int8 is unlikely to beat fp32 here: this x86 CPU has no int8 dot-product instructions (AVX-512 VNNI, "
            "AVX-VNNI or AMX); int8 still cuts the model's size by 4x")


def host_facts(root: str | Path = "/", *, query_gpu: bool = True) -> HostFacts:
    root = Path(root)
    cpuinfo = _read(root / "proc/cpuinfo")
    model = _cpu_model(cpuinfo)
    flags_m = re.search(r"^(?:flags|Features)\s*:\s*(.+)$", cpuinfo, re.M)
    flags = set(flags_m.group(1).split()) if flags_m else set()
    mhz = _read(root / "sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    if mhz.isdigit():
        clock = int(mhz) / 1e6
    else:
        m = re.search(r"^cpu MHz\s*:\s*([\d.]+)", cpuinfo, re.M)
        clock = float(m.group(1)) / 1000 if m else 1.0
    cores = len(re.findall(r"^processor\s*:", cpuinfo, re.M)) or (os.cpu_count() or 1)
    if root == Path("/"):
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    meminfo = re.search(r"MemTotal:\s*(\d+)", _read(root / "proc/meminfo"))
    return HostFacts(
        cpu_model=model or platform.processor() or "unknown",
        cores=cores,
        clock_ghz=round(clock, 2),
        flags=tuple(sorted(flags & _INTERESTING)),
        arch=platform.machine() if root == Path("/") else ("aarch64" if {"asimd", "neon"} & flags else "x86_64"),
        memory_gb=round(int(meminfo.group(1)) / 1024 / 1024, 1) if meminfo else 0.0,
        device_tree_model=_read(root / "proc/device-tree/model"),
        tegra_release=_read(root / "etc/nv_tegra_release"),
        gpus=tuple(_nvidia_gpus()) if query_gpu else (),
    )


def _fp32_flops_per_cycle(flags: tuple[str, ...]) -> int:
    # per core: AVX-512 FMA 2x16x2, AVX2 FMA 2x8x2, AVX 8x2, NEON 2x4x2 (A72/A76 have two pipes)
    if "avx512f" in flags:
        return 64
    if "avx2" in flags and "fma" in flags:
        return 32
    if "avx" in flags:
        return 16
    return 16 if {"asimd", "neon"} & set(flags) else 8


def complete_host(profile: DeviceProfile, facts: HostFacts | None = None) -> DeviceProfile:
    """Fill the ``host`` profile's CPU and memory figures from this machine."""
    facts = facts or host_facts()
    fpc = _fp32_flops_per_cycle(facts.flags)
    int8_factor = 4 if {"avx512_vnni", "avx_vnni", "asimddp"} & set(facts.flags) else 2
    gflops = round(facts.cores * facts.clock_ghz * fpc, 1)
    cpu = CPUSpec(
        model=facts.cpu_model,
        cores=facts.cores,
        clock_ghz=facts.clock_ghz,
        peak_fp32_gflops=gflops,
        peak_int8_gops=round(gflops * int8_factor, 1),
        flags=facts.flags,
    )
    accels = tuple(Accelerator(name=g, kind="gpu") for g in facts.gpus)
    desc = f"this machine: {facts.cpu_model}, {facts.cores} cores" + (f", GPU {', '.join(facts.gpus)}" if facts.gpus else "")
    return dataclasses.replace(
        profile,
        description=desc,
        arch=facts.arch,
        cpu=cpu,
        memory=dataclasses.replace(profile.memory, size_gb=facts.memory_gb or profile.memory.size_gb),
        threads=min(profile.threads, facts.cores) if profile.threads else facts.cores,
        accelerators=accels,
    )


def detect(root: str | Path = "/", *, facts: HostFacts | None = None) -> tuple[str, str]:
    """Name the profile that matches this machine, with the evidence: (profile, reason). The strongest evidence
    first: the device tree's model, then Jetson's release file, then an NVIDIA GPU."""
    facts = facts or host_facts(root)
    candidates = [load_profile(n) for n in list_profiles() if n != "host"]
    for rule in (_by_device_tree, _by_tegra_release, _by_gpu):
        for p in candidates:
            reason = rule(p.detect, facts)
            if reason:
                return p.name, reason
    return "host", f"no board signature found; {facts.cpu_model}, {facts.cores} cores, flags {' '.join(facts.flags) or 'none'}"


def _by_device_tree(rule: DetectRule, facts: HostFacts) -> str | None:
    if rule.device_tree_model and rule.device_tree_model in facts.device_tree_model:
        return f"/proc/device-tree/model says {facts.device_tree_model!r}"
    return None


def _by_tegra_release(rule: DetectRule, facts: HostFacts) -> str | None:
    if facts.tegra_release and any(s in facts.tegra_release for s in rule.tegra_release):
        return f"/etc/nv_tegra_release says {facts.tegra_release.splitlines()[0][:60]!r}"
    return None


def _by_gpu(rule: DetectRule, facts: HostFacts) -> str | None:
    return f"nvidia-smi lists {', '.join(facts.gpus)}" if facts.gpus and rule.nvidia_smi else None
