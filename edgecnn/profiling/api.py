"""Profile a model here for a device profile: its runtime chain and threads, and an estimate for the device when it
is not this host (``edgecnn.profile`` and ``edgecnn profile`` both call ``profile_for``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgecnn.devices import DeviceProfile, detect, load_profile
from edgecnn.profiling.measure import ProfileOptions, profile


def profile_for(
    model: str | Path,
    *,
    device: str | None = None,
    runtime: str | None = None,
    opts: ProfileOptions = ProfileOptions(),
    calibration: str | Path | None = None,
    trust_key: str | Path | None = None,
    self_check: bool = True,
    tick: Callable[[float], None] | None = None,
) -> dict[str, Any]:
    """Measure ``model`` (an artifact folder, a conversion output folder, or a bare model file) on this host.

    ``device`` (default: this host, detected): its runtime chain and threads apply; when it is another device, the
    measurement is made here with its chain (threads capped at this host's cores) and the result gains an
    ``estimate`` for it (``calibration``: the calibration file the estimate uses, default the one
    ``edgecnn calibrate`` wrote)."""
    from edgecnn.signing import trust_key_from

    host_name = detect()[0]
    target = load_profile(device or host_name)
    measured_on = load_profile(host_name) if target.name != host_name else target
    result = profile(
        model,
        profile=target if target is measured_on else _host_chain(target, measured_on),
        runtime=runtime,
        opts=opts,
        tick=tick,
        trust_key=trust_key_from(str(trust_key) if trust_key else None),  # or $EDGECNN_TRUST_KEY, checked first
        self_check=self_check,
    )
    # where it was measured, apart from the profile whose chain and threads it used: 'rpi4' measured on this
    # workstation is this workstation's latency (issue #31: report read it as a Pi's)
    result["measured_profile"] = host_name
    if target is not measured_on:
        result["estimate"] = _estimate(result, measured_on, target, calibration)
    return result


def _host_chain(target: DeviceProfile, host: DeviceProfile) -> DeviceProfile:
    """Measure here with the target's runtime chain and threads (capped at this host's cores)."""
    return dataclasses.replace(target, threads=min(target.threads, host.cpu.cores))


def _estimate(result: dict[str, Any], host: DeviceProfile, target: DeviceProfile, calibration: str | Path | None) -> dict[str, Any]:
    from edgecnn.profiling.estimate import estimate, find_calibration, find_device_calibration

    artifact = result["model"].get("artifact")
    if not artifact:
        return {
            "device": target.name,
            "note": "no estimate for a bare model file: per-layer costs come from an edgecnn artifact's manifest",
        }
    from edgecnn.manifest import Manifest

    m = Manifest.load(artifact, verify=False)
    layers = (m.extra.get("cost") or {}).get("layers")
    if not layers:
        return {"device": target.name, "note": "the artifact's manifest has no per-layer costs (converted by an older edgecnn?)"}
    threads = result["threads"] or host.threads
    runtime = result["runtime"]["runtime"]
    found = find_calibration(runtime, m.precision, threads, cpu_model=host.cpu.model, path=calibration)
    from_boards = None if target.name == host.name else find_device_calibration(target.name, runtime, m.precision, target.threads)
    return estimate(
        layers,
        m.precision,
        host=host,
        target=target,
        measured_host_ms=result["invoke"]["p50"],
        host_samples_ms=result["raw_ms"]["invoke"],
        host_threads=threads,
        calibration=found,
        device_calibration=from_boards,
    )
