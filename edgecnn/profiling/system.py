"""The context that makes latency numbers comparable: CPU, threads, governor, clocks, temperatures, throttling."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any


def _read(p: Path) -> str | None:
    try:
        return p.read_text().strip()
    except OSError:
        return None


def temperatures(root: str | Path = "/") -> dict[str, float]:
    """Every thermal zone in degrees C (``/sys/class/thermal``), keyed by zone type."""
    out: dict[str, float] = {}
    for zone in sorted(Path(root, "sys/class/thermal").glob("thermal_zone*")):
        t = _read(zone / "temp")
        kind = _read(zone / "type") or zone.name
        if t and t.lstrip("-").isdigit():
            out[f"{kind}"] = int(t) / 1000.0
    return out


def throttling() -> dict[str, Any] | None:
    """``vcgencmd get_throttled`` on a Raspberry Pi: bit 0 under-voltage, 1 capped, 2 throttled, 3 soft limit (now);
    bits 16-19 the same since boot."""
    exe = shutil.which("vcgencmd")
    if not exe:
        return None
    try:
        out = subprocess.run([exe, "get_throttled"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    return decode_throttled(out)


def decode_throttled(text: str) -> dict[str, Any]:
    value = int(text.split("=", 1)[1], 16) if "=" in text else int(text, 16)
    names = ["under_voltage", "freq_capped", "throttled", "soft_temp_limit"]
    return {
        "raw": hex(value),
        "now": [n for i, n in enumerate(names) if value >> i & 1],
        "since_boot": [n for i, n in enumerate(names) if value >> (16 + i) & 1],
    }


def cpu_context(root: str | Path = "/") -> dict[str, Any]:
    cpu = Path(root, "sys/devices/system/cpu/cpu0/cpufreq")
    cur = _read(cpu / "scaling_cur_freq")
    mx = _read(cpu / "cpuinfo_max_freq")
    from edgecnn.devices import cpu_features, host_facts, int8_outlook

    facts = host_facts(root, query_gpu=False)
    return {
        "cpu_model": facts.cpu_model,
        "cores": facts.cores,
        "arch": platform.machine(),
        "flags": list(facts.flags),
        "features": cpu_features(facts.flags),  # int8 dot product, int8 matrix, bf16, fp16, vectors: what is there
        "int8_outlook": int8_outlook(facts.flags, platform.machine()),
        "governor": _read(cpu / "scaling_governor"),
        "clock_mhz": int(cur) / 1000 if cur and cur.isdigit() else None,
        "max_clock_mhz": int(mx) / 1000 if mx and mx.isdigit() else None,
        "python": platform.python_version(),
        "os": platform.platform(),
        "load_avg": list(os.getloadavg()),
    }


def gpu_context() -> list[dict[str, str]]:
    """The NVIDIA GPUs as nvidia-smi reports them (name, driver, memory MiB, SM clock and its maximum MHz, °C), for a
    profile measured on one; empty without nvidia-smi."""
    from edgecnn.devices import nvidia_smi

    return nvidia_smi(("name", "driver_version", "memory.total", "clocks.sm", "clocks.max.sm", "temperature.gpu"))


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 1e6


def peak_rss_mb() -> float:
    """Peak resident memory of this process. VmHWM belongs to the address space, so it starts afresh at exec;
    getrusage's ru_maxrss does not (a child started by a big parent inherits the parent's peak)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB, macOS bytes
