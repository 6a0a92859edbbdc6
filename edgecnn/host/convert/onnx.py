"""Host side: the ONNX converter: tf2onnx from the SavedModel (explicit opset, named input/output); int8 by QDQ.

tf2onnx runs as a job in the ``tensorflow`` worker as soon as the SavedModel exists; int8 (calibration, two
quantised candidates and the choice between them) as a job in the ``onnx-quantizer`` worker once tf2onnx has answered
and the calibration samples exist; fp16 in the main process.
"""

from __future__ import annotations

import inspect
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.errors import ConversionError, first_line
from edgecnn.formats import Format, Precision
from edgecnn.host.convert.base import ConversionResult, Converter, ConvertRequest
from edgecnn.host.convert.data import require_calibration
from edgecnn.host.convert.scheduler import WORKERS, Job
from edgecnn.host.convert.selective import Selective, run_model, selective_convert

WORKERS.add("tensorflow", ("tensorflow",), same_again=True)  # TFLite int8 (tflite.py) runs there too
WORKERS.add("onnx-quantizer", ("onnx", "onnxruntime", "onnxruntime.quantization"))

OPSET = 17
INPUT_NAME, OUTPUT_NAME = "input", "probabilities"

_FIRST_NAME: dict[str, int] = {}  # in the worker: tf2onnx's node counter as its first export found it


def _tf2onnx_args(saved_model: Path, out: Path) -> list[str]:
    # tf2onnx.convert.from_keras is broken on Keras 3: convert the exported SavedModel, with tf2onnx's own command
    # line (run in the conversion worker, beside the other formats).
    return ["--saved-model", str(saved_model), "--output", str(out), "--opset", str(OPSET), "--signature_def", "serving_default"]


def export_job(argv: list[str], out: str, labels: list[str], preprocess: dict[str, Any]) -> dict[str, Any]:
    """The ``tensorflow`` worker's job: tf2onnx's own command line, then the input/output names and metadata."""
    from tf2onnx import convert as tf2onnx_cli
    from tf2onnx import utils

    # tf2onnx numbers the nodes it adds (Shape__30) from one counter for the whole process: every export starts
    # where the first one did, so that a worker kept for another conversion names the same model's nodes the same
    utils.INTERNAL_NAME = _FIRST_NAME.setdefault("n", utils.INTERNAL_NAME)
    sys.argv = ["tf2onnx.convert", *argv]
    try:
        tf2onnx_cli.main()
    except SystemExit as exc:  # its argument parser exits
        if exc.code:
            raise RuntimeError(f"tf2onnx exited with {exc.code}") from None
    if not Path(out).is_file():
        raise ConversionError("onnx: tf2onnx wrote no model")
    _finish(Path(out), labels, preprocess)
    return {}


def _finish(path: Path, labels: list[str], preprocess: dict[str, Any]) -> None:
    """Name the input/output, make the batch dimension symbolic, embed labels and preprocessing."""
    import onnx

    m = onnx.load(str(path))
    old_in, old_out = m.graph.input[0].name, m.graph.output[0].name
    for node in m.graph.node:
        node.input[:] = [INPUT_NAME if n == old_in else n for n in node.input]
        node.output[:] = [OUTPUT_NAME if n == old_out else n for n in node.output]
    m.graph.input[0].name, m.graph.output[0].name = INPUT_NAME, OUTPUT_NAME
    m.graph.doc_string = "converted by tf2onnx from the model's SavedModel"  # not the temporary export's path
    for t in (m.graph.input[0], m.graph.output[0]):
        t.type.tensor_type.shape.dim[0].dim_param = "batch"
    del m.metadata_props[:]
    for key, value in (("edgecnn.labels", json.dumps(labels)), ("edgecnn.preprocess", json.dumps(preprocess))):
        entry = m.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(m)
    onnx.save(m, str(path))


class _Reader:
    """onnxruntime.quantization CalibrationDataReader over our CalibrationSet, ``batch`` samples a call."""

    def __init__(self, calib: Any, batch: int = 1) -> None:
        self._calib, self._batch, self._at = calib, batch, 0

    def get_next(self):
        x = self._calib.samples[self._at : self._at + self._batch]
        self._at += self._batch
        return {INPUT_NAME: x.astype(np.float32)} if len(x) else None

    def rewind(self) -> None:
        self._at = 0


CALIBRATION_BATCH = 20


