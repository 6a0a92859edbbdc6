"""OpenVINO IR: convert_model from the SavedModel; fp16 compressed weights; int8 with NNCF."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgecnn.convert.base import Precision
from edgecnn.convert.data import require_calibration
from edgecnn.errors import ConversionError


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
    import openvino as ov

    tools = {"openvino": ov.get_version()}
    extra: dict[str, Any] = {}
    try:
        if "openvino_fp32" not in source.cache:  # convert_model once per source model
            source.cache["openvino_fp32"] = ov.convert_model(str(source.saved_model()))
        model = source.cache["openvino_fp32"].clone()
        if precision == Precision.INT8:
            import nncf

            tools["nncf"] = nncf.__version__
            calib = require_calibration(calibration, "int8 OpenVINO")
            dataset = nncf.Dataset(list(calib))
            weights = int8_weights or "per-channel"
            from nncf.quantization.advanced_parameters import QuantizationParameters

            advanced = nncf.AdvancedQuantizationParameters(
                weights_quantization_params=QuantizationParameters(per_channel=weights == "per-channel")
            )
            extra["quantization"] = {"weights": weights}
            if max_drop is not None and eval_set is not None and eval_set.y is not None:
                model = _with_accuracy_control(model, dataset, eval_set, max_drop, advanced)
                extra["accuracy_control"] = {"max_drop": max_drop}
            else:
                model = nncf.quantize(
                    model,
                    dataset,
                    subset_size=len(calib),
                    preset=nncf.QuantizationPreset.PERFORMANCE,
                    advanced_parameters=advanced,
                )
        model.set_rt_info(json.dumps(source.labels), ["model_info", "labels"])
        model.set_rt_info(json.dumps(source.spec.to_dict()), ["model_info", "edgecnn_preprocess"])
        ov.save_model(model, str(out_dir / "model.xml"), compress_to_fp16=(precision == Precision.FP16))
    except ConversionError:
        raise
    except Exception as exc:
        raise ConversionError(f"openvino/{precision}: {type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}") from exc
    return {"files": {"model": {"path": "model.xml"}, "weights": {"path": "model.bin"}}, "tools": tools, "extra": extra}


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
