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


def networks() -> dict[str, Any]:
    """name -> a builder of a small Keras classifier dominated by one kind of layer (convert/calibration_nets.py)."""
    from edgecnn.host.lab.calibration_nets import NETWORKS

    return {name: NETWORKS.get(name) for name in NETWORKS}


def _convert_all(name: str, model: Any, work: Path, wanted: list[tuple[str, str]], host: DeviceProfile) -> dict:
    """Convert one network to every (format, precision) wanted; returns {(format, precision): model file}."""
    from edgecnn.formats import parse_pair
    from edgecnn.host.convert.base import ConvertRequest
    from edgecnn.host.convert.session import ConversionSession
    from edgecnn.host.convert.source import SourceModel
    from edgecnn.host.data.calibration import CalibrationSet
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


def _check_request(runtimes: list[str], precisions: list[str], threads: int) -> None:
    """Refuse a bad request before TensorFlow loads."""
    for r in runtimes:
        _format_of(r)
    for p in precisions:
        if p not in ("fp32", "int8"):
            raise ConfigError(f"calibration precisions are fp32 and int8; received '{p}'")
    if threads < 1:
        raise ConfigError(f"--threads must be at least 1; received {threads}")


def _build_all(
    nets: dict[str, Any], work: Path, wanted: list[tuple[str, str]], host: DeviceProfile, say: Callable
) -> tuple[dict, dict]:
    """Every network built (seeded) and converted: (layer costs by name, model files by name)."""
    import keras

    from edgecnn.host.models.inspect import analyse

    costs, files = {}, {}
    for i, (name, build) in enumerate(nets.items(), 1):
        say(f"[{i}/{len(nets)}] {name}: building and converting to {', '.join(f'{f}/{p}' for f, p in wanted)}")
        keras.utils.set_random_seed(i)
        model = build()
        costs[name] = layer_costs(analyse(model))
        files[name] = _convert_all(name, model, work, wanted, host)
        keras.backend.clear_session()
    return costs, files


def _time_all(
    files: dict, runtimes: list[str], precisions: list[str], threads: int, seconds: float, passes: int, say: Callable
) -> dict:
    """p50 per (runtime, precision) and network, in passes over everything: slow drift of the machine hits every
    network alike."""
    measured: dict[tuple[str, str], dict[str, list[float]]] = {}
    for rnd in range(passes):
        for runtime in runtimes:
            for prec in precisions:
                say(f"timing pass {rnd + 1}/{passes}: {runtime}/{prec}")
                for name in files:
                    f = files[name].get((_format_of(runtime), prec))
                    if f is not None:
                        measured.setdefault((runtime, prec), {}).setdefault(name, []).append(
                            _time_p50(runtime, f, threads, seconds / passes)
                        )
    return measured


def _fitted(rows: dict[str, tuple], nets: list[str], checks: list[str]) -> tuple[list[float], list[dict], list[dict]]:
    """(coefficients fitted on ``nets``, how far they are from each network, and from each check)."""
    coef = fit([rows[name] for name in nets])

    def judged(names: list[str]) -> list[dict[str, Any]]:
        out = []
        for name in names:
            x, t = rows[name]
            pred = sum(c * v for c, v in zip(coef, x))
            out.append({"name": name, "measured_ms": t, "predicted_ms": pred, "error": pred / t - 1})
        return out

    return coef, judged(nets), judged([name for name in checks if name in rows])


def _record(
    host: DeviceProfile, runtime: str, prec: str, threads: int, coef: list[float], nets_out: list, checks_out: list
) -> dict:
    return {
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
        "checks": checks_out,
    }


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
    _check_request(runtimes, precisions, threads)  # a typo is answered before TensorFlow loads
    out_dir = Path(out_dir) if out_dir else calibration_dir()
    wanted = [(_format_of(r), p) for r in runtimes for p in precisions]
    nets = {k: v for k, v in networks().items() if not quick or k in QUICK}
    checks = checks or {}
    with tempfile.TemporaryDirectory(prefix="edgecnn-calibrate-") as tmp:
        costs, files = _build_all(nets, Path(tmp), wanted, host, say)
        costs |= {name: c for name, (c, _) in checks.items()}
        files |= {name: f for name, (_, f) in checks.items()}
        measured = _time_all(files, runtimes, precisions, threads, seconds, passes, say)
    results = []
    out_dir.mkdir(parents=True, exist_ok=True)
    for (runtime, prec), per_name in measured.items():
        rows = {
            name: (features(costs[name], prec, host, threads, ref_clock_ghz=host.cpu.clock_ghz), statistics.median(ts))
            for name, ts in per_name.items()
        }
        cal = _record(host, runtime, prec, threads, *_fitted(rows, list(nets), list(checks)))
        path = out_dir / calibration_name(runtime, prec, threads)
        path.write_text(json.dumps(cal, indent=2) + "\n")
        results.append(cal | {"path": str(path)})
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
