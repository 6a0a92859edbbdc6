"""Host side: ``--keep-float auto``: an int8 artifact that failed the parity gate, recovered by leaving its most
sensitive layers in float, one more at a time, until the gate passes or ``--max-float-layers`` is reached.

The ranking is the format's own sensitivity (convert/selective.py: each weighted layer quantised alone, on the
calibration images); every step is a whole artifact through the same ``artifact.build`` as any other (files,
manifest, parity gate on the held-out images, self-check), so a recovered artifact is judged exactly as plain int8
was. Each step's accuracy, size and latency (the gate's p50 here) are kept: in the row, and in the manifest of the
artifact that is kept (``extra.keep_float.steps``), so the trade stays with the artifact.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgecnn.errors import ConfigError, EdgeCNNError
from edgecnn.host.convert import artifact
from edgecnn.host.convert.base import ConvertRequest
from edgecnn.host.convert.selective import SENSITIVITY_IMAGES


def _step(float_layers: tuple[str, ...], row: artifact.Row) -> dict[str, Any]:
    p = row.parity
    return {
        "float_layers": list(float_layers),
        "passed": row.status == "ok",
        "accuracy": p.artifact_accuracy if p else None,
        "drop_points": p.accuracy_drop_points if p else None,
        "agreement": p.agreement if p else None,
        "size_mb": row.size_mb,
        "p50_ms": p.p50_ms if p else None,
        "error": row.error,
    }


def recover(
    shared: artifact.Shared, request: ConvertRequest, final: Path, plain: artifact.Row, limit: int, say: Callable[[str], None]
) -> artifact.Row:
    """The artifact ``request`` again with 1, 2, ... of its most sensitive layers in float, until one passes."""
    session = shared.session
    try:
        selective = session.converter(request.format).selective(request)
        x, reference = session.calibration_reference(SENSITIVITY_IMAGES)
        say(f"{request.label}: failed the gate; ranking {len(selective.nodes.weighted())} layers by sensitivity")
        ranked = [r["layer"] for r in selective.sensitivity(reference, x, say) if r["rank"] is not None]
    except EdgeCNNError as exc:
        plain.notes.append(f"--keep-float auto could not rank the layers: {exc.message}")
        return plain
    steps = [_step((), plain)]
    row = plain
    for k in range(1, min(limit, len(ranked)) + 1):
        keep = tuple(ranked[:k])
        say(f"{request.label}: --keep-float auto, step {k}: {', '.join(keep)} in float")
        row = artifact.build(shared, dataclasses.replace(request, keep_float=keep, steps=tuple(steps)), final)
        steps.append(_step(keep, row))
        if row.status == "ok":
            break
    row.recovery = steps
    row.notes.append(_trade(steps, limit, len(ranked)))
    return row


def _trade(steps: list[dict[str, Any]], limit: int, n_layers: int) -> str:
    """One line: what the kept artifact cost against plain int8 (or why none passed)."""
    plain, last = steps[0], steps[-1]

    def drop(s: dict[str, Any]) -> str:
        return f"{s['drop_points']:.2f}" if s["drop_points"] is not None else "?"

    if not last["passed"]:
        tried = min(limit, n_layers)
        return (
            f"--keep-float auto: still over the budget with {tried} layer(s) in float "
            f"({', '.join(last['float_layers'])}; drop {drop(last)} points, plain int8 {drop(plain)}); "
            "raise --max-float-layers, or use fp16/fp32"
        )
    ratio = []
    if plain["size_mb"] and last["size_mb"]:
        ratio.append(f"size {last['size_mb'] / plain['size_mb']:.2f}x plain int8")
    if plain["p50_ms"] and last["p50_ms"]:
        ratio.append(f"p50 {last['p50_ms'] / plain['p50_ms']:.2f}x (here)")
    return (
        f"--keep-float auto: recovered with {len(last['float_layers'])} layer(s) in float "
        f"({', '.join(last['float_layers'])}): drop {drop(last)} points (plain int8: {drop(plain)}); " + ", ".join(ratio)
    )


def qat_rung(
    shared: artifact.Shared, request: ConvertRequest, final: Path, failed: artifact.Row, say: Callable[[str], None]
) -> artifact.Row:
    """``--keep-float auto --qat``: the last rung, when float layers did not pass: the whole model int8 from the
    quantisation-aware fine-tune (convert/qat/), through the same gate."""
    say(f"{request.label}: float layers did not pass; quantisation-aware fine-tuning (the last rung)")
    steps = failed.recovery or [_step(tuple(failed.keep_float), failed)]
    row = artifact.build(shared, dataclasses.replace(request, keep_float=(), qat=True, steps=tuple(steps)), final)
    row.recovery = [*steps, _step(("QAT",), row)]
    p = row.parity
    drop = f"{p.accuracy_drop_points:.2f}" if p and p.accuracy_drop_points is not None else "?"
    qat = shared.session.qat.result if shared.session.qat is not None else None
    cost = f"fine-tune {qat.epochs} epoch(s), {qat.seconds:.1f} s" if qat else "no fine-tune"
    plain = steps[0]
    ratio = ""
    if plain["size_mb"] and row.size_mb:
        ratio = f", size {row.size_mb / plain['size_mb']:.2f}x plain int8"
    verdict = "passed" if row.status == "ok" else "still over the budget"
    row.notes.append(f"QAT rung {verdict}: drop {drop} points, every layer int8; {cost}{ratio}")
    return row


def check_qat_options(opts: Any, requests: list[ConvertRequest]) -> None:
    """--qat's refusals, before anything loads."""
    from edgecnn.formats import Precision

    if opts.qat_data and not opts.qat:
        raise ConfigError("--qat-data is the fine-tune's data: it needs --qat")
    if not any(r.precision == Precision.INT8 for r in requests):
        precisions = ", ".join(sorted({str(r.precision) for r in requests}))
        raise ConfigError(f"--qat makes int8 artifacts; this conversion makes {precisions}", hint="add --precision int8")
    if opts.float_layers:
        raise ConfigError(
            f"--qat quantises every layer; it cannot keep {', '.join(opts.float_layers)} in float",
            hint="use --keep-float auto --qat (QAT as the last rung) or --qat alone",
        )
    if opts.accuracy_control:
        raise ConfigError("--accuracy-control keeps OpenVINO layers in float; --qat quantises them all: use one")
    if opts.qat_epochs < 1:
        raise ConfigError(f"--qat-epochs must be at least 1; received {opts.qat_epochs}")