def _calibrate_ranges(pre: Path, calib: Any, cache: Path, threads: int | None = None) -> bool:
    """onnxruntime's MinMax calibration, run faster, into a range cache that quantize_static then reads.

    quantize_static calibrates one sample at a time in a session with every graph optimisation off. The calibrator
    it builds (the same augmented model: a ReduceMin and a ReduceMax on each tensor to quantise) gives the same
    ranges in little more than half the CPU time when it runs batches of 20 in an optimised session (README,
    "Measured here"): a global min/max does not depend on how samples are batched, and the optimiser keeps every
    tensor the reductions read. On MobileNetV2 the 103 ranges differed by at most 5e-7 of their span.
    Returns False where this onnxruntime cannot (quantize_static then calibrates as it always has, into ``cache``).
    """
    try:
        import onnxruntime as ort
        from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator, save_tensors_data
        from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry
    except ImportError:
        return False
    # the operator types quantize_static calibrates when it is given none
    op_types = sorted(set(QLinearOpsRegistry) | set(QDQRegistry))
    calibrator = create_calibrator(
        pre, op_types, augmented_model_path=str(cache.with_name("augmented.onnx")), calibrate_method=CalibrationMethod.MinMax
    )
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    calibrator.infer_session = ort.InferenceSession(
        calibrator.augmented_model_path, sess_options=options, providers=["CPUExecutionProvider"]
    )
    calibrator.collect_data(_Reader(calib, batch=CALIBRATION_BATCH))
    save_tensors_data(calibrator.compute_data(), cache)
    return True


CHOICE_IMAGES = 128


def activation_type(profile: Any) -> tuple[str, str]:
    """The int8 activations' type for a device profile, and why (the manifest records both).

    uint8 for ONNX Runtime on an x86 CPU: its QDQ fusion turns DequantizeLinear -> Conv -> QuantizeLinear into one
    QLinearConv only where int8 activations are allowed, which its source allows on Arm alone (``QDQIsInt8Allowed``,
    onnxruntime/core/optimizer/qdq_transformer): with int8 activations on this x86 CPU MobileNetV2's convolutions ran in
    float between Q/DQ pairs and int8 was slower than fp32 (README, "Measured here"). int8 where TensorRT runs the
    model (its explicit quantisation reads signed int8 Q/DQ only) and on Arm (fused there, sdot kernels).
    Both are asymmetric MinMax ranges over 256 levels: the same resolution, the same agreement.
    """
    from edgecnn.formats import runtime_for

    chain = profile.runtime_chain() if profile is not None else []
    if (runtime_for(Format.ONNX), "TensorRT") in chain:
        return "int8", "TensorRT reads signed int8 Q/DQ only"
    arch = getattr(profile, "arch", "") or ""
    if arch in ("x86_64", "amd64", "x86"):
        return "uint8", "onnxruntime fuses Q/DQ into QLinear kernels on x86 only for uint8 activations"
    return "int8", f"onnxruntime fuses int8 Q/DQ on {arch or 'this architecture'} (QDQIsInt8Allowed)"


