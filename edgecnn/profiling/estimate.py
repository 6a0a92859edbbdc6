"""Latency estimate for a device we are not running on: a per-layer roofline with costs calibrated on this host.

Every layer of the model (from ``inspect``) gets a *kind* and a roofline time on a device,
``max(2 * MACs / peak compute, bytes moved / memory bandwidth)``. A runtime reaches a different fraction of the
roofline for each kind (a 3x3 convolution runs near peak, a depthwise one far from it), and pays a fixed cost
per inference and per operator. ``edgecnn calibrate`` measures those seven coefficients on this host by timing a
set of small networks with the real runtime and fitting them (non-negative least squares on relative error):

    t = call + op * n_ops + sum over kinds k of coefficient_k * roofline_k

The estimate for another device evaluates the same formula with that device's peak compute and bandwidth (from
its profile); the fixed costs scale with the clock. Without a calibration the estimate falls back to one
efficiency factor: this model's measured time here over its roofline here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from edgecnn.devices import DeviceProfile
from edgecnn.errors import ConfigError

_BYTES = {
    "fp32": (4, 4),
    "fp16": (2, 4),
    "dynamic": (1, 4),
    "int8": (1, 1),
    "int16x8": (1, 2),
}  # (weights, activations) per value
KINDS = ("conv", "pointwise", "depthwise", "dense", "memory", "average", "activation")
COEFFICIENTS = ("call_ms", "op_ms", *KINDS)

# Keras layers the converters fold into their neighbour (batch norm into the convolution, ReLU fused, reshapes
# free) cost nothing of their own; layers that move data without arithmetic are "memory"; an activation that no
# runtime fuses (tanh, sigmoid, swish, hard-swish, softmax...) is an operator of its own, "activation". Averaging
# is apart from other data movement because int8 kernels rescale every sum (an int8 average pool costs many times
# a max pool: README, "Measured here").
_FUSED_ACTIVATIONS = {"", "linear", "relu", "relu6"}
# piecewise-linear activations cost a compare and a multiply per value: data movement, not transcendental maths
_CHEAP_ACTIVATIONS = {"hard_sigmoid", "hard_silu", "hard_swish", "leaky_relu", "relu_n"}
_FREE = {
    "BatchNormalization",
    "ReLU",
    "Dropout",
    "SpatialDropout2D",
    "Flatten",
    "Reshape",
    "InputLayer",
}
_AVERAGE = {"AveragePooling2D", "GlobalAveragePooling2D"}
_MEMORY = {
    "MaxPooling2D",
    "GlobalMaxPooling2D",
    "ZeroPadding2D",
    "Add",
    "Multiply",
    "Concatenate",
    "Subtract",
    "Maximum",
    "Minimum",
    "Average",
    "Rescaling",
    "Normalization",
}


def layer_kind(layer_type: str, detail: str = "", macs: int = 0, activation: str = "") -> str:
    """The cost class of one Keras layer: conv, pointwise, depthwise, dense, memory, average,
    activation or free."""
    if layer_type in _FREE:
        return "free"
    if layer_type in ("Activation", "LeakyReLU", "PReLU", "ELU", "Softmax"):
        return _activation_kind(layer_type, activation)
    if layer_type == "DepthwiseConv2D" or "depthwise" in detail:
        return "depthwise"
    if layer_type in ("Conv2D", "SeparableConv2D"):
        return "pointwise" if detail.startswith("k=1x1") else "conv"
    if layer_type == "Dense":
        return "dense"
    if layer_type in _AVERAGE:
        return "average"
    return "memory" if layer_type in _MEMORY or macs == 0 else "conv"


def _activation_kind(layer_type: str, activation: str) -> str:
    """A standalone activation: cheap ones cost a pass over memory, fused ones nothing, the rest their own op."""
    if layer_type in ("LeakyReLU", "PReLU") or (layer_type == "Activation" and activation in _CHEAP_ACTIVATIONS):
        return "memory"
    return "free" if layer_type == "Activation" and activation in _FUSED_ACTIVATIONS else "activation"


def layer_costs(report: Any) -> list[list[Any]]:
    """Compact per-operator [MACs, params, input bytes, output bytes (fp32), kind, output channels, input
    channels] from an ``inspect`` report.

    A convolution or dense layer with an activation that is not fused (tanh in LeNet-5, softmax at the end)
    becomes two rows: the layer, then the activation operator on its output.
    """
    rows: list[list[Any]] = []
    for layer in report.layers:
        act = layer.activation
        kind = layer_kind(layer.type, layer.detail, layer.macs, act)
        channels = int(layer.output_shape[-1]) if layer.output_shape else 0
        rows.append([layer.macs, layer.params, layer.input_bytes, layer.activation_bytes, kind, channels, layer.input_channels])
        if kind in ("conv", "pointwise", "depthwise", "dense") and act not in _FUSED_ACTIVATIONS:
            extra = "memory" if act in _CHEAP_ACTIVATIONS else "activation"
            rows.append([0, 0, layer.activation_bytes, layer.activation_bytes, extra, channels, channels])
    return rows


def _rows(layers: list[list[Any]]) -> list[tuple[int, int, int, int, str, int, int]]:
    """Accept the older [MACs, params, output bytes] rows of artifacts converted before kinds were recorded."""
    out = []
    for row in layers:
        if len(row) >= 5:
            cout, cin = (int(row[i]) if len(row) > i else 0 for i in (5, 6))
            out.append((int(row[0]), int(row[1]), int(row[2]), int(row[3]), str(row[4]), cout, cin))
        else:
            macs, params, act = (int(v) for v in row[:3])
            out.append((macs, params, act, act, "conv" if macs else "memory", 0, 0))
    return out


def channel_tile(profile: DeviceProfile, precision: str, channels: int) -> int:
    """Output channels are computed in tiles of the SIMD kernel's width, so 6 channels cost as much as 8.

    The x86 tiles are measured (README, "Measured here": fp32 in tiles of 8 up to 8 channels, then of 16; int8 in
    steps of 8). The Arm tiles (8 for fp32; 8, or 16 with dot-product, for int8) are XNNPACK's NEON kernel
    widths as its kernel names give them, not measured: no Arm machine here.
    """
    arch = (profile.arch or "").lower()
    flags = set(profile.cpu.flags or ())
    if precision == "int8":
        return 16 if arch.startswith(("aarch64", "arm")) and {"asimddp", "dotprod"} & flags else 8
    if arch.startswith(("aarch64", "arm")):
        return 8
    return 8 if channels <= 8 else 16


def reduction_tile(profile: DeviceProfile, precision: str) -> int:
    """int8 kernels also read input channels in groups, so LeNet-5's 1-channel first convolution costs as much as an
    8-channel one (x86 AVX2: groups of 8; inferred, not timed directly: with it the LeNet-5 int8 estimate here went
    from -50% to -25%); fp32 kernels read one at a time.
    Arm (4 with dot-product, else 1) is taken from XNNPACK's kernel names, not measured."""
    if precision != "int8":
        return 1
    arch = (profile.arch or "").lower()
    if arch.startswith(("aarch64", "arm")):
        return 4 if {"asimddp", "dotprod"} & set(profile.cpu.flags or ()) else 1
    return 8


