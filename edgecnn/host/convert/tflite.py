"""Host side: the TFLite converter: fp32, fp16, dynamic-range and full-integer int8 from the SavedModel.

Keras 3's ``TFLiteConverter.from_keras_model`` is unreliable, so we always go through the SavedModel and
``from_saved_model()``. int8 (calibration dominates it, on one core) runs as a job in the ``tensorflow`` worker,
beside the other formats; fp32, fp16 and dynamic range convert in the main process, which has TensorFlow loaded.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from edgecnn.errors import ConversionError, first_line
from edgecnn.formats import Format, Precision
from edgecnn.host.convert.base import ConversionResult, Converter, ConvertRequest
from edgecnn.host.convert.data import require_calibration
from edgecnn.host.convert.scheduler import WORKERS, Job
from edgecnn.host.convert.selective import Selective, selective_convert

WORKERS.add("tensorflow", ("tensorflow",), same_again=True)  # tf2onnx (onnx.py) runs there too


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
        raise ConversionError(f"tflite/{precision}: TFLiteConverter failed: {first_line(exc)}") from exc
    if precision == Precision.FP16:
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif precision == Precision.DYNAMIC:
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        # per-channel dense weights make FULLY_CONNECTED version 12, which tflite-runtime 2.14 cannot load
        conv._experimental_disable_per_channel_quantization_for_dense_layers = dense_per_tensor
    elif precision == Precision.INT16X8:
        calib = require_calibration(calibration, "int16x8 TFLite")
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([x] for x in calib)
        # int16 activations, int8 weights; float at the edges (the runtime's int8 input path does not apply)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
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
        raise ConversionError(f"tflite/{precision}: TFLiteConverter failed: {first_line(exc)}") from exc


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


def int8_job(saved_model: str, calibration: str, out: str, io: str, weights: str, precision: str = "int8") -> dict[str, Any]:
    """The ``tensorflow`` worker's job: full-integer int8 (or int16x8) of ``saved_model`` into ``out``."""
    import numpy as np

    from edgecnn.host.data.calibration import CalibrationSet

    blob, version = _convert_blob(
        Path(saved_model), Precision(precision), CalibrationSet(np.load(calibration), "calibration"), io, weights
    )
    Path(out).write_bytes(blob)
    return {"tools": {"tensorflow": version}}