class ONNXConverter(Converter):
    """ONNX models for ONNX Runtime: fp32 from tf2onnx, fp16 by onnxruntime's float16 tool, int8 by static QDQ."""

    format = Format.ONNX

    def _export(self) -> Job:
        s = self.session
        return self.export_job(s.source.saved_model(), s.workdir / "fp32.onnx")

    def export_job(self, saved_model: Path, out: Path, *, name: str = "tf2onnx") -> Job:
        """tf2onnx of ``saved_model`` into ``out`` in the ``tensorflow`` worker (the QAT export uses it too)."""
        s = self.session
        params = {"argv": _tf2onnx_args(saved_model, out), "out": str(out), "labels": s.source.labels}
        return Job(name, "tensorflow", f"{__name__}:export_job", params | {"preprocess": s.source.spec.to_dict()})

    selective_class = "onnx:ONNXSelective"

    def _int8(self, r: ConvertRequest) -> Job:
        name = f"onnx-{r.precision}-{r.int8_weights or 'choose'}"
        s = self.session
        params = {"fp32": self._export().params["out"], "out": str(s.workdir / f"{name}.onnx"), "int8_weights": r.int8_weights}
        params["precision"] = str(r.precision)
        params["activations"] = activation_type(s.profile)[0]
        return Job(name, "onnx-quantizer", f"{__name__}:int8_job", params, after=("tf2onnx",), needs_calibration=True)

    def jobs(self, r: ConvertRequest) -> list[Job]:
        return [self._export()] + ([self._int8(r)] if r.precision.calibrated and not r.selective and not r.qat else [])

    def _fp32(self) -> Path:
        job = self._export()
        try:
            self.session.scheduler.result(job.name)
        except ConversionError as exc:
            raise ConversionError(f"onnx: tf2onnx failed: {exc.message}", hint=exc.hint) from None
        return Path(job.params["out"])

    def convert(self, r: ConvertRequest, out_dir: Path) -> ConversionResult:
        import shutil
        from importlib.metadata import version

        import onnx
        import onnxruntime

        target = out_dir / self.info.files[0][1]
        extra: dict[str, Any] = {"opset": OPSET}
        fp32 = self._fp32()
        if r.qat:  # the quantisation-aware fine-tuned model, int8 initialisers (convert/qat/)
            from edgecnn.host.convert.qat.export import qat_build, qat_result

            shutil.copyfile(qat_build(self.session).onnx(), target)
            tools = {"tf2onnx": version("tf2onnx")} | {m.__name__: m.__version__ for m in (onnx, onnxruntime)}
            result = qat_result(self, r, target, tools)
            result.extra |= extra
            return result
        if r.selective:
            result = selective_convert(self, r, out_dir)
            result.extra |= extra
            return result
        try:
            if r.precision == Precision.FP32:
                shutil.copyfile(fp32, target)
            elif r.precision == Precision.FP16:
                from onnxruntime.transformers.float16 import convert_float_to_float16

                onnx.save(convert_float_to_float16(onnx.load(str(fp32)), keep_io_types=True), str(target))
            else:
                require_calibration(self.session.calibration, f"{r.precision} ONNX")
                job = self._int8(r)
                extra |= self.session.scheduler.result(job.name)["extra"]
                if r.precision == Precision.INT8:
                    extra["quantization"]["activations_why"] = activation_type(self.session.profile)[1]
                shutil.copyfile(job.params["out"], target)
        except ConversionError:
            raise
        except Exception as exc:
            raise ConversionError(f"onnx/{r.precision}: {first_line(exc, with_type=True)}") from exc
        tools = {"tf2onnx": version("tf2onnx")} | {m.__name__: m.__version__ for m in (onnx, onnxruntime)}
        return ConversionResult(self.files(), tools, extra)


def quantize(
    fp32: Path,
    calib: Any,
    target: Path,
    int8_weights: str | None = None,
    threads: int | None = None,
    precision: Precision = Precision.INT8,
    activations: str = "int8",
) -> dict[str, Any]:
    """Static QDQ int8 (or int16x8) of ``fp32`` into ``target``; the manifest's extra (which weight scheme, and
    why). ``threads``: onnxruntime's intra-op threads for calibrating and judging (its default: one per core);
    ``activations``: int8 or uint8 (``activation_type``)."""
    import shutil

    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="edgecnn-onnx-") as tmp:
        try:
            pre = Path(tmp) / "pre.onnx"
            quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
            # the choice between the candidates is judged on (at most) 128 calibration images: three models times
            # 300 images was a third of this step's time on MobileNetV2, for a choice that rarely hinges on them
            judge = calib.samples[:CHOICE_IMAGES]
            reference = run_model(Format.ONNX, fp32, judge, threads) if not int8_weights else None
            cache = _range_cache(pre, calib, Path(tmp), threads)
            candidates = [("per-channel", True), ("per-tensor", False)]
            if int8_weights:  # asked for one: no choice to make
                candidates = [c for c in candidates if c[0] == int8_weights]
            tried: dict[str, dict[str, Any]] = {}
            for name, per_channel in candidates:
                out = Path(tmp) / f"{name}.onnx"
                path = _quantize_static(pre, out, calib, per_channel, cache, precision=precision, activations=activations)
                tried[name] = {"path": path}
                if reference is not None:
                    probs = run_model(Format.ONNX, tried[name]["path"], judge, threads)
                    tried[name]["agreement"] = float(np.mean(probs.argmax(1) == reference.argmax(1)))
                    tried[name]["mean_abs_dp"] = float(np.mean(np.abs(probs - reference)))
            chosen, extra = _choose(tried, int8_weights)
            if precision == Precision.INT8:
                extra["quantization"]["activations"] = activations
            shutil.copyfile(tried[chosen]["path"], target)
        except ConversionError:
            raise
        except Exception as exc:
            raise ConversionError(f"onnx/{precision}: {first_line(exc, with_type=True)}") from exc
    return extra