def _up(n: int, tile: int) -> int:
    return -(-n // tile) * tile


def _padded(macs: int, kind: str, cout: int, cin: int, out_tile: int, k_tile: int) -> float:
    if macs == 0 or cout <= 0:
        return macs
    work = macs * _up(cout, out_tile) / cout
    if kind in ("conv", "pointwise") and cin > 0:
        work *= _up(cin, k_tile) / cin
    return work


def _peaks(profile: DeviceProfile, precision: str, threads: int | None) -> tuple[float, float]:
    cores = profile.cpu.cores
    used = min(threads or profile.threads or cores, cores)
    peak = (profile.cpu.peak_int8_gops if precision == "int8" else profile.cpu.peak_fp32_gflops) * 1e9 * used / cores
    return peak, profile.memory.bandwidth_gbps * 1e9


def roofline_by_kind(
    layers: list[list[Any]], precision: str, profile: DeviceProfile, threads: int | None = None
) -> dict[str, float]:
    """Roofline milliseconds summed per kind, and ``n_ops``: the layers that are an operator of their own."""
    w_bytes, a_bytes = _BYTES.get(precision, (4, 4))
    peak, bw = _peaks(profile, precision, threads)
    sums = dict.fromkeys(KINDS, 0.0) | {"n_ops": 0.0}
    k_tile = reduction_tile(profile, precision)
    for macs, params, bytes_in, bytes_out, kind, cout, cin in _rows(layers):
        if kind == "free":
            continue
        moved = params * w_bytes + (bytes_in + bytes_out) * a_bytes / 4
        work = _padded(macs, kind, cout, cin, channel_tile(profile, precision, cout), k_tile)
        sums[kind if kind in KINDS else "memory"] += max(2 * work / peak, moved / bw) * 1e3
        sums["n_ops"] += 1
    return sums


def roofline_ms(layers: list[list[Any]], precision: str, profile: DeviceProfile, threads: int | None = None) -> float:
    """The plain roofline: every layer at peak compute or full bandwidth, no overheads."""
    sums = roofline_by_kind(layers, precision, profile, threads)
    return sum(sums[k] for k in KINDS)


def features(
    layers: list[list[Any]], precision: str, profile: DeviceProfile, threads: int | None = None, *, ref_clock_ghz: float
) -> list[float]:
    """The regressors of the cost formula, in COEFFICIENTS order; fixed costs scale by ref_clock / device clock."""
    sums = roofline_by_kind(layers, precision, profile, threads)
    clock = profile.cpu.clock_ghz or ref_clock_ghz
    scale = ref_clock_ghz / clock if clock else 1.0
    return [scale, sums["n_ops"] * scale, *(sums[k] for k in KINDS)]


def predict_ms(
    calibration: dict[str, Any], layers: list[list[Any]], precision: str, profile: DeviceProfile, threads=None
) -> float:
    coef = calibration["coefficients"]
    x = features(layers, precision, profile, threads, ref_clock_ghz=calibration["host"]["clock_ghz"])
    return sum(coef[name] * v for name, v in zip(COEFFICIENTS, x))


# --- where calibrations live -------------------------------------------------------------------------------


def calibration_dir() -> Path:
    base = os.environ.get("EDGECNN_CALIBRATION_DIR")
    if base:
        return Path(base)
    from edgecnn.resources import cache_dir

    return cache_dir("calibration")


def calibration_name(runtime: str, precision: str, threads: int) -> str:
    return f"{runtime}-{'int8' if precision == 'int8' else 'fp32'}-t{threads}.json"


def find_calibration(runtime: str, precision: str, threads: int, *, cpu_model: str, path: str | Path | None = None):
    """The calibration for this runtime/precision/threads on this CPU, or None. A given ``path`` must fit."""
    file = Path(path) if path else calibration_dir() / calibration_name(runtime, precision, threads)
    if not file.is_file():
        if path:
            raise ConfigError(f"calibration file not found: {file}")
        return None
    try:
        cal = json.loads(file.read_text())
        ok = cal.get("schema") == "edgecnn.calibration" and set(COEFFICIENTS) <= set(cal.get("coefficients", {}))
    except (ValueError, AttributeError):
        ok = False
    if not ok:
        raise ConfigError(f"{file} is not an edgecnn calibration", hint="make one with 'edgecnn calibrate'")
    want = (runtime, "int8" if precision == "int8" else "fp32", cpu_model)
    have = (cal.get("runtime"), cal.get("precision"), cal.get("host", {}).get("cpu_model"))
    if have != want:
        if path:
            raise ConfigError(
                f"{file} calibrates {have[0]}/{have[1]} on {have[2]!r}; this profile is {want[0]}/{want[1]} on {want[2]!r}"
            )
        return None
    cal["path"] = str(file)
    return cal


def device_calibration_path(device: str, runtime: str, precision: str, threads: int, *, base: Path | None = None) -> Path:
    """Where ``edgecnn calibrate --from-measurements`` keeps the fit for one device profile."""
    return Path(base or calibration_dir()) / "devices" / device / calibration_name(runtime, precision, threads)


def find_device_calibration(device: str, runtime: str, precision: str, threads: int) -> dict[str, Any] | None:
    """The fit made from boards' measurements for this device profile, runtime, precision and threads, or None."""
    file = device_calibration_path(device, runtime, precision, threads)
    if not file.is_file():
        return None
    try:
        cal = json.loads(file.read_text())
        ok = cal.get("fitted_from") == "measurements" and set(COEFFICIENTS) <= set(cal.get("coefficients") or {})
    except (ValueError, AttributeError):
        ok = False
    if not ok:
        raise ConfigError(
            f"{file} is not a calibration made from measurements",
            hint=f"remove it, or make it again: edgecnn calibrate --from-measurements --device {device}",
        )
    cal["path"] = str(file)
    return cal


# How far a p50 measured on one machine moves between runs of the same command (README, "Measured here"): the least
# uncertainty an estimate scaled from one measurement can honestly claim.
RUN_TO_RUN_SPREAD = 0.3
MEDIAN_BLOCKS = 5


def likely_range(value: float, *spreads: float | None) -> list[float]:
    """[low, high] around ``value`` for the largest relative spread given (never less than RUN_TO_RUN_SPREAD)."""
    u = max([RUN_TO_RUN_SPREAD, *(abs(s) for s in spreads if s is not None)])
    return [value / (1 + u), value * (1 + u)]


def median_spread(samples: list[float] | None, blocks: int = MEDIAN_BLOCKS) -> float | None:
    """How far this run's p50 itself is uncertain: the largest relative distance of the median of any of ``blocks``
    consecutive slices of the samples from the median of all (None with fewer than 4 samples a slice).

    Not p90/p50 (what the range used before): on a shared machine a tenth of the runs of a 0.05 ms model can be
    preempted for milliseconds, p90 lands on those hiccups, and the range swung from 0.066-0.153 ms to 0.002-27 ms
    between four runs of the same demo (issue #31). Hiccups spread over the run barely move any slice's median; a
    load that comes or goes during the run moves some slices' medians, and so widens the range, as it should."""
    if not samples or len(samples) < 4 * blocks:
        return None
    import numpy as np

    values = np.asarray(samples, dtype=float)
    whole = float(np.median(values))
    if whole <= 0:
        return None
    return max(abs(float(np.median(part)) / whole - 1) for part in np.array_split(values, blocks))


def ratio_spread(ratio_minus_one: float | None) -> float | None:
    """A prediction's error ``predicted / measured - 1`` as a spread, the same either way: 0.5x and 2x both give 1.0
    (a plain |error| would call 0.1x a 90 % error and 10x a 900 % one)."""
    if ratio_minus_one is None or ratio_minus_one <= -1:
        return None
    r = 1 + ratio_minus_one
    return max(r, 1 / r) - 1


def _from_boards(cal: dict[str, Any], layers: list[list[Any]], precision: str, target: DeviceProfile, here_ms: float, tail):
    """The estimate from the formula refitted to boards' measurements of ``target``."""
    value = predict_ms(cal, layers, precision, target, cal["threads"])
    n = len(cal.get("artifacts") or [])
    return {
        "device": target.name,
        "estimated_p50_ms": value,
        "range_ms": likely_range(value, tail, cal.get("fit_error_median_abs")),
        "roofline_ms": roofline_ms(layers, precision, target),
        "host_measured_ms": here_ms,
        "calibration": cal["path"],
        "calibration_fit_error_median": cal.get("fit_error_median_abs"),
        "method": f"per-layer formula refitted from {n} artifact(s) measured on {target.name} boards "
        f"({cal['method']}; an ESTIMATE, not a measurement)",
    }


def estimate(
    layers: list[list[Any]],
    precision: str,
    *,
    host: DeviceProfile,
    target: DeviceProfile,
    measured_host_ms: float,
    host_samples_ms: list[float] | None = None,
    host_threads: int | None = None,
    efficiency: float | None = None,
    calibration: dict[str, Any] | None = None,
    device_calibration: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Estimate ``target`` latency from a measurement here.

    With a ``device_calibration`` (refitted from boards' measurements of ``target``): that formula, first.

    With a calibration: the calibrated cost formula evaluated for the target, and the same formula's prediction
    for this host next to the measurement (``host_check_error``), the figure that says how far to trust it.
    Without: the target's roofline times this model's measured efficiency here (``efficiency`` overrides it).
    ``range_ms`` widens the figure by the largest of: a p50's run-to-run spread, how far the medians of slices of
    this run's ``host_samples_ms`` lie from its p50 (``median_spread``), and (calibrated) the formula's error on this
    host, either way (``ratio_spread``).
    """
    tail = median_spread(host_samples_ms)
    host_roof = roofline_ms(layers, precision, host, host_threads)
    target_roof = roofline_ms(layers, precision, target)
    if device_calibration is not None and efficiency is None:
        return _from_boards(device_calibration, layers, precision, target, measured_host_ms, tail)
    if calibration is not None and efficiency is None:
        predicted_here = predict_ms(calibration, layers, precision, host, host_threads)
        check = predicted_here / measured_host_ms - 1 if measured_host_ms > 0 else None
        value = predict_ms(calibration, layers, precision, target)
        return {
            "device": target.name,
            "estimated_p50_ms": value,
            "range_ms": likely_range(value, tail, ratio_spread(check), calibration.get("fit_error_median_abs")),
            "roofline_ms": target_roof,
            "host_predicted_ms": predicted_here,
            "host_measured_ms": measured_host_ms,
            "host_check_error": check,
            "calibration": calibration.get("path", "given"),
            "calibration_fit_error_median": calibration.get("fit_error_median_abs"),
            "method": "per-layer roofline with per-kind costs calibrated on this host (an ESTIMATE, not a measurement)",
        }
    eff = efficiency if efficiency is not None else (measured_host_ms / host_roof if host_roof > 0 else 1.0)
    return {
        "device": target.name,
        "estimated_p50_ms": target_roof * eff,
        "range_ms": likely_range(target_roof * eff, tail),
        "roofline_ms": target_roof,
        "host_roofline_ms": host_roof,
        "efficiency_factor": eff,
        "method": "roofline x this model's efficiency on this host (an ESTIMATE, not a measurement; "
        "run 'edgecnn calibrate' for the per-layer estimate)",
    }
