"""Host side: the benchmark's candidates beyond the profile's own artifacts: the ways out when int8 misses the budget
(float layers, int16x8, QAT) and the inference precisions this CPU adds (openvino/bf16), each converted and gated."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def candidates(model: str, device: str, summary: Any, *, here: bool, qat: dict | None = None, **kw: Any) -> list[Any]:
    """The extra conversion rows for ``summary``: recovered int8 where it missed the budget (with its QAT when
    ``qat``); with ``here``, the precisions this machine's CPU adds."""
    rows = _recovered(model, device, summary, **kw, qat=qat)
    return rows + (_inference_precisions(model, device, summary, **kw) if here else [])


def _recovered(
    model: str, device: str, summary: Any, *, data, out: Path, max_drop: float, force: bool, say, qat: dict | None = None
) -> list[Any]:
    """When plain int8 misses the budget in a format, that format's ways out, gated: int8 with its most sensitive
    layers in float (``--keep-float auto``), where the format has it int16x8, and with ``qat`` (convert's qat
    options) int8 from the quantisation-aware fine-tune. None when int8 is within it."""
    from edgecnn.formats import FORMATS, Format, Precision
    from edgecnn.host.convert.api import convert

    missed = [
        r.format
        for r in summary.rows
        if r.precision == Precision.INT8 and r.parity and (r.parity.accuracy_drop_points or 0) > max_drop
    ]
    if not missed:
        return []
    asked = [f"{f}/{Precision.INT8}" for f in missed]
    asked += [f"{f}/{Precision.INT16X8}" for f in missed if Precision.INT16X8 in FORMATS[Format(f)].precisions]
    say(f"int8 misses the budget in {', '.join(missed)}: converting {', '.join(asked)} with --keep-float auto")
    again = convert(
        model, device, precisions=asked, data=data, out=out / "recovered", gate=True, force=force, max_drop=max_drop,
        keep_float="auto", progress=say,
    )  # fmt: skip
    if not qat:
        return again.rows
    say(f"and {', '.join(asked[: len(missed)])} by quantisation-aware fine-tuning (--qat)")
    tuned = convert(
        model, device, precisions=asked[: len(missed)], data=data, out=out / "qat", gate=True, force=force,
        max_drop=max_drop, progress=say, qat=True, **qat,
    )  # fmt: skip
    return again.rows + tuned.rows


def _inference_precisions(model: str, device: str, summary: Any, *, data, out: Path, max_drop: float, force: bool, say) -> list[Any]:
    """Where the artifacts run on this machine and its CPU has bfloat16 (AVX-512 BF16, AMX, Arm bf16): openvino/bf16
    beside openvino/fp32, gated like every precision. Never for a profile without OpenVINO artifacts."""
    from edgecnn.devices import cpu_features, host_facts
    from edgecnn.formats import Format, Precision
    from edgecnn.host.convert.api import convert

    made = {(r.format, r.precision) for r in summary.rows}
    if (Format.OPENVINO, Precision.FP32) not in made or (Format.OPENVINO, Precision.BF16) in made:
        return []
    bf16 = cpu_features(host_facts(query_gpu=False).flags)["bf16"]
    if not bf16:
        return []
    say(f"this CPU runs bfloat16 ({', '.join(bf16)}): converting openvino/bf16 beside openvino/fp32")
    again = convert(
        model, device, precisions=["openvino/bf16"], data=data, out=out / "inference-precisions", gate=True, force=force,
        max_drop=max_drop, progress=say,
    )  # fmt: skip
    return again.rows
