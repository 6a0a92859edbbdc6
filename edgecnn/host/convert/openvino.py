"""Host side: the OpenVINO converter: convert_model from the SavedModel; fp16 compressed weights; int8 with NNCF;
bf16, the fp32 IR told to run in bfloat16.

The inference precision travels inside the IR (``runtime_options/INFERENCE_PRECISION_HINT`` in its runtime info,
covered by the manifest's hashes and the signature): bf16 and fp16 ask for bfloat16 / half arithmetic, which a CPU
with those instructions uses and any other CPU ignores (it computes in f32). The runtime reads it from there.

Without accuracy control every precision is built as a job in the ``openvino-nncf`` worker, a child process without
TensorFlow, beside the parent's other work; ``convert`` then takes its files. Accuracy control needs the labelled
held-out data and runs in the main process.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path
from typing import Any

from edgecnn.errors import ConversionError, first_line
from edgecnn.formats import Format, Precision
from edgecnn.host.convert.base import ConversionResult, Converter, ConvertRequest
from edgecnn.host.convert.data import require_calibration
from edgecnn.host.convert.scheduler import BETWEEN, WORKERS, Job
from edgecnn.host.convert.selective import Selective, selective_convert

WORKERS.add("openvino-nncf", ("openvino", "nncf"))


class OpenVINOConverter(Converter):
    """OpenVINO IR (model.xml + model.bin) for fp32, fp16 (compressed weights) and NNCF int8."""

    format = Format.OPENVINO
    selective_class = "openvino:OpenVINOSelective"

    def __init__(self, session) -> None:
        super().__init__(session)
        self._fp32_model = None  # converted once in the main process, for accuracy control

    def _job(self, r: ConvertRequest) -> Job | None:
        if r.precision == Precision.INT8 and r.accuracy_control is not None:
            return None  # needs the labelled held-out data: main process
        if r.qat:  # from the QAT model's ONNX export, in the main process
            return None
        if r.selective:  # from the ONNX export (OpenVINOSelective), in the main process
            return self.session.converter(Format.ONNX).jobs(ConvertRequest(Format.ONNX, Precision.FP32))[0]
        s = self.session
        name = f"openvino-{r.precision}" + (f"-{r.weights}" if r.precision == Precision.INT8 else "")
        params = {
            "saved_model": str(s.source.saved_model()),
            "precision": str(r.precision),
            "out": str(s.workdir / name),
            "labels": s.source.labels,
            "preprocess": s.source.spec.to_dict(),
            "weights": r.weights,
        }
        return Job(name, "openvino-nncf", f"{__name__}:build_job", params, needs_calibration=r.precision == Precision.INT8)

    def jobs(self, r: ConvertRequest) -> list[Job]:
        job = self._job(r)
        return [job] if job else []

    def convert(self, r: ConvertRequest, out_dir: Path) -> ConversionResult:
        if r.precision == Precision.INT8:
            require_calibration(self.session.calibration, "int8 OpenVINO")
        if r.selective:
            return selective_convert(self, r, out_dir)
        if r.qat:
            return self._qat(r, out_dir)
        job = self._job(r)
        if job is not None:
            answer = self.session.scheduler.result(job.name)
            for _, name in self.info.files:
                shutil.copyfile(Path(job.params["out"]) / name, out_dir / name)
            return ConversionResult(self.files(), answer["tools"], answer["extra"])
        return self._with_accuracy_control(r, out_dir)

    def _qat(self, r: ConvertRequest, out_dir: Path) -> ConversionResult:
        """From the QAT model's ONNX export: its int8 initialisers stay i8 Constants in the IR (convert/qat/)."""
        import openvino as ov

        from edgecnn.host.convert.qat.export import qat_build, qat_result

        s = self.session
        path = qat_build(s).onnx()
        try:
            _save(ov.convert_model(str(path)), out_dir, s.source.labels, s.source.spec.to_dict(), fp16=False)
        except Exception as exc:
            raise ConversionError(f"openvino/int8 (QAT): {first_line(exc, with_type=True)}") from exc
        return qat_result(self, r, out_dir / "model.xml", {ov.__name__: ov.get_version()})

    def _with_accuracy_control(self, r: ConvertRequest, out_dir: Path) -> ConversionResult:
        s = self.session
        try:
            if self._fp32_model is None:
                import openvino as ov

                self._fp32_model = ov.convert_model(str(s.source.saved_model()))
        except Exception as exc:
            raise ConversionError(f"openvino/{r.precision}: {first_line(exc, with_type=True)}") from exc
        eval_set = s.eval_set
        if eval_set is None or eval_set.y is None:
            raise ConversionError("openvino/int8 with accuracy control needs labelled held-out data (--data DIR, or a run)")
        tools, extra = build(
            self._fp32_model,
            r.precision,
            out_dir,
            calibration=s.calibration.samples,
            labels=s.source.labels,
            preprocess=s.source.spec.to_dict(),
            weights=r.weights,
            accuracy=(eval_set, r.accuracy_control),
        )
        return ConversionResult(self.files(), tools, extra)