def _range_cache(pre: Path, calib: Any, tmp: Path, threads: int | None) -> dict[str, str]:
    """Calibrate once for every candidate, where this onnxruntime's quantize_static takes a range cache."""
    from onnxruntime.quantization import quantize_static

    if "calibration_cache_path" not in inspect.signature(quantize_static).parameters:
        return {}
    _calibrate_ranges(pre, calib, tmp / "ranges.json", threads)
    return {"calibration_cache_path": str(tmp / "ranges.json")}


def _quantize_static(
    pre: Path,
    out: Path,
    calib: Any,
    per_channel: bool,
    cache: dict[str, str],
    *,
    precision: Precision = Precision.INT8,
    exclude: list[str] | None = None,
    activations: str = "int8",
) -> Path:
    """One QDQ candidate: int8 weights (per channel or per tensor), int8 or uint8 activations (``activation_type``;
    int16 for int16x8: Q/DQ from the com.microsoft domain, since the standard ones take int16 only from opset 21),
    MinMax ranges; the nodes in ``exclude`` left in float."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    wide = precision == Precision.INT16X8
    quantize_static(
        str(pre),
        str(out),
        _Reader(calib),
        quant_format=QuantFormat.QDQ,
        per_channel=per_channel,
        activation_type=QuantType.QInt16 if wide else QuantType.QUInt8 if activations == "uint8" else QuantType.QInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
        nodes_to_exclude=exclude or None,
        extra_options={"UseQDQContribOps": True} if wide else None,
        **cache,
    )
    return out


def _choose(tried: dict[str, dict[str, Any]], int8_weights: str | None) -> tuple[str, dict[str, Any]]:
    """The candidate kept, and the manifest's record of why. Per channel or per tensor: whichever agrees better with
    fp32 on the calibration images (never the held-out data the parity gate judges); equal agreement: the smaller
    mean |dp|."""
    if int8_weights:
        return int8_weights, {"quantization": {"weights": int8_weights, "chosen_by": "--int8-weights"}}
    chosen = max(tried, key=lambda k: (tried[k]["agreement"], -tried[k]["mean_abs_dp"]))
    return chosen, {
        "quantization": {
            "weights": chosen,
            "calibration_agreement": {k: round(v["agreement"], 4) for k, v in tried.items()},
            "calibration_mean_abs_dp": {k: round(v["mean_abs_dp"], 6) for k, v in tried.items()},
        }
    }


def int8_job(
    fp32: str, calibration: str, out: str, int8_weights: str | None, precision: str = "int8", activations: str = "int8"
) -> dict[str, Any]:
    """The onnx-quantizer worker's job: int8 of ``fp32`` into ``out``, on one thread.

    The worker shares the cores with the parent and the other workers, and one thread spends the least CPU on the
    same work (no spinning, no hand-offs; README, "Measured here")."""
    from edgecnn.host.data.calibration import CalibrationSet

    calib = CalibrationSet(np.load(calibration), "calibration")
    extra = quantize(
        Path(fp32), calib, Path(out), int8_weights, threads=1, precision=Precision(precision), activations=activations
    )
    return {"extra": extra}


class ONNXSelective(Selective):
    """Ranges calibrated once into a cache; each variant is quantize_static with ``nodes_to_exclude``."""

    format = Format.ONNX
    how = "onnxruntime.quantization.quantize_static with nodes_to_exclude, ranges calibrated once"

    def _node_names(self) -> list[str]:
        import onnx
        from onnxruntime.quantization.shape_inference import quant_pre_process

        fp32 = self.session.converter(Format.ONNX)._fp32()  # noqa: SLF001 - the session's own export
        self.pre = self.tmp / "pre.onnx"
        quant_pre_process(str(fp32), str(self.pre), skip_symbolic_shape=True)
        self.cache = _range_cache(self.pre, self.session.calibration, self.tmp, None)
        return [n.name for n in onnx.load(str(self.pre)).graph.node]

    def _write(self, out_dir: Path, *, exclude: list[str]) -> dict[str, Any]:
        import onnx
        import onnxruntime

        target = out_dir / self.model_name
        per_channel = self.weights == "per-channel"
        activations = activation_type(self.session.profile)[0]
        _quantize_static(
            self.pre,
            target,
            self.session.calibration,
            per_channel,
            self.cache,
            precision=self.precision,
            exclude=exclude,
            activations=activations,
        )
        return {m.__name__: m.__version__ for m in (onnx, onnxruntime)}
