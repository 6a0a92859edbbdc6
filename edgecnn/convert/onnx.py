"""ONNX: tf2onnx from the SavedModel (explicit opset, named input/output); int8 by static QDQ."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.convert.base import Precision
from edgecnn.convert.data import require_calibration
from edgecnn.errors import ConversionError

OPSET = 17
INPUT_NAME, OUTPUT_NAME = "input", "probabilities"


def _tf2onnx(saved_model: Path, out: Path) -> None:
    # tf2onnx.convert.from_keras is broken on Keras 3: convert the exported SavedModel. A child
    # process keeps tf2onnx's graph rewriting and logging out of our interpreter.
    cmd = [
        sys.executable,
        "-m",
        "tf2onnx.convert",
        "--saved-model",
        str(saved_model),
        "--output",
        str(out),
        "--opset",
        str(OPSET),
        "--signature_def",
        "serving_default",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0 or not out.is_file():
        tail = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()][-1:] or ["no output"]
        raise ConversionError(f"onnx: tf2onnx failed: {tail[0][:300]}", hint="rerun with --debug for tf2onnx's full log")


def _finish(path: Path, source: Any) -> None:
    """Name the input/output, make the batch dimension symbolic, embed labels and preprocessing."""
    import onnx

    m = onnx.load(str(path))
    old_in, old_out = m.graph.input[0].name, m.graph.output[0].name
    for node in m.graph.node:
        node.input[:] = [INPUT_NAME if n == old_in else n for n in node.input]
        node.output[:] = [OUTPUT_NAME if n == old_out else n for n in node.output]
    m.graph.input[0].name, m.graph.output[0].name = INPUT_NAME, OUTPUT_NAME
    for t in (m.graph.input[0], m.graph.output[0]):
        t.type.tensor_type.shape.dim[0].dim_param = "batch"
    del m.metadata_props[:]
    for key, value in (("edgecnn.labels", json.dumps(source.labels)), ("edgecnn.preprocess", json.dumps(source.spec.to_dict()))):
        entry = m.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(m)
    onnx.save(m, str(path))


class _Reader:
    """onnxruntime.quantization CalibrationDataReader over our CalibrationSet."""

    def __init__(self, calib: Any) -> None:
        self._calib, self._it = calib, None

    def get_next(self):
        if self._it is None:
            self._it = iter(self._calib)
        x = next(self._it, None)
        return None if x is None else {INPUT_NAME: x.astype(np.float32)}

    def rewind(self) -> None:
        self._it = None


def convert(source: Any, precision: Precision, out_dir: Path, *, calibration: Any, profile: Any, **_: Any) -> dict[str, Any]:
    import shutil

    import onnx
    import tf2onnx

    target = out_dir / "model.onnx"
    fp32 = source.cache.get("onnx_fp32")
    if fp32 is None:  # tf2onnx once per source model, shared by every ONNX precision
        fp32 = source.workdir() / "fp32.onnx"
        _tf2onnx(source.saved_model(), fp32)
        _finish(fp32, source)
        source.cache["onnx_fp32"] = fp32
    with tempfile.TemporaryDirectory(prefix="edgecnn-onnx-") as tmp:
        try:
            if precision == Precision.FP32:
                shutil.copyfile(fp32, target)
            elif precision == Precision.FP16:
                from onnxruntime.transformers.float16 import convert_float_to_float16

                m16 = convert_float_to_float16(onnx.load(str(fp32)), keep_io_types=True)
                onnx.save(m16, str(target))
            else:
                from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
                from onnxruntime.quantization.shape_inference import quant_pre_process

                calib = require_calibration(calibration, "int8 ONNX")
                pre = Path(tmp) / "pre.onnx"
                quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
                quantize_static(
                    str(pre),
                    str(target),
                    _Reader(calib),
                    quant_format=QuantFormat.QDQ,
                    per_channel=True,
                    activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax,
                )
        except ConversionError:
            raise
        except Exception as exc:
            raise ConversionError(f"onnx/{precision}: {type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}") from exc
    import onnxruntime

    return {
        "files": {"model": {"path": "model.onnx"}},
        "extra": {"opset": OPSET},
        "tools": {"tf2onnx": tf2onnx.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__},
    }
