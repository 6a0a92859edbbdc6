"""OpenVINO IR: convert_model from the SavedModel; fp16 compressed weights; int8 with NNCF.

Without accuracy control every precision is built in the ``openvino`` conversion worker (started by
``start_jobs``), a child process without TensorFlow, beside the parent's other work; ``convert`` then takes its
files. Accuracy control needs the labelled held-out data and runs here.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from edgecnn.convert.base import Precision
from edgecnn.convert.data import require_calibration
from edgecnn.errors import ConversionError


def _files() -> dict[str, dict[str, str]]:  # a fresh dict: the manifest writes each file's hash into it
    return {"model": {"path": "model.xml"}, "weights": {"path": "model.bin"}}


def _job(precision: Precision | str, weights: str) -> str:
    return f"openvino-{precision}" + (f"-{weights}" if precision == Precision.INT8 else "")


def start_jobs(source: Any, precisions: list[Precision], calibration: Any, int8_weights: str | None = None) -> None:
    """Queue every OpenVINO precision in the openvino worker, in the order given (int8 only with calibration)."""
    from edgecnn.convert.worker import calibration_file, worker_for

    weights = int8_weights or "per-channel"
    for precision in precisions:
        if precision == Precision.INT8 and calibration is None:
            continue
        worker_for(source, "openvino").submit(
            _job(precision, weights),
            "openvino",
            saved_model=str(source.saved_model()),
            precision=str(precision),
            out=str(source.workdir() / _job(precision, weights)),
            calibration=str(calibration_file(source, calibration)) if precision == Precision.INT8 else None,
            labels=source.labels,
            preprocess=source.spec.to_dict(),
            weights=weights,
        )


def pending(source: Any, precision: Precision, weights: str | None = None) -> bool:
    """Whether the openvino worker is still building this precision."""
    from edgecnn.convert.worker import running

    return running(source, "openvino", _job(precision, weights or "per-channel"))


def convert(
    source: Any,
    precision: Precision,
    out_dir: Path,
    *,
    calibration: Any,
    profile: Any,
    max_drop: float | None = None,
    eval_set: Any = None,
    int8_weights: str | None = None,
    **_: Any,
) -> dict[str, Any]:
    weights = int8_weights or "per-channel"
    accuracy_control = precision == Precision.INT8 and max_drop is not None and eval_set is not None and eval_set.y is not None
    worker = source.cache.get("worker-openvino")
    if not accuracy_control and worker is not None and worker.submitted(_job(precision, weights)):
        answer = worker.result(_job(precision, weights))
        built = source.workdir() / _job(precision, weights)
        for entry in _files().values():
            shutil.copyfile(built / entry["path"], out_dir / entry["path"])
        return {"files": _files(), "tools": answer["tools"], "extra": answer["extra"]}
    if precision == Precision.INT8:
        require_calibration(calibration, "int8 OpenVINO")
    try:
        if "openvino_fp32" not in source.cache:  # convert_model once per source model
            import openvino as ov

            source.cache["openvino_fp32"] = ov.convert_model(str(source.saved_model()))
    except Exception as exc:
        raise ConversionError(f"openvino/{precision}: {type(exc).__name__}: {_first(exc)}") from exc
    tools, extra = build(
        source.cache["openvino_fp32"],
        precision,
        out_dir,
        calibration=calibration.samples if calibration is not None else None,
        labels=source.labels,
        preprocess=source.spec.to_dict(),
        weights=weights,
        accuracy=(eval_set, max_drop) if accuracy_control else None,
    )
    return {"files": _files(), "tools": tools, "extra": extra}


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

    tools = {"openvino": ov.get_version()}
    extra: dict[str, Any] = {}
    try:
        model = fp32.clone()
        if precision == Precision.INT8:
            import nncf
            from nncf.quantization.advanced_parameters import QuantizationParameters

            tools["nncf"] = nncf.__version__
            dataset = nncf.Dataset([x[None] for x in calibration])  # one sample an item
            advanced = nncf.AdvancedQuantizationParameters(
                weights_quantization_params=QuantizationParameters(per_channel=weights == "per-channel")
            )
            extra["quantization"] = {"weights": weights}
            if accuracy is not None:
                model = _with_accuracy_control(model, dataset, accuracy[0], accuracy[1], advanced)
                extra["accuracy_control"] = {"max_drop": accuracy[1]}
            else:
                # NNCF's min/max statistics do not depend on how the samples are batched, and batches are cheaper
                # (MobileNetV2, 200 samples: 10.2 vs 11.6 CPU-s, identical outputs). Its fast bias correction counts
                # items, not samples (100 by default), so it now averages all the equal batches instead of the first
                # 100 samples: LeNet-5 kept its accuracy and top-1 on all 270 held-out digits, |dp| within 0.011.
                batch = max(d for d in range(1, 21) if len(calibration) % d == 0)
                batches = [calibration[i : i + batch] for i in range(0, len(calibration), batch)]
                model = nncf.quantize(
                    model,
                    nncf.Dataset(batches),
                    subset_size=len(batches),
                    preset=nncf.QuantizationPreset.PERFORMANCE,
                    advanced_parameters=advanced,
                )
        model.set_rt_info(json.dumps(labels), ["model_info", "labels"])
        model.set_rt_info(json.dumps(preprocess), ["model_info", "edgecnn_preprocess"])
        ov.save_model(model, str(out_dir / "model.xml"), compress_to_fp16=(precision == Precision.FP16))
    except ConversionError:
        raise
    except Exception as exc:
        raise ConversionError(f"openvino/{precision}: {type(exc).__name__}: {_first(exc)}") from exc
    return tools, extra


_CONVERTED: dict[str, Any] = {}  # in the worker: convert_model once per SavedModel


def job_main(
    saved_model: str,
    precision: str,
    out: str,
    calibration: str | None,
    labels: list[str],
    preprocess: dict[str, Any],
    weights: str,
) -> dict[str, Any]:
    """The openvino worker's job: one precision into ``out``; answers with the manifest's tools and extra."""
    import numpy as np
    import openvino as ov

    precision = Precision(precision)
    try:
        if saved_model not in _CONVERTED:
            _CONVERTED[saved_model] = ov.convert_model(saved_model)
    except Exception as exc:
        raise ConversionError(f"openvino/{precision}: {type(exc).__name__}: {_first(exc)}") from exc
    Path(out).mkdir(parents=True, exist_ok=True)
    samples = np.load(calibration) if calibration else None
    tools, extra = build(
        _CONVERTED[saved_model], precision, Path(out), calibration=samples, labels=labels, preprocess=preprocess, weights=weights
    )
    return {"tools": tools, "extra": extra}


def _first(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:300]


def _with_accuracy_control(model: Any, dataset: Any, eval_set: Any, max_drop: float, advanced: Any) -> Any:
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