class TFLiteConverter(Converter):
    """TFLite flatbuffers; int8 in the background, zero-point vectors stored once, Edge TPU compilation when the
    profile has a TPU and edgetpu_compiler is on PATH."""

    format = Format.TFLITE

    selective_class = "tflite:TFLiteSelective"

    def _int8(self, r: ConvertRequest) -> Job:
        s = self.session
        return Job(
            f"tflite-{r.precision}-{r.weights}",
            "tensorflow",
            f"{__name__}:int8_job",
            {
                "saved_model": str(s.source.saved_model()),
                "out": str(s.workdir / f"{r.precision}-{r.weights}.tflite"),
                "io": _io_type(s.profile),
                "weights": r.weights,
                "precision": str(r.precision),
            },
            needs_calibration=True,
        )

    def jobs(self, r: ConvertRequest) -> list[Job]:
        return [self._int8(r)] if r.precision.calibrated and not r.selective and not r.qat else []

    def _blob(self, r: ConvertRequest) -> tuple[bytes, str, bool]:
        """(flatbuffer, TensorFlow version, whether dense layers got one scale per tensor)."""
        s = self.session
        if r.qat:  # the quantisation-aware fine-tuned model's fake-quants folded into int8 (convert/qat/)
            from edgecnn.host.convert.qat.export import qat_build

            return (*qat_build(s).tflite(_io_type(s.profile)), False)
        if r.precision.calibrated:
            require_calibration(s.calibration, f"{r.label} TFLite")
            job = self._int8(r)
            answer = s.scheduler.result(job.name)
            return Path(job.params["out"]).read_bytes(), answer["tools"]["tensorflow"], False
        dense_per_tensor = r.precision == Precision.DYNAMIC and getattr(s.profile, "litert_floor", None) is not None
        blob, version = _convert_blob(
            s.source.saved_model(), r.precision, s.calibration, _io_type(s.profile), r.weights, dense_per_tensor=dense_per_tensor
        )
        return blob, version, dense_per_tensor

    def convert(self, r: ConvertRequest, out_dir: Path) -> ConversionResult:
        if r.selective:
            return selective_convert(self, r, out_dir)
        profile = self.session.profile
        blob, tf_version, dense_per_tensor = self._blob(r)
        tpu = profile is not None and any(a.kind == "tpu" for a in profile.accelerators)
        result = ConversionResult(self.files(), {"tensorflow": tf_version})
        if r.precision in (Precision.INT8, Precision.DYNAMIC) and not tpu:
            # edgetpu_compiler rewrites the model anyway, and I cannot test it on a shared-vector input here
            blob, result.extra["flatbuffer"] = share_zero_point_vectors(blob)
        (out_dir / self.info.files[0][1]).write_bytes(blob)
        if r.precision.calibrated:
            result.extra["quantization"] = {"weights": r.weights}
        if r.qat:
            from edgecnn.host.convert.qat.export import qat_result

            result.extra |= qat_result(self, r, out_dir / self.info.files[0][1]).extra
        if dense_per_tensor:
            result.extra["quantization"] = {
                "dense_layers": f"per-tensor (loads in tflite-runtime {profile.litert_floor}, the profile's litert_floor)"
            }
        if r.precision == Precision.INT8 and tpu:
            result.extra["edgetpu"] = _edgetpu_compile(out_dir)
            if result.extra["edgetpu"].get("compiled"):
                result.files["edgetpu_model"] = {"path": "model_edgetpu.tflite"}
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


def calibrated_converter(saved_model: Path, calibration: Any, precision: Precision) -> Any:
    """A TFLiteConverter that stops after calibration (TF's QuantizationDebugger does the same): its ``convert()``
    is the float model with every tensor's range recorded, ready for ``mlir_quantize`` with any denylist."""
    import tensorflow as tf

    calib = require_calibration(calibration, f"tflite/{precision}")
    conv = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([x] for x in calib)
    conv.experimental_mlir_quantizer = True
    conv._experimental_calibrate_only = True  # noqa: SLF001 - TF's switch for it
    return conv


class TFLiteSelective(Selective):
    """Calibrated once; each variant is ``mlir_quantize`` with the nodes to keep in float denylisted."""

    format = Format.TFLITE
    how = "TFLite converter calibrated once, mlir_quantize with denylisted_nodes (TF's QuantizationDebugger mechanism)"

    def _node_names(self) -> list[str]:
        import tensorflow as tf

        from edgecnn.runtime.litert import _interpreter_class

        s = self.session
        try:
            self.calibrated = calibrated_converter(s.source.saved_model(), s.calibration, self.precision).convert()
        except Exception as exc:  # TF raises ConverterError / RuntimeError with long MLIR dumps
            raise ConversionError(f"tflite/{self.precision}: calibration failed: {first_line(exc)}") from exc
        self.io = {"uint8": tf.uint8, "int8": tf.int8}[_io_type(s.profile)]
        self.tf_version = tf.__version__
        it = _interpreter_class()[0](model_content=self.calibrated)
        return [it._get_tensor_details(o, 0)["name"] for op in it._get_ops_details() for o in op["outputs"]]  # noqa: SLF001

    def _write(self, out_dir: Path, *, exclude: list[str]) -> dict[str, Any]:
        from tensorflow.lite.python import convert as tf_convert

        io = self.io if not self.measuring else tf_convert.dtypes.float32  # measuring a layer alone: float edges
        blob = tf_convert.mlir_quantize(
            self.calibrated,
            disable_per_channel=self.weights == "per-tensor",
            fully_quantize=True,
            input_data_type=io,
            output_data_type=io,
            denylisted_nodes=exclude or None,
        )
        (out_dir / self.model_name).write_bytes(blob)
        return {"tensorflow": self.tf_version}
