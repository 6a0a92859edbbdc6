"""Host side: the IMX500 conversion job, run by the ``imx500`` worker on the toolchain's own interpreter.

It runs inside ``edgecnn toolchain install imx500``'s venv (Python 3.11, TensorFlow 2.15 / tf.keras, MCT,
imxconv-tf) and imports nothing of edgecnn but the bridge and the errors. Steps, each timed for the manifest:

1. rebuild: the Keras 3 model's graph in tf.keras 2.15 with its weights copied by layer name; refused unless it
   matches Keras 3's probabilities within 1e-5 on the parity images;
2. sensor input: a fixed 1x1 depthwise layer in front maps what the sensor feeds the network (8-bit pixels read as
   p/256) to edgecnn's preprocessing ``(p * scale - mean) / std`` (the 256 makes it exact: the chip's input scale
   is 1/256, not 1/255);
3. memory estimate: MCT's resource utilisation (int8 weights, activations): a network whose weights alone exceed
   the chip's memory is refused before the slow compile (the compiler's own figure is larger: LeNet-5's 62 KB of
   weights became 144 KB of model memory, so only a sure misfit is refused this early);
4. quantise: MCT post-training quantisation with the IMX500 target platform on the calibration images;
   the quantised model exported twice: .keras (MCTQ) for the compiler, int8 .tflite for the host emulation;
5. compile: ``imxconv-tf`` -> ``packerOut.zip`` and its memory report (used, available, headroom); refused when
   the report says it does not fit.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from edgecnn.errors import ConversionError

TPC_VERSION = "4.0"  # edgemdt_tpc's IMX500 target platform
FLOAT_TOLERANCE = 1e-5  # the rebuilt float model against Keras 3 (max |dp|)


def _fresh_session() -> None:
    """A job starts from an empty tf.keras session: the worker may have served another conversion before (the
    scheduler keeps workers), and layer names and graph state must not carry over."""
    import tensorflow as tf

    tf.keras.backend.clear_session()


def _input_norm(preprocess: dict[str, Any], channels: int) -> Any:
    """A function that puts, in front of the network's input, x = (256 * in * scale - mean) / std: one fixed 1x1
    depthwise layer (the sensor feeds p / 256)."""
    import numpy as np
    import tensorflow as tf

    per = lambda v: np.resize(np.asarray(v, np.float32), channels)  # noqa: E731
    mul = np.float32(256.0 * preprocess["scale"]) / per(preprocess["std"])
    add = -per(preprocess["mean"]) / per(preprocess["std"])

    def front(t: Any) -> Any:
        norm = tf.keras.layers.DepthwiseConv2D(1, use_bias=True, name="edgecnn_input_norm")
        x = norm(t)
        norm.set_weights([mul.reshape(1, 1, channels, 1), add.astype(np.float32)])
        return x

    return front


def _memory(model: Any, data: Any, tpc: Any) -> dict[str, int]:
    import model_compression_toolkit as mct

    ru = mct.core.keras_resource_utilization_data(model, data, mct.core.CoreConfig(), target_platform_capabilities=tpc)
    return {"weights_bytes": int(ru.weights_memory), "activation_bytes": int(ru.activation_memory)}


def _imxconv(keras_path: Path, out: Path, *extra: str) -> str:
    out.mkdir(parents=True, exist_ok=True)
    tool = Path(sys.executable).with_name("imxconv-tf")
    cmd = [str(tool), "-i", str(keras_path), "-o", str(out), "--overwrite-output", "--report-size-unit", "B", *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    text = proc.stdout + proc.stderr
    (out / "imxconv.log").write_text(text)
    if proc.returncode != 0:
        last = [ln for ln in text.splitlines() if ln.strip()][-1:] or ["no output"]
        raise ConversionError(f"imx500/int8: imxconv-tf failed (exit {proc.returncode}): {last[0][:300]}",
                              hint=f"its full output: {out / 'imxconv.log'}")  # fmt: skip
    return text


def _bytes(value: Any) -> int | None:
    """``"626.03KB"``, ``"8388608B"``, ``1024`` -> bytes (the report's units are binary: 8.00MB is 8 MiB)."""
    m = re.fullmatch(r"\s*([\d.]+)\s*([KMG]?B?)\s*", str(value), re.I)
    if not m:
        return None
    mult = {"": 1, "B": 1, "KB": 1 << 10, "K": 1 << 10, "MB": 1 << 20, "M": 1 << 20, "GB": 1 << 30, "G": 1 << 30}
    return int(round(float(m.group(1)) * mult[m.group(2).upper()]))


def memory_report(folder: Path) -> dict[str, Any]:
    """imxconv's ``*_MemoryReport.json`` in ``folder`` as figures: used, available, model, runtime (bytes), fits."""
    path = next(iter(sorted(folder.glob("*MemoryReport.json"))), None)
    if path is None:
        raise ConversionError(f"imx500/int8: imxconv-tf wrote no memory report in {folder}")
    raw = json.loads(path.read_text()).get("Memory Report", {})
    return {
        "used_bytes": _bytes(raw.get("Memory Usage")),
        "available_bytes": _bytes(raw.get("Total Memory Available On Chip")),
        "model_bytes": _bytes(raw.get("Model Memory Physical Size")),
        "runtime_bytes": _bytes(raw.get("Runtime Memory Physical Size")),
        "utilization": raw.get("Memory Utilization"),
        "fits": bool(raw.get("Fit In Chip")),
        "input_persistent": raw.get("Input Persistent"),
        "text": path.read_text(),
    }


def _refuse_if_too_big(report: dict[str, Any], when: str) -> None:
    if not report["fits"]:
        used, avail = report["used_bytes"] or 0, report["available_bytes"] or 0
        raise ConversionError(
            f"imx500/int8: the network does not fit on the IMX500: it needs {used / 2**20:.2f} MiB, the chip has "
            f"{avail / 2**20:.2f} MiB ({report['utilization']}; {when})",
            hint="a smaller model (a lower MobileNet alpha, a smaller input) or another format",
        )


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    names = ("edge-mdt", "model-compression-toolkit", "imx500-converter", "edge-mdt-tpc", "tensorflow")
    out = {}
    for n in names:
        try:
            out[n] = md.version(n)
        except md.PackageNotFoundError:
            pass
    return out


def convert_job(graph: dict, parity_x: str, keras_probs: str, preprocess: dict, out: str, chip_bytes: int,
                calibration: str | None = None) -> dict[str, Any]:  # fmt: skip
    """The imx500 worker's job: rebuild, check, estimate, quantise, compile into ``out``; answers with the figures."""
    import numpy as np

    from edgecnn.host.convert.imx500_bridge import rebuild

    seconds: dict[str, float] = {}
    t = time.perf_counter()
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    _fresh_session()
    model = rebuild(graph)
    x, ref = np.load(parity_x), np.load(keras_probs)
    got = model.predict(x, batch_size=64, verbose=0)
    float_dp = float(np.abs(got - ref).max())
    if float_dp > FLOAT_TOLERANCE:
        raise ConversionError(
            f"imx500/int8: the model rebuilt in tf.keras 2.15 differs from Keras 3 by max |dp| {float_dp:.2e} on "
            f"{len(x)} parity images (allowed {FLOAT_TOLERANCE:.0e}); not converted",
            hint="a layer whose two Keras versions compute differently: report it with the model",
        )
    sensor = rebuild(graph, front=_input_norm(preprocess, int(x.shape[-1])))
    seconds["rebuild"] = round(time.perf_counter() - t, 2)
    samples = np.load(calibration) if calibration else None
    if samples is None:
        raise ConversionError("imx500/int8 needs calibration images", hint="pass --calibration DIR or convert a run")
    pixels = _pixels(samples, preprocess) / np.float32(256.0)

    def data():
        for i in range(0, len(pixels), 16):
            yield [pixels[i : i + 16]]

    return _quantise_and_compile(sensor, data, out_dir, chip_bytes, seconds, float_dp)


def _pixels(x: Any, preprocess: dict[str, Any]) -> Any:
    import numpy as np

    c = x.shape[-1]
    per = lambda v: np.resize(np.asarray(v, np.float64), c)  # noqa: E731
    p = (x.astype(np.float64) * per(preprocess["std"]) + per(preprocess["mean"])) / preprocess["scale"]
    return np.clip(np.round(p), 0, 255).astype(np.float32)


def _quantise_and_compile(sensor: Any, data: Any, out_dir: Path, chip_bytes: int, seconds: dict, float_dp: float) -> dict:
    import model_compression_toolkit as mct
    from edgemdt_tpc import get_target_platform_capabilities

    tpc = get_target_platform_capabilities(tpc_version=TPC_VERSION, device_type="imx500")
    t = time.perf_counter()
    estimate = _memory(sensor, data, tpc)
    seconds["estimate"] = round(time.perf_counter() - t, 2)
    if estimate["weights_bytes"] > chip_bytes:
        raise ConversionError(
            f"imx500/int8: the network does not fit on the IMX500: MCT estimates {estimate['weights_bytes'] / 1e6:.2f} MB "
            f"of int8 weights alone, the chip has {chip_bytes / 1e6:.2f} MB (refused before compiling)",
            hint="a smaller model (a lower MobileNet alpha, a smaller input) or another format",
        )
    t = time.perf_counter()
    quantized, _ = mct.ptq.keras_post_training_quantization(sensor, data, target_platform_capabilities=tpc)
    seconds["quantise"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    keras_path = out_dir / "quantized.keras"
    mct.exporter.keras_export_model(model=quantized, save_model_path=str(keras_path))
    mct.exporter.keras_export_model(
        model=quantized,
        save_model_path=str(out_dir / "emulation.tflite"),
        serialization_format=mct.exporter.KerasExportSerializationFormat.TFLITE,
        quantization_format=mct.exporter.QuantizationFormat.INT8,
    )
    seconds["export"] = round(time.perf_counter() - t, 2)
    # (imxconv's --memory-report alone costs half a compile: measured 52 s against 95 s for LeNet-5, so the report
    # comes from the compile itself, and MCT's estimate is the refusal before it)
    t = time.perf_counter()
    _imxconv(keras_path, out_dir / "compiled")
    seconds["compile"] = round(time.perf_counter() - t, 2)
    report = memory_report(out_dir / "compiled")
    _refuse_if_too_big(report, "imxconv's memory report")
    packer = next((p for p in (out_dir / "compiled").rglob("packerOut.zip")), None)
    if packer is None:
        raise ConversionError("imx500/int8: imxconv-tf finished without writing packerOut.zip",
                              hint=f"its output: {out_dir / 'compiled' / 'imxconv.log'}")  # fmt: skip
    return {
        "packer": str(packer),
        "emulation": str(out_dir / "emulation.tflite"),
        "seconds": seconds,
        "float_max_dp": float_dp,
        "estimate": estimate,
        "report": report,
        "tools": _versions(),
    }


def rebuild_check_job(graph: dict, parity_x: str, keras_probs: str) -> dict[str, Any]:
    """The bridge alone (tests, ``tools``): rebuild in tf.keras 2.15 and answer the max |dp| against Keras 3."""
    import numpy as np

    from edgecnn.host.convert.imx500_bridge import rebuild

    _fresh_session()
    model = rebuild(graph)
    got = model.predict(np.load(parity_x), batch_size=64, verbose=0)
    return {"max_dp": float(np.abs(got - np.load(keras_probs)).max()), "layers": len(model.layers)}
