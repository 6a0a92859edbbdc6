"""TFLite: fp32, fp16, dynamic-range and full-integer int8 via SavedModel -> TFLiteConverter.

Keras 3's ``TFLiteConverter.from_keras_model`` is unreliable, so we always go through
``model.export()`` and ``from_saved_model()``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from edgecnn.convert.base import Precision
from edgecnn.convert.data import require_calibration
from edgecnn.errors import ConversionError


def _convert_blob(
    saved_model: Path,
    precision: Precision,
    calibration: Any,
    io: str,
    weights: str = "per-channel",
    *,
    dense_per_tensor: bool = False,
) -> tuple[bytes, str]:
    """The TFLite flatbuffer for one precision, and the TensorFlow version that made it. ``dense_per_tensor``: a
    dynamic-range model's dense layers get one weight scale per tensor (loads in tflite-runtime 2.14)."""
    import tensorflow as tf

    try:
        conv = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    except Exception as exc:  # a SavedModel TensorFlow cannot read
        raise ConversionError(f"tflite/{precision}: TFLiteConverter failed: {str(exc).strip().splitlines()[0][:300]}") from exc
    if precision == Precision.FP16:
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif precision == Precision.DYNAMIC:
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        # per-channel dense weights make FULLY_CONNECTED version 12, which tflite-runtime 2.14 cannot load
        conv._experimental_disable_per_channel_quantization_for_dense_layers = dense_per_tensor
    elif precision == Precision.INT8:
        calib = require_calibration(calibration, "full-integer int8 TFLite")
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([x] for x in calib)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = conv.inference_output_type = tf.uint8 if io == "uint8" else tf.int8
        # One scale per tensor drops the per-channel scale and (int64) zero-point arrays of every weight and bias:
        # 0.42 MB of MobileNetV2's 3.9 MB. The converter's switch for it is still marked experimental.
        conv._experimental_disable_per_channel = weights == "per-tensor"
    try:
        return conv.convert(), tf.__version__
    except Exception as exc:  # TF raises ConverterError / RuntimeError with long MLIR dumps
        raise ConversionError(f"tflite/{precision}: TFLiteConverter failed: {str(exc).strip().splitlines()[0][:300]}") from exc


def share_zero_point_vectors(blob: bytes) -> tuple[bytes, dict[str, Any]]:
    """The same model with each distinct zero-point vector stored once.

    Per-channel quantisation gives every weight and bias tensor a vector of int64 zero points, one per channel,
    and for int8 weights they are all 0: 0.28 MB of MobileNetV2's 3.9 MB. The interpreter insists on as many zero
    points as scales, so they cannot be dropped, but a FlatBuffer may point any number of tables at one vector.
    This re-encodes the model (TF's own object API, as the converter's schema has it) with a builder that hands out
    one vector for equal zero points; everything else is encoded as TF's ``flatbuffer_utils`` writes it, the same
    size as the converter's file. ``_same_outputs`` checks that the result is bit-identical before it is used.
    """
    import flatbuffers
    import numpy as np
    from tensorflow.lite.tools import flatbuffer_utils

    class _Sharing(flatbuffers.Builder):
        def __init__(self, size: int) -> None:
            super().__init__(size)
            self.seen: dict[bytes, int] = {}

        def CreateNumpyVector(self, x: Any) -> int:  # noqa: N802 (flatbuffers' name)
            if x.dtype != np.int64:  # only QuantizationParameters.zero_point is an int64 vector in the schema
                return super().CreateNumpyVector(x)
            key = x.tobytes()
            if key not in self.seen:
                self.seen[key] = super().CreateNumpyVector(x)
            return self.seen[key]

    model = flatbuffer_utils.convert_bytearray_to_object(blob)
    if any(b.offset for b in model.buffers):  # weights stored after the FlatBuffer (models over 2 GB): leave as is
        return blob, {"shared_zero_points": False, "why": "buffers stored outside the FlatBuffer"}
    builder = _Sharing(len(blob))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    out = bytes(builder.Output())
    if len(out) >= len(blob):
        return blob, {"shared_zero_points": False, "why": "nothing to share"}
    if not _same_outputs(blob, out):
        return blob, {"shared_zero_points": False, "why": "the re-encoded model did not give bit-identical outputs"}
    return out, {"shared_zero_points": True, "bytes_saved": len(blob) - len(out)}


def _same_outputs(a: bytes, b: bytes) -> bool:
    """Both models give exactly the same outputs for the same three seeded random inputs."""
    import numpy as np

    from edgecnn.runtime.litert import _interpreter_class

    interpreter = _interpreter_class()[0]  # the device's own interpreter where installed, else TensorFlow's
    outputs = []
    for blob in (a, b):
        it = interpreter(model_content=blob)
        it.allocate_tensors()
        rng = np.random.default_rng(0)
        runs = []
        for _ in range(3):
            for d in it.get_input_details():
                if np.issubdtype(d["dtype"], np.integer):
                    info = np.iinfo(d["dtype"])
                    x = rng.integers(info.min, info.max, size=d["shape"], endpoint=True).astype(d["dtype"])
                else:
                    x = rng.standard_normal(d["shape"]).astype(d["dtype"])
                it.set_tensor(d["index"], x)
            it.invoke()
            runs.append([it.get_tensor(d["index"]).copy() for d in it.get_output_details()])
        outputs.append(runs)
    return all(np.array_equal(x, y) for ra, rb in zip(*outputs) for x, y in zip(ra, rb))