def build(
    fp32: Any,
    precision: Precision,
    out_dir: Path,
    *,
    calibration: Any,
    labels: list[str],
    preprocess: dict[str, Any],
    weights: str,
    accuracy: tuple[Any, float] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Write model.xml/.bin for one precision from the converted fp32 model; (tools, manifest extra)."""
    import openvino as ov

    tools = {ov.__name__: ov.get_version()}
    extra: dict[str, Any] = {}
    try:
        model = fp32.clone()
        if precision == Precision.INT8:
            import nncf

            tools["nncf"] = nncf.__version__
            extra["quantization"] = {"weights": weights}
            if accuracy is not None:
                dataset = nncf.Dataset([x[None] for x in calibration])  # one sample an item
                model = _quantize_with_accuracy_control(model, dataset, accuracy[0], accuracy[1], _advanced(weights))
                extra["accuracy_control"] = {"max_drop": accuracy[1]}
            else:
                model = quantize_batched(model, calibration, weights)
        _save(model, out_dir, labels, preprocess, fp16=precision == Precision.FP16, inference=INFERENCE.get(precision))
        if precision in INFERENCE:
            extra["inference_precision"] = INFERENCE[precision]
    except ConversionError:
        raise
    except Exception as exc:
        raise ConversionError(f"openvino/{precision}: {first_line(exc, with_type=True)}") from exc
    return tools, extra


def _advanced(weights: str) -> Any:
    import nncf
    from nncf.quantization.advanced_parameters import QuantizationParameters

    return nncf.AdvancedQuantizationParameters(
        weights_quantization_params=QuantizationParameters(per_channel=weights == "per-channel")
    )


def quantize_batched(model: Any, calibration: Any, weights: str, ignored: list[str] | None = None) -> Any:
    """NNCF int8 of ``model`` (consumed), the nodes ``ignored`` left in float.

    NNCF's min/max statistics do not depend on how the samples are batched, and batches are cheaper (README,
    "Measured here"; identical outputs). Its fast bias correction counts items, not samples (100 by default), so it
    averages all the equal batches instead of the first 100 samples: LeNet-5 kept its accuracy and top-1 on all 270
    held-out digits, |dp| within 0.011."""
    import nncf

    batch = max(d for d in range(1, 21) if len(calibration) % d == 0)
    batches = [calibration[i : i + batch] for i in range(0, len(calibration), batch)]
    return nncf.quantize(
        model,
        nncf.Dataset(batches),
        subset_size=len(batches),
        preset=nncf.QuantizationPreset.PERFORMANCE,
        ignored_scope=nncf.IgnoredScope(names=ignored or [], validate=False),
        advanced_parameters=_advanced(weights),
    )


# the inference precision an artifact asks for (runtime.openvino reads it from the IR); fp32 and int8 ask for none
INFERENCE = {Precision.BF16: "bf16", Precision.FP16: "f16"}


def _save(
    model: Any, out_dir: Path, labels: list[str], preprocess: dict[str, Any], *, fp16: bool, inference: str | None = None
) -> None:
    """model.xml/.bin with the labels, preprocessing and (bf16, fp16) inference precision in its runtime info."""
    import openvino as ov

    model.set_rt_info(json.dumps(labels), ["model_info", "labels"])
    model.set_rt_info(json.dumps(preprocess), ["model_info", "edgecnn_preprocess"])
    if inference:
        model.set_rt_info(inference, ["runtime_options", "INFERENCE_PRECISION_HINT"])
    ov.save_model(model, str(out_dir / "model.xml"), compress_to_fp16=fp16)


_CONVERTED: dict[str, Any] = {}  # in the worker: convert_model once per SavedModel (of one conversion)
BETWEEN.append(_CONVERTED.clear)


def build_job(
    saved_model: str,
    precision: str,
    out: str,
    labels: list[str],
    preprocess: dict[str, Any],
    weights: str,
    calibration: str | None = None,
) -> dict[str, Any]:
    """The openvino-nncf worker's job: one precision into ``out``; answers with the manifest's tools and extra."""
    import numpy as np
    import openvino as ov

    precision = Precision(precision)
    try:
        if saved_model not in _CONVERTED:
            _CONVERTED[saved_model] = ov.convert_model(saved_model)
    except Exception as exc:
        raise ConversionError(f"openvino/{precision}: {first_line(exc, with_type=True)}") from exc
    Path(out).mkdir(parents=True, exist_ok=True)
    samples = np.load(calibration) if calibration else None
    tools, extra = build(
        _CONVERTED[saved_model], precision, Path(out), calibration=samples, labels=labels, preprocess=preprocess, weights=weights
    )
    return {"tools": tools, "extra": extra}


def _quantize_with_accuracy_control(model: Any, dataset: Any, eval_set: Any, max_drop: float, advanced: Any) -> Any:
    import nncf
    import numpy as np

    items = [(eval_set.x[i : i + 1], int(eval_set.y[i])) for i in range(len(eval_set.x))]

    def validate(compiled: Any, data: Any) -> float:
        hits = [int(np.argmax(compiled(x)[0])) == y for x, y in data]
        return float(np.mean(hits))

    return nncf.quantize_with_accuracy_control(
        model,
        dataset,
        nncf.Dataset(items),
        validation_fn=validate,
        max_drop=max_drop / 100.0,
        drop_type=nncf.DropType.ABSOLUTE,
        subset_size=300,
        advanced_quantization_parameters=advanced,
    )


class OpenVINOSelective(Selective):
    """NNCF with an IgnoredScope of node names, on the model converted from the ONNX export (OpenVINO's SavedModel
    frontend renames the convolutions; its ONNX frontend keeps tf2onnx's names, which carry the Keras layers)."""

    format = Format.OPENVINO
    how = "nncf.quantize with an IgnoredScope of node names, on the model OpenVINO converts from the ONNX export"

    def _node_names(self) -> list[str]:
        import logging

        import nncf
        import openvino as ov

        nncf.set_log_level(logging.WARNING)  # its INFO lines, once per variant, in the main process
        fp32 = self.session.converter(Format.ONNX)._fp32()  # noqa: SLF001 - names survive only through ONNX
        self.model = ov.convert_model(str(fp32))
        return [op.get_friendly_name() for op in self.model.get_ordered_ops()]

    def _write(self, out_dir: Path, *, exclude: list[str]) -> dict[str, Any]:
        import nncf
        import openvino as ov

        s = self.session
        with contextlib.redirect_stdout(io.StringIO()):  # its progress bars, once per variant
            model = quantize_batched(self.model.clone(), s.calibration.samples, self.weights, exclude)
        _save(model, out_dir, s.source.labels, s.source.spec.to_dict(), fp16=False)
        return {ov.__name__: ov.get_version(), nncf.__name__: nncf.__version__}
