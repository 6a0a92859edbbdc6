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


def convert(source: Any, precision: Precision, out_dir: Path, *, calibration: Any, profile: Any, **_: Any) -> dict[str, Any]:
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_saved_model(str(source.saved_model()))
    if precision == Precision.FP16:
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif precision == Precision.DYNAMIC:
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    elif precision == Precision.INT8:
        calib = require_calibration(calibration, "full-integer int8 TFLite")
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([x] for x in calib)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        io = tf.uint8 if getattr(profile, "int8_io", "int8") == "uint8" else tf.int8
        conv.inference_input_type = io
        conv.inference_output_type = io
    try:
        blob = conv.convert()
    except Exception as exc:  # TF raises ConverterError / RuntimeError with long MLIR dumps
        raise ConversionError(f"tflite/{precision}: TFLiteConverter failed: {str(exc).strip().splitlines()[0][:300]}") from exc
    (out_dir / "model.tflite").write_bytes(blob)
    result: dict[str, Any] = {"files": {"model": {"path": "model.tflite"}}, "tools": {"tensorflow": tf.__version__}, "extra": {}}
    if precision == Precision.INT8 and profile is not None and any(a.kind == "tpu" for a in profile.accelerators):
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