def _io_type(profile: Any) -> str:
    return "uint8" if getattr(profile, "int8_io", "int8") == "uint8" else "int8"


def _job(weights: str) -> str:
    return f"tflite-int8-{weights}"


def start_int8_job(source: Any, calibration: Any, profile: Any, weights: str | None = None) -> None:
    """Queue the int8 conversion (calibration dominates it and runs on one core) in the conversion worker now, so
    that it runs beside the other formats on the second core."""
    from edgecnn.convert.worker import worker_for

    weights = weights or "per-channel"
    if calibration is None or worker_for(source).submitted(_job(weights)):
        return
    from edgecnn.convert.worker import calibration_file

    worker_for(source).submit(
        _job(weights),
        "tflite-int8",
        saved_model=str(source.saved_model()),
        calibration=str(calibration_file(source, calibration)),
        out=str(source.workdir() / f"int8-{weights}.tflite"),
        io=_io_type(profile),
        weights=weights,
    )


def pending(source: Any, precision: Precision, weights: str | None = None) -> bool:
    """Whether the worker is still converting this artifact."""
    from edgecnn.convert.worker import running

    return precision == Precision.INT8 and running(source, "tensorflow", _job(weights or "per-channel"))


def _int8_from_job(source: Any, weights: str) -> tuple[bytes, str] | None:
    worker = source.cache.get("worker-tensorflow")
    if worker is None or not worker.submitted(_job(weights)):
        return None
    answer = worker.result(_job(weights))
    return (source.workdir() / f"int8-{weights}.tflite").read_bytes(), answer["tools"]["tensorflow"]


def convert(
    source: Any,
    precision: Precision,
    out_dir: Path,
    *,
    calibration: Any,
    profile: Any,
    int8_weights: str | None = None,
    **_: Any,
) -> dict[str, Any]:
    weights = int8_weights or "per-channel"
    made = _int8_from_job(source, weights) if precision == Precision.INT8 else None
    dense_per_tensor = precision == Precision.DYNAMIC and getattr(profile, "litert_floor", None) is not None
    blob, tf_version = made or _convert_blob(
        source.saved_model(), precision, calibration, _io_type(profile), weights, dense_per_tensor=dense_per_tensor
    )
    tpu = profile is not None and any(a.kind == "tpu" for a in profile.accelerators)
    result: dict[str, Any] = {"files": {"model": {"path": "model.tflite"}}, "tools": {"tensorflow": tf_version}, "extra": {}}
    if precision in (Precision.INT8, Precision.DYNAMIC) and not tpu:
        # edgetpu_compiler rewrites the model anyway, and I cannot test it on a shared-vector input here
        blob, result["extra"]["flatbuffer"] = share_zero_point_vectors(blob)
    (out_dir / "model.tflite").write_bytes(blob)
    if precision == Precision.INT8:
        result["extra"]["quantization"] = {"weights": weights}
    if dense_per_tensor:
        result["extra"]["quantization"] = {
            "dense_layers": f"per-tensor (loads in tflite-runtime {profile.litert_floor}, the profile's litert_floor)"
        }
    if precision == Precision.INT8 and tpu:
        result["extra"]["edgetpu"] = _edgetpu_compile(out_dir)
        if result["extra"]["edgetpu"].get("compiled"):
            result["files"]["edgetpu_model"] = {"path": "model_edgetpu.tflite"}
    return result


def _edgetpu_compile(out_dir: Path) -> dict[str, Any]:
    exe = shutil.which("edgetpu_compiler")
    if not exe:
        return {
            "compiled": False,
            "note": "edgetpu_compiler is not on PATH: the int8 model is ready, compile it with "
            "'edgetpu_compiler model.tflite' on an x86-64 Debian/Ubuntu machine (coral.ai/docs/edgetpu/compiler)",
        }
    proc = subprocess.run(
        [exe, "-s", "-o", str(out_dir), str(out_dir / "model.tflite")], capture_output=True, text=True, timeout=600
    )
    if proc.returncode != 0:
        return {"compiled": False, "note": f"edgetpu_compiler failed: {proc.stderr.strip()[:300]}"}
    mapped = re.search(r"Number of operations that will run on Edge TPU:\s*(\d+)", proc.stdout)
    cpu = re.search(r"Number of operations that will run on CPU:\s*(\d+)", proc.stdout)
    return {
        "compiled": True,
        "ops_on_tpu": int(mapped.group(1)) if mapped else None,
        "ops_on_cpu": int(cpu.group(1)) if cpu else None,
    }
