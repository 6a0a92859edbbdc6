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

from pathlib import Path
from typing import Any

from edgecnn.errors import ConversionError, first_line
from edgecnn.formats import Format
from edgecnn.host.convert.base import ConversionResult
from edgecnn.host.convert.qat.check import int8_weight_report


class QATBuild:
    """One conversion's QAT model and its exports, made on first use."""

    def __init__(self, session: Any, options: Any) -> None:
        from edgecnn.host.convert.qat.finetune import fine_tune

        self.session = session
        calib = session.calibration.samples if session.calibration is not None else None
        self.result = fine_tune(session.source, options, calibration=calib, say=session.say)
        self._sources: dict[str, Any] = {}
        self._onnx: Path | None = None
        self.onnx_extra: dict[str, Any] = {}

    def _saved_model(self, variant: str) -> Path:
        """The frozen SavedModel of the QAT model (``fake-quant``) or of its copy with kernels on their grid."""
        from edgecnn.host.convert.source import SourceModel

        if variant not in self._sources:
            src = self.session.source
            model = self.result.model if variant == "fake-quant" else _grid_copy(self.result.model)
            self._sources[variant] = SourceModel(src.path, model, src.labels, src.spec)
        return self._sources[variant].saved_model()

    def tflite(self, io: str) -> tuple[bytes, str]:
        import tensorflow as tf

        calib = self.session.calibration
        conv = tf.lite.TFLiteConverter.from_saved_model(str(self._saved_model("fake-quant")))
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([x[None]] for x in calib.samples[:100])
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = conv.inference_output_type = tf.uint8 if io == "uint8" else tf.int8
        try:
            return conv.convert(), tf.__version__
        except Exception as exc:  # TF raises ConverterError / RuntimeError with long MLIR dumps
            raise ConversionError(f"{Format.TFLITE}/int8 (QAT): TFLiteConverter failed: {first_line(exc)}") from exc

    def onnx(self) -> Path:
        """The ONNX model with int8 kernels: the ONNX converter's own tf2onnx job on the on-grid SavedModel."""
        from edgecnn.host.convert.qat.onnx_qdq import int8_weights

        if self._onnx is None:
            s = self.session
            saved = self._saved_model("on-grid")
            raw, out = saved.parent / "qat-fq.onnx", saved.parent / "qat-int8.onnx"
            job = s.converter(Format.ONNX).export_job(saved, raw, name="qat-tf2onnx")
            s.scheduler.add([job])
            try:
                s.scheduler.result(job.name)
            except ConversionError as exc:
                raise ConversionError(f"{Format.ONNX}/int8 (QAT): tf2onnx failed: {exc.message}", hint=exc.hint) from None
            self.onnx_extra = int8_weights(raw, out)
            self._onnx = out
        return self._onnx

    def close(self) -> None:
        for src in self._sources.values():
            src.cleanup()


def _grid_copy(model: Any) -> Any:
    """A copy of the QAT model whose kernels hold their fake-quantised values, the weight fake-quant left out."""
    import keras

    from edgecnn.host.convert.qat.layers import fake_quant_kernel

    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    for layer in copy._flatten_layers():  # noqa: SLF001
        if hasattr(layer, "refresh_range"):
            layer.refresh_range()
            layer.kernel.assign(fake_quant_kernel(layer.kernel, layer.out_axis, layer.wmax))
            layer.weights_in_graph = False
    return copy


def qat_build(session: Any) -> QATBuild:
    """The session's QAT model, fine-tuned on first use."""
    if session.qat is None:
        session.qat = QATBuild(session, session.qat_options)
    return session.qat


def qat_result(converter: Any, request: Any, model_file: Path, tools: dict[str, str] | None = None) -> ConversionResult:
    """The ConversionResult of ``converter``'s QAT artifact once its model file is written: the fine-tune's record
    and the stored type of every kernel (refused when one is not int8); with the ladder, the rungs below it."""
    fmt = converter.format
    extra: dict[str, Any] = {"quantization": {"weights": "per-channel (dense: per-tensor)", "by": "quantisation-aware training"}}
    build = converter.session.qat
    if build.onnx_extra and fmt != Format.TFLITE:
        extra["onnx_int8"] = build.onnx_extra
    extra["qat"] = build.result.to_dict() | {"weights": int8_weight_report(fmt, model_file)}
    if request.steps:  # --keep-float auto --qat: the rungs below, as the float-layer steps record them
        extra["ladder"] = {"steps": list(request.steps), "passed_with": "quantisation-aware training"}
    return ConversionResult(converter.files(), tools or {}, extra)
