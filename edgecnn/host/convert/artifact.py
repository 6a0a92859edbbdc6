"""Host side: one artifact from one conversion request: its converter's files, the manifest, parity and self-check.

The artifact is staged in its own folder inside the conversion's staging folder; its manifest is written last;
the parity gate runs the device's own Classifier on it and removes it when it fails (unless ``--no-gate``).
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn import __version__
from edgecnn.atomic import staged_directory
from edgecnn.errors import DiskFullError, EdgeCNNError
from edgecnn.formats import runtime_for
from edgecnn.host.convert.base import ConversionResult, ConvertRequest
from edgecnn.host.convert.parity import GateThresholds, ParityResult, check_parity
from edgecnn.manifest import Manifest
from edgecnn.runtime import Classifier, selfcheck
from edgecnn.runtime.base import open_backend


@dataclass
class Row:
    """One line of the conversion table: what became of one request."""

    format: str
    precision: str
    status: str = "ok"  # ok | FAILED | ERROR
    path: str | None = None
    size_mb: float | None = None
    size_ratio: float | None = None
    parity: ParityResult | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # convert / parity wall-clock time
    keep_float: list[str] = field(default_factory=list)  # Keras layers left in float
    recovery: list[dict[str, Any]] = field(default_factory=list)  # --keep-float auto: each step's figures
    qat: bool = False  # made from the quantisation-aware fine-tuned model (convert/qat/)

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "parity"}
        d["parity"] = self.parity.to_dict() if self.parity else None
        return d


@dataclass(frozen=True)
class Shared:
    """What every artifact of one conversion shares."""

    session: Any  # ConversionSession
    keras_probs: np.ndarray
    thresholds: GateThresholds
    gate: bool
    cost: dict[str, Any]
    conversion: dict[str, Any]
    check_pixels: np.ndarray  # candidates for the self-check samples (uint8, model-sized)


class _GateFailed(Exception):
    pass


def _tensor_entry(spec: Any) -> dict[str, Any]:
    d = {"name": spec.name, "shape": list(spec.shape), "dtype": spec.dtype, "layout": "NHWC"}
    d["quantization"] = {"scale": spec.scale, "zero_point": spec.zero_point} if spec.quantized else None
    return d


def _manifest(shared: Shared, request: ConvertRequest, result: ConversionResult, folder: Path) -> Manifest:
    s = shared.session
    source, calib = s.source, s.calibration
    with open_backend(runtime_for(request.format), folder / result.files["model"]["path"]) as backend:
        inp, out = _tensor_entry(backend.input), _tensor_entry(backend.output)
    extra = result.extra | {"cost": shared.cost, "export": source.export_method}
    if calib is not None and request.precision.calibrated:
        extra["calibration"] = {"n": len(calib), "source": calib.source}
        if s.calibration_check:
            extra["calibration"]["warnings"] = s.calibration_check
    return Manifest(
        format=str(request.format),
        precision=str(request.precision),
        files=result.files,
        input=inp,
        output=out,
        labels=source.labels,
        preprocess=source.spec,
        device=s.profile.name,
        source_model={"path": str(source.path), "sha256": source.sha256, "name": source.name},
        conversion=shared.conversion,
        tools={"edgecnn": __version__, "python": platform.python_version(), **result.tools},
        extra=extra,
    )


def _check(shared: Shared, request: ConvertRequest, manifest: Manifest, folder: Path) -> ParityResult:
    """Parity on the held-out data and the self-check samples, through the device's own Classifier; manifest last."""
    s = shared.session
    with Classifier(folder, allow_fallback=False) as clf:
        parity = check_parity(clf, shared.keras_probs, s.eval_set, request.precision, s.source.labels, shared.thresholds)
        manifest.self_check = selfcheck.record(clf, shared.check_pixels, folder)
    manifest.files[selfcheck.ROLE] = {"path": selfcheck.FILE_NAME}
    manifest.parity = parity.to_dict()
    manifest.write(folder)
    return parity


def build(shared: Shared, request: ConvertRequest, final: Path) -> Row:
    """Convert, describe, check and stage one artifact as ``final``; the row says what became of it.

    A full disk stops the whole conversion (DiskFullError); any other EdgeCNNError is this row's ERROR."""
    row = Row(str(request.format), str(request.precision), qat=request.qat)
    try:
        with staged_directory(final) as tmp:
            t0 = time.perf_counter()
            result = shared.session.converter(request.format).convert(request, tmp)
            manifest = _manifest(shared, request, result, tmp)
            manifest.write(tmp)
            row.size_mb, row.keep_float = manifest.model_bytes() / 1e6, list(request.keep_float)
            t1 = time.perf_counter()
            row.parity = _check(shared, request, manifest, tmp)
            row.seconds = {"convert": round(t1 - t0, 2), "parity": round(time.perf_counter() - t1, 2)}
            if shared.gate and not row.parity.passed:
                raise _GateFailed()
    except _GateFailed:
        row.status = "FAILED"
        row.notes.append("removed by the parity gate (use --no-gate to keep it): " + "; ".join(row.parity.reasons))
        return row
    except DiskFullError:
        raise  # every later artifact would fail the same way: the conversion stops
    except EdgeCNNError as exc:
        row.status, row.error = "ERROR", exc.message
        row.notes += [exc.hint] if exc.hint else []
        return row
    row.path = str(final)
    if not row.parity.passed:
        row.status = "FAILED"
        row.notes.append("kept with --no-gate: " + "; ".join(row.parity.reasons))
    if result.extra.get("imx500", {}).get("note"):  # the sensor's memory and headroom (convert/imx500.py)
        row.notes.append(result.extra["imx500"]["note"])
    edgetpu = result.extra.get("edgetpu")
    if edgetpu:
        row.notes.append(
            edgetpu.get("note") or f"Edge TPU: {edgetpu.get('ops_on_tpu')} ops on the TPU, {edgetpu.get('ops_on_cpu')} on the CPU"
        )
    return row
