"""Calibrate the latency estimate on this host: time small networks with the real runtime, fit the cost formula.

Twenty networks, each dominated by a different kind of layer (3x3 and 5x5 convolutions, pointwise, depthwise,
separable and inverted-residual blocks, dense layers, pooling/add/concat/padding, average pooling, unfused
activations, many tiny operators, small networks of a few operators (one with tanh), one almost empty), are built
with seeded random weights, converted with edgecnn's own converters and timed with the runtime's backend and
``edgecnn profile``'s timing loop (``invoke`` p50, the input unchanged). ``estimate.COEFFICIENTS`` are then fitted by
non-negative least squares on the relative error. None of the zoo models is among them, so the error of the
fitted formula on a zoo model measured here is an honest check of how far an estimate can be trusted.

Host side (it builds Keras models and converts them, so it needs TensorFlow and SciPy): it lives in ``convert/``,
not in the device-side ``profiling/``. The result is a small JSON file that the TensorFlow-free
``edgecnn profile --device NAME`` reads through ``profiling/estimate.py``.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.devices import DeviceProfile
from edgecnn.errors import ConfigError
from edgecnn.profiling.estimate import COEFFICIENTS, calibration_dir, calibration_name, features, layer_costs

SCHEMA = "edgecnn.calibration"


def _format_of(runtime: str) -> str:
    """The format a runtime reads (the first, where it reads several)."""
    from edgecnn.formats import formats_read_by
    from edgecnn.runtime.base import RUNTIMES

    RUNTIMES.get(runtime)  # an unknown name: "did you mean"
    return str(formats_read_by(runtime)[0])


QUICK = ("tiny", "conv-64", "pointwise-56", "depthwise-112", "mlp", "memory-ops", "many-small", "average", "activations")


def networks() -> dict[str, Callable[[], Any]]:
    """name -> a builder of a small Keras classifier dominated by one kind of layer."""
    import keras
    from keras import layers as L

    def conv(x, c, k=3, s=1):
        return L.Conv2D(c, k, strides=s, padding="same", activation="relu")(x)

    def pw(x, c):
        return L.Conv2D(c, 1, activation="relu")(x)

    def dw(x, s=1):
        return L.DepthwiseConv2D(3, strides=s, padding="same", activation="relu")(x)

    def model(inp, x):
        out = L.Dense(10, activation="softmax")(L.GlobalAveragePooling2D()(x) if len(x.shape) == 4 else x)
        return keras.Model(inp, out)

    def tiny():
        i = keras.Input((8, 8, 1))
        return model(i, L.Flatten()(conv(i, 4)))

    def conv64():
        i = keras.Input((64, 64, 3))
        return model(i, conv(conv(conv(conv(i, 32), 32), 64, s=2), 64))

    def conv128_thin():
        i = keras.Input((128, 128, 3))
        return model(i, conv(conv(conv(conv(i, 16), 16), 16, s=2), 16))

    def conv5():
        i = keras.Input((48, 48, 3))
        return model(i, conv(conv(conv(i, 32, k=5), 32, k=5, s=2), 64, k=5))

    def pointwise56():
        i = keras.Input((56, 56, 3))
        return model(i, pw(pw(pw(pw(conv(i, 32), 64), 128), 64), 128))

    def pointwise_wide():
        i = keras.Input((28, 28, 3))
        return model(i, pw(pw(pw(pw(conv(i, 64, s=2), 256), 512), 512), 256))

    def depthwise112():
        i = keras.Input((112, 112, 3))
        return model(i, dw(dw(dw(dw(conv(i, 32)), s=2))))

    def depthwise_wide():
        i = keras.Input((56, 56, 3))
        return model(i, dw(dw(dw(dw(pw(conv(i, 96, s=2), 192))))))

    def separable56():
        i = keras.Input((56, 56, 3))
        x = conv(i, 32)
        x = pw(dw(x), 64)
        x = pw(dw(x), 64)
        return model(i, pw(dw(x, s=2), 128))

    def mlp():
        i = keras.Input((32, 32, 3))
        x = L.Dense(512, activation="relu")(L.Flatten()(i))
        return model(i, L.Dense(256, activation="relu")(x))

    def memory_ops():
        i = keras.Input((64, 64, 3))
        x = conv(i, 32)
        x = L.Add()([x, L.MaxPooling2D(3, strides=1, padding="same")(x)])
        x = L.Concatenate()([x, L.AveragePooling2D(3, strides=1, padding="same")(x)])
        x = L.MaxPooling2D(2)(L.ZeroPadding2D(1)(x))
        return model(i, L.Add()([x, L.MaxPooling2D(3, strides=1, padding="same")(x)]))

    def many_small():
        i = keras.Input((16, 16, 3))
        x = conv(i, 8)
        for _ in range(16):
            x = pw(x, 8)
        return model(i, x)

    def inverted_residual():
        i = keras.Input((32, 32, 3))
        x = conv(i, 16)
        for _ in range(3):
            x = L.Add()([x, pw(dw(pw(x, 96)), 16)])
        return model(i, x)

    def fire():
        i = keras.Input((56, 56, 3))
        x = conv(i, 64, s=2)
        for c in (16, 32):
            s = pw(x, c)
            x = L.Concatenate()([pw(s, 4 * c), conv(s, 4 * c)])
        return model(i, L.MaxPooling2D(3, strides=2)(x))

    def average():
        i = keras.Input((64, 64, 3))
        x = L.AveragePooling2D(2)(conv(i, 16))
        x = L.AveragePooling2D(2)(conv(x, 32))
        return model(i, L.AveragePooling2D(3, strides=1, padding="same")(conv(x, 32)))

    def activations():
        i = keras.Input((48, 48, 3))
        x = L.Conv2D(16, 3, padding="same", activation="tanh")(i)
        x = L.Conv2D(16, 3, strides=2, padding="same", activation="sigmoid")(x)
        x = L.Conv2D(32, 3, padding="same", activation="swish")(x)
        return model(i, L.Dense(32, activation="tanh")(L.GlobalAveragePooling2D()(x)))

    def small_conv5():
        i = keras.Input((32, 32, 3))
        x = L.AveragePooling2D(2)(L.Conv2D(8, 5, activation="relu")(i))
        return model(i, L.AveragePooling2D(2)(L.Conv2D(16, 5, activation="relu")(x)))

    def small_conv3():
        i = keras.Input((24, 24, 3))
        return model(i, conv(L.MaxPooling2D(2)(conv(conv(i, 16), 16)), 32))

    def small_tanh():
        i = keras.Input((28, 28, 3))
        x = L.MaxPooling2D(2)(L.Conv2D(8, 5, activation="tanh")(i))
        x = L.MaxPooling2D(2)(L.Conv2D(16, 3, activation="tanh")(x))
        return model(i, L.Dense(32, activation="tanh")(L.Flatten()(x)))

    def small_dense():
        i = keras.Input((16, 16, 3))
        x = L.Dense(128, activation="sigmoid")(L.Flatten()(i))
        return model(i, L.Dense(64, activation="relu")(x))

    return {
        "tiny": tiny,
        "small-conv5x5": small_conv5,
        "small-conv3x3": small_conv3,
        "small-tanh": small_tanh,
        "small-dense": small_dense,
        "conv-64": conv64,
        "conv-128-thin": conv128_thin,
        "conv5x5-48": conv5,
        "pointwise-56": pointwise56,
        "pointwise-wide": pointwise_wide,
        "depthwise-112": depthwise112,
        "depthwise-wide": depthwise_wide,
        "separable-56": separable56,
        "mlp": mlp,
        "memory-ops": memory_ops,
        "many-small": many_small,
        "inverted-residual": inverted_residual,
        "fire": fire,
        "average": average,
        "activations": activations,
    }


def _convert_all(name: str, model: Any, work: Path, wanted: list[tuple[str, str]], host: DeviceProfile) -> dict:
    """Convert one network to every (format, precision) wanted; returns {(format, precision): model file}."""
    from edgecnn.convert.base import ConvertRequest
    from edgecnn.convert.session import ConversionSession
    from edgecnn.convert.source import SourceModel
    from edgecnn.data.calibration import CalibrationSet
    from edgecnn.formats import parse_pair
    from edgecnn.preprocess import PreprocessSpec

    h, w, c = (int(d) for d in model.inputs[0].shape[1:])
    spec = PreprocessSpec(height=h, width=w, channels=c, color_order="GRAY" if c == 1 else "RGB")
    source = SourceModel(path=work / f"{name}.keras", model=model, labels=[f"c{i}" for i in range(10)], spec=spec)
    calib = CalibrationSet(np.random.default_rng(0).uniform(0, 1, (16, h, w, c)).astype(np.float32), "random")
    files = {}
    requests = [ConvertRequest(*parse_pair(f"{fmt}/{prec}")) for fmt, prec in wanted]
    with ConversionSession(source, host) as session:
        session.start(requests)
        session.set_calibration(calib)
        for r in requests:
            out = work / f"{name}-{r.name}"
            out.mkdir(parents=True, exist_ok=True)
            made = session.converter(r.format).convert(r, out)
            files[(str(r.format), str(r.precision))] = out / made.files["model"]["path"]
    return files


def _time_p50(runtime: str, path: Path, threads: int, seconds: float) -> float:
    """``invoke`` p50 with the device's backend and edgecnn profile's own timing loop (10 warm-up runs)."""
    from edgecnn.profiling.measure import ProfileOptions, timed_loop
    from edgecnn.runtime.base import open_backend

    with open_backend(runtime, path, threads=threads) as backend:
        shape = [1, *backend.input.shape[1:]]
        backend.set_input(np.random.default_rng(0).uniform(0, 1, shape).astype(np.float32))
        for _ in range(10):
            backend.invoke()
        return statistics.median(timed_loop(lambda i: backend.invoke(), ProfileOptions(runs=50, min_seconds=seconds), None))


def fit(rows: list[tuple[list[float], float]]) -> list[float]:
    """Non-negative least squares on relative error: minimise sum ((x . c) / t - 1)^2 with c >= 0."""
    from scipy.optimize import nnls

    a = np.array([[v / t for v in x] for x, t in rows])
    coef, _ = nnls(a, np.ones(len(rows)))
    return [float(c) for c in coef]


def calibrate(
    host: DeviceProfile,
    *,
    runtimes: list[str],
    precisions: list[str],
    threads: int,
    out_dir: Path | None = None,
    seconds: float = 1.0,
    passes: int = 3,
    quick: bool = False,
    checks: dict[str, tuple[list[list[Any]], dict[tuple[str, str], Path]]] | None = None,
    say: Callable[[str], None] = lambda s: None,
) -> list[dict[str, Any]]:
    """Build, convert and time the networks; fit and write one calibration per (runtime, precision).

    ``checks``: models that are *not* fitted (name -> (layer costs, {(format, precision): model file})); they are
    timed in the same passes as the networks, so the error of the fitted formula on them is not blurred by the
    machine drifting between a calibration and a later measurement.
    """
    for r in runtimes:
        _format_of(r)
    for p in precisions:
        if p not in ("fp32", "int8"):
            raise ConfigError(f"calibration precisions are fp32 and int8; received '{p}'")
    if threads < 1:
        raise ConfigError(f"--threads must be at least 1; received {threads}")
    import keras  # after the checks above: a typo is answered before TensorFlow loads

    from edgecnn.models.inspect import analyse

    out_dir = Path(out_dir) if out_dir else calibration_dir()
    wanted = [(_format_of(r), p) for r in runtimes for p in precisions]
    nets = {k: v for k, v in networks().items() if not quick or k in QUICK}
    checks = checks or {}
    costs = {name: c for name, (c, _) in checks.items()}
    files = {name: f for name, (_, f) in checks.items()}
    measured: dict[tuple[str, str], dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="edgecnn-calibrate-") as tmp:
        for i, (name, build) in enumerate(nets.items(), 1):
            say(f"[{i}/{len(nets)}] {name}: building and converting to {', '.join(f'{f}/{p}' for f, p in wanted)}")
            keras.utils.set_random_seed(i)
            model = build()
            costs[name] = layer_costs(analyse(model))
            files[name] = _convert_all(name, model, Path(tmp), wanted, host)
            keras.backend.clear_session()
        for rnd in range(passes):  # passes over everything: slow drift of the machine hits every network alike
            for runtime in runtimes:
                for prec in precisions:
                    say(f"timing pass {rnd + 1}/{passes}: {runtime}/{prec}")
                    for name in files:
                        f = files[name].get((_format_of(runtime), prec))
                        if f is not None:
                            t = _time_p50(runtime, f, threads, seconds / passes)
                            measured.setdefault((runtime, prec), {}).setdefault(name, []).append(t)
    results = []
    out_dir.mkdir(parents=True, exist_ok=True)
    ref_clock = host.cpu.clock_ghz
    for (runtime, prec), per_name in measured.items():
        rows = {
            name: (features(costs[name], prec, host, threads, ref_clock_ghz=ref_clock), statistics.median(ts))
            for name, ts in per_name.items()
        }
        coef = fit([rows[name] for name in nets])

        def judged(names: list[str]) -> list[dict[str, Any]]:
            out = []
            for name in names:
                x, t = rows[name]
                pred = sum(c * v for c, v in zip(coef, x))
                out.append({"name": name, "measured_ms": t, "predicted_ms": pred, "error": pred / t - 1})
            return out

        nets_out = judged(list(nets))
        cal = {
            "schema": SCHEMA,
            "schema_version": 1,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "runtime": runtime,
            "precision": prec,
            "threads": threads,
            "host": {
                "cpu_model": host.cpu.model,
                "cores": host.cpu.cores,
                "clock_ghz": host.cpu.clock_ghz,
                "peak_fp32_gflops": host.cpu.peak_fp32_gflops,
                "peak_int8_gops": host.cpu.peak_int8_gops,
                "bandwidth_gbps": host.memory.bandwidth_gbps,
            },
            "coefficients": dict(zip(COEFFICIENTS, coef)),
            "networks": nets_out,
            "fit_error_median_abs": statistics.median(abs(n["error"]) for n in nets_out),
            "fit_error_max_abs": max(abs(n["error"]) for n in nets_out),
            "checks": judged([name for name in checks if name in rows]),
        }
        path = out_dir / calibration_name(runtime, prec, threads)
        path.write_text(json.dumps(cal, indent=2) + "\n")
        cal["path"] = str(path)
        results.append(cal)
    return results


def checks_from_artifacts(paths: list[str | Path]) -> dict[str, tuple[list[list[Any]], dict[tuple[str, str], Path]]]:
    """Held-out models for ``calibrate(checks=...)`` from artifact folders or conversion outputs."""
    from edgecnn.manifest import Manifest
    from edgecnn.runtime.select import artifact_dirs

    out: dict[str, tuple[list[list[Any]], dict[tuple[str, str], Path]]] = {}
    for p in paths:
        for d in artifact_dirs(Path(p)):  # refuses a folder without artifacts
            m = Manifest.load(d)
            layers = (m.extra.get("cost") or {}).get("layers") or []
            if not layers or len(layers[0]) < 6:
                raise ConfigError(
                    f"{d}: the manifest has no per-layer kinds (converted by an older edgecnn)", hint="convert it again"
                )
            if m.precision not in ("fp32", "int8"):
                continue
            name = m.source_model.get("name") or Path(p).name
            entry = out.setdefault(name, (layers, {}))
            entry[1][(m.format, m.precision)] = m.file_path("model")
    return out
