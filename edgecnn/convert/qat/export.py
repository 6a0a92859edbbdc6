"""Host side: int8 artifacts from the fine-tuned QAT model, one per format, each with real int8 weights.

* TFLite: the QAT model's frozen SavedModel through the TFLite converter with int8 in and out: it folds each
  fake-quant into the tensor's int8 parameters (the representative dataset it insists on only fills ranges no
  fake-quant gives, e.g. a softmax's input where none is needed).
* ONNX: tf2onnx (its own command line, in the ``tensorflow`` worker as for every ONNX export) on a second frozen
  SavedModel whose kernels hold their fake-quantised values, then ``onnx_qdq.int8_weights``: int8 initialisers.
* OpenVINO: ``openvino.convert_model`` of that ONNX model; OpenVINO keeps DequantizeLinear's int8 constants as i8
  Constants (Convert/Subtract/Multiply after them) and runs the convolutions in u8/i8.

The fine-tune runs once per conversion (``QATBuild``, kept on the session); each format's artifact then goes
through the same ``artifact.build`` as any other: manifest, parity gate against the float Keras model, self-check.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from edgecnn.convert.base import ConversionResult
from edgecnn.errors import ConversionError, first_line
from edgecnn.formats import Format


class QATBuild:
    """One conversion's QAT model and its exports, made on first use."""

    def __init__(self, session: Any, options: Any) -> None:
        from edgecnn.convert.qat.finetune import fine_tune

        self.session = session
        calib = session.calibration.samples if session.calibration is not None else None
        self.result = fine_tune(session.source, options, calibration=calib, say=session.say)
        self._sources: dict[str, Any] = {}
        self._onnx: Path | None = None

    def _saved_model(self, variant: str) -> Path:
        """The frozen SavedModel of the QAT model (``tflite``) or of its copy with kernels on their grid (``onnx``)."""
        from edgecnn.convert.source import SourceModel

        if variant not in self._sources:
            src = self.session.source
            model = self.result.model if variant == "tflite" else _grid_copy(self.result.model)
            self._sources[variant] = SourceModel(src.path, model, src.labels, src.spec)
        return self._sources[variant].saved_model()

    def tflite(self, io: str) -> tuple[bytes, str]:
        import tensorflow as tf

        calib = self.session.calibration
        conv = tf.lite.TFLiteConverter.from_saved_model(str(self._saved_model("tflite")))
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([x[None]] for x in calib.samples[:100])
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = conv.inference_output_type = tf.uint8 if io == "uint8" else tf.int8
        try:
            return conv.convert(), tf.__version__
        except Exception as exc:  # TF raises ConverterError / RuntimeError with long MLIR dumps
            raise ConversionError(f"tflite/int8 (QAT): TFLiteConverter failed: {first_line(exc)}") from exc

    def onnx(self) -> tuple[Path, dict[str, Any]]:
        """The ONNX model with int8 kernels, and what the pass stored."""
        from edgecnn.convert.onnx import _tf2onnx_args
        from edgecnn.convert.qat.onnx_qdq import int8_weights
        from edgecnn.convert.scheduler import Job

        s = self.session
        saved = self._saved_model("onnx")
        raw, out = saved.parent / "qat-fq.onnx", saved.parent / "qat-int8.onnx"
        if self._onnx is None:
            params = {"argv": _tf2onnx_args(saved, raw), "out": str(raw), "labels": s.source.labels}
            params["preprocess"] = s.source.spec.to_dict()
            job = Job("qat-tf2onnx", "tensorflow", "edgecnn.convert.onnx:export_job", params)
            s.scheduler.add([job])
            try:
                s.scheduler.result(job.name)
            except ConversionError as exc:
                raise ConversionError(f"onnx/int8 (QAT): tf2onnx failed: {exc.message}", hint=exc.hint) from None
            self.onnx_extra = int8_weights(raw, out)
            self._onnx = out
        return self._onnx, self.onnx_extra

    def close(self) -> None:
        for src in self._sources.values():
            src.cleanup()


def _grid_copy(model: Any) -> Any:
    """A copy of the QAT model whose kernels hold their fake-quantised values, the weight fake-quant left out."""
    import keras

    from edgecnn.convert.qat.layers import fake_quant_kernel

    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    for layer in copy._flatten_layers():  # noqa: SLF001
        if hasattr(layer, "refresh_range"):
            layer.refresh_range()
            layer.kernel.assign(fake_quant_kernel(layer.kernel, layer.out_axis, layer.wmax))
            layer.weights_in_graph = False
    return copy


def qat_build(session: Any) -> QATBuild:
    if session.qat is None:
        session.qat = QATBuild(session, session.qat_options)
    return session.qat


def qat_convert(converter: Any, request: Any, out_dir: Path) -> ConversionResult:
    """``request`` (an int8 request with ``qat``) written by ``converter`` from the session's QAT model."""
    from edgecnn.convert.qat.check import int8_weight_report

    build = qat_build(converter.session)
    fmt = request.format
    name = converter.info.files[0][1]
    tools: dict[str, str] = {}
    extra: dict[str, Any] = {"quantization": {"weights": "per-channel (dense: per-tensor)", "by": "quantisation-aware training"}}
    if fmt == Format.TFLITE:
        from edgecnn.convert.tflite import _io_type

        blob, tools["tensorflow"] = build.tflite(_io_type(converter.session.profile))
        (out_dir / name).write_bytes(blob)
    elif fmt == Format.ONNX:
        path, extra["onnx_int8"] = build.onnx()
        shutil.copyfile(path, out_dir / name)
    elif fmt == Format.OPENVINO:
        tools |= _openvino(build, out_dir)
    else:
        raise ConversionError(f"--qat has no exporter for {fmt}")
    extra["qat"] = build.result.to_dict() | {"weights": int8_weight_report(fmt, out_dir / name)}
    return ConversionResult(converter.files(), tools, extra)


def _openvino(build: QATBuild, out_dir: Path) -> dict[str, str]:
    import openvino as ov

    from edgecnn.convert.openvino import _save

    path, _ = build.onnx()
    src = build.session.source
    try:
        model = ov.convert_model(str(path))
        _save(model, out_dir, src.labels, src.spec.to_dict(), fp16=False)
    except Exception as exc:
        raise ConversionError(f"openvino/int8 (QAT): {first_line(exc, with_type=True)}") from exc
    return {ov.__name__: ov.get_version()}
