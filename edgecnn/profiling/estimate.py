"""Roofline latency estimate for a device we are not running on.

Each layer costs max(2 * MACs / peak compute, bytes moved / memory bandwidth); the sum is scaled
by an efficiency factor (measured / roofline) calibrated on this host, so the estimate inherits the
runtime's real overheads rather than assuming peak throughput.
"""

from __future__ import annotations

from typing import Any

from edgecnn.devices import DeviceProfile

_BYTES = {"fp32": (4, 4), "fp16": (2, 4), "dynamic": (1, 4), "int8": (1, 1)}  # (weights, activations)


def layer_costs(report: Any) -> list[list[int]]:
    """Compact per-layer [MACs, params, activation bytes at fp32] from an ``inspect`` report."""
    return [[layer.macs, layer.params, layer.activation_bytes] for layer in report.layers]


def roofline_ms(layers: list[list[int]], precision: str, profile: DeviceProfile, threads: int | None = None) -> float:
    w_bytes, a_bytes = _BYTES.get(precision, (4, 4))
    cores = profile.cpu.cores
    used = min(threads or profile.threads or cores, cores)
    peak = (profile.cpu.peak_int8_gops if precision == "int8" else profile.cpu.peak_fp32_gflops) * 1e9 * used / cores
    bw = profile.memory.bandwidth_gbps * 1e9
    total = 0.0
    for macs, params, act in layers:
        moved = params * w_bytes + 2 * act * a_bytes / 4  # weights once, activation written and read again
        total += max(2 * macs / peak, moved / bw)
    return total * 1e3


def estimate(
    layers: list[list[int]],
    precision: str,
    *,
    host: DeviceProfile,
    target: DeviceProfile,
    measured_host_ms: float,
    host_threads: int | None = None,
    efficiency: float | None = None,
) -> dict[str, Any]:
    """Estimate ``target`` latency from a measurement here. ``efficiency`` overrides the host calibration."""
    host_roof = roofline_ms(layers, precision, host, host_threads)
    eff = efficiency if efficiency is not None else (measured_host_ms / host_roof if host_roof > 0 else 1.0)
    target_roof = roofline_ms(layers, precision, target)
    return {
        "device": target.name,
        "estimated_p50_ms": target_roof * eff,
        "roofline_ms": target_roof,
        "host_roofline_ms": host_roof,
        "efficiency_factor": eff,
        "method": "roofline x host efficiency (an ESTIMATE, not a measurement)",
    }
