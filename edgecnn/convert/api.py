"""``convert()``: one source model -> every requested (format, precision) artifact, gated and summarised."""

from __future__ import annotations

import logging
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn import __version__
from edgecnn import markdown as md
from edgecnn.atomic import staged_directory, write_atomic, write_json_atomic
from edgecnn.convert.base import CONVERTERS, Precision, parse_targets
from edgecnn.convert.data import conversion_data, random_eval
from edgecnn.convert.parity import GateThresholds, ParityResult, check_parity
from edgecnn.convert.source import load_source
from edgecnn.devices import DeviceProfile, load_profile
from edgecnn.errors import ConversionError, DiskFullError, EdgeCNNError
from edgecnn.manifest import Manifest
from edgecnn.runtime import Classifier, selfcheck
from edgecnn.runtime.base import open_backend

log = logging.getLogger("edgecnn.convert")


@dataclass
class Row:
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

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "parity"}
        d["parity"] = self.parity.to_dict() if self.parity else None
        return d


@dataclass
class ConversionSummary:
    model: str
    device: str
    out: Path
    rows: list[Row]
    eval_source: str
    calibration_source: str | None
    timeline: list[tuple[float, str]] = field(default_factory=list)  # (seconds since start, step begun)
    conversion_id: str = ""
    kept: list[dict[str, Any]] = field(default_factory=list)  # rows of the same model's earlier artifacts kept in the set
    signed: bool = False

    @property
    def ok(self) -> bool:
        return all(r.status == "ok" for r in self.rows)


class _GateFailed(Exception):
    pass


def _tensor_entry(spec: Any) -> dict[str, Any]:
    d = {"name": spec.name, "shape": list(spec.shape), "dtype": spec.dtype, "layout": "NHWC"}
    d["quantization"] = {"scale": spec.scale, "zero_point": spec.zero_point} if spec.quantized else None
    return d


def _one(
    source: Any,
    fmt: str,
    precision: Precision,
    final: Path,
    *,
    profile: DeviceProfile,
    calibration: Any,
    eval_set: Any,
    keras_probs: np.ndarray,
    thresholds: GateThresholds,
    gate: bool,
    force: bool,
    max_drop: float | None,
    cost: dict[str, Any],
    conversion: dict[str, Any],
    check_pixels: np.ndarray,
    int8_weights: str | None = None,
) -> Row:
    info = CONVERTERS.get(fmt)
    row = Row(fmt, str(precision))
    try:
        with staged_directory(final, force=force) as tmp:
            t0 = time.perf_counter()
            result = info.load()(
                source,
                precision,
                tmp,
                calibration=calibration,
                profile=profile,
                max_drop=max_drop,
                eval_set=eval_set,
                int8_weights=int8_weights,
            )
            model_file = tmp / result["files"]["model"]["path"]
            with open_backend(info.runtime, model_file) as backend:
                inp, out = _tensor_entry(backend.input), _tensor_entry(backend.output)
            manifest = Manifest(
                format=fmt,
                precision=str(precision),
                files=result["files"],
                input=inp,
                output=out,
                labels=source.labels,
                preprocess=source.spec,
                device=profile.name,
                source_model={"path": str(source.path), "sha256": source.sha256, "name": source.name},
                conversion=conversion,
                tools={"edgecnn": __version__, "python": platform.python_version(), **result.get("tools", {})},
                extra=result.get("extra", {})
                | {"cost": cost, "export": source.export_method}
                | (
                    {"calibration": {"n": len(calibration), "source": calibration.source}}
                    if calibration is not None and precision in (Precision.INT8,)
                    else {}
                ),
            )
            manifest.write(tmp)
            t1 = time.perf_counter()
            with Classifier(tmp, allow_fallback=False) as clf:  # the device's own code path, on the staged artifact
                row.parity = check_parity(clf, keras_probs, eval_set, precision, source.labels, thresholds)
                manifest.self_check = selfcheck.record(clf, check_pixels, tmp)
            manifest.files[selfcheck.ROLE] = {"path": selfcheck.FILE_NAME}
            row.seconds = {"convert": round(t1 - t0, 2), "parity": round(time.perf_counter() - t1, 2)}
            manifest.parity = row.parity.to_dict()
            manifest.write(tmp)  # manifest last, now with the parity result and the self-check
            if gate and not row.parity.passed:
                raise _GateFailed()
    except _GateFailed:
        row.status = "FAILED"
        row.notes.append("removed by the parity gate (use --no-gate to keep it): " + "; ".join(row.parity.reasons))
        return row
    except DiskFullError:
        raise  # every later artifact would fail the same way: convert() stops
    except EdgeCNNError as exc:
        row.status, row.error = "ERROR", exc.message
        if exc.hint:
            row.notes.append(exc.hint)
        return row
    row.path = str(final)
    size = manifest.model_bytes()
    row.size_mb = size / 1e6
    if not row.parity.passed:
        row.status = "FAILED"
        row.notes.append("kept with --no-gate: " + "; ".join(row.parity.reasons))
    edgetpu = result.get("extra", {}).get("edgetpu")
    if edgetpu:
        row.notes.append(
            edgetpu.get("note") or f"Edge TPU: {edgetpu.get('ops_on_tpu')} ops on the TPU, {edgetpu.get('ops_on_cpu')} on the CPU"
        )
    return row


def convert(
    model: str | Path,
    device: str,
    *,
    precisions: list[str] | None = None,
    data: str | None = None,
    calibration: str | None = None,
    out: str | Path | None = None,
    force: bool = False,
    gate: bool = True,
    max_drop: float = 1.0,
    accuracy_control: bool = False,
    int8_weights: str | None = None,
    trust: bool = False,
    n_eval: int | None = None,
    preprocess: Any = None,
    labels: list[str] | None = None,
    sign_key: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> ConversionSummary:
    """Convert ``model`` for ``device``: every (format, precision) the profile lists, or ``precisions``.

    The whole set is built beside ``out`` and replaces it in one step (see ``convert.output``); with
    ``sign_key`` every artifact is signed before it appears."""
    from edgecnn.convert.output import OutputPlan, check_out_path, locate_source, staged_set

    started = time.perf_counter()
    timeline: list[tuple[float, str]] = []

    def say(msg: str) -> None:
        timeline.append((round(time.perf_counter() - started, 2), msg))
        if progress:
            progress(msg)

    # every check that needs no Keras first: a refusal must not wait for TensorFlow to load
    profile = load_profile(device)
    targets = parse_targets(precisions or [], profile.artifact_pairs())
    located = locate_source(model)
    out_root = Path(out) if out else Path("out") / f"{located.name}-{profile.name}"
    check_out_path(located, out_root)
    if sign_key is not None:
        from edgecnn.signing import _key

        _key(sign_key, "private key (--sign-key)")
    plan = OutputPlan.make(out_root, force=force, source=located, targets=[f"{f}-{p}" for f, p in targets])
    from edgecnn.atomic import remove_stale_temp
    from edgecnn.convert.source import EXPORT_PREFIX
    from edgecnn.convert.worker import LOG_PREFIX

    remove_stale_temp((EXPORT_PREFIX, LOG_PREFIX))  # what a killed conversion left in the temp folder
    say(f"loading {model}")
    source = load_source(model, trust=trust, preprocess=preprocess, labels=labels, located=located)
    conversion = {"id": plan.conversion_id}
    try:  # from here on the source holds a temp folder and maybe the conversion workers: always released
        with staged_set(plan) as staging:
            eval_set, calib, rows = _convert_all(
                source,
                profile,
                targets,
                staging,
                say=say,
                data=data,
                calibration=calibration,
                n_eval=n_eval,
                gate=gate,
                max_drop=max_drop,
                accuracy_control=accuracy_control,
                int8_weights=int8_weights,
                conversion=conversion,
            )
            _size_ratios(rows, source)
            for r in rows:  # the paths the artifacts will have once the set is published
                r.path = str(out_root / Path(r.path).name) if r.path else None
            summary = ConversionSummary(
                source.name,
                profile.name,
                out_root,
                rows,
                eval_set.source,
                calib.source if calib else None,
                timeline,
                conversion_id=plan.conversion_id,
                kept=plan.kept_rows,
                signed=sign_key is not None,
            )
            if plan.replaces:
                say(f"replacing {plan.replaces} in {out_root}")
            say("done")
            plan.carry_over(staging)
            write_summary(summary, staging)
            if sign_key is not None:
                from edgecnn.signing import sign_artifact

                for d in sorted(p for p in staging.iterdir() if (p / "edgecnn.json").is_file()):
                    sign_artifact(d, sign_key)
    finally:
        source.cleanup()
    return summary


def _convert_all(
    source: Any,
    profile: DeviceProfile,
    targets: list[tuple[str, Precision]],
    staging: Path,
    *,
    say: Callable[[str], None],
    data: str | None,
    calibration: str | None,
    n_eval: int | None,
    gate: bool,
    max_drop: float,
    accuracy_control: bool,
    int8_weights: str | None,
    conversion: dict[str, Any],
) -> tuple[Any, Any, list[Row]]:
    from edgecnn.convert import onnx as onnx_conv
    from edgecnn.convert import openvino as openvino_conv
    from edgecnn.convert import tflite as tflite_conv
    from edgecnn.convert.worker import wait_for_any, worker_for

    # the workers import their libraries meanwhile (see edgecnn.convert.worker)
    if any(f == "onnx" or (f, p) == ("tflite", Precision.INT8) for f, p in targets):
        worker_for(source, "tensorflow")
    openvino_precisions = [p for f, p in targets if f == "openvino" and not (accuracy_control and p == Precision.INT8)]
    if openvino_precisions:
        worker_for(source, "openvino")
    if any(f == "onnx" for f, _ in targets):  # tf2onnx runs in the worker on the other core meanwhile
        say("exporting a SavedModel; tf2onnx starts in the background")
        onnx_conv.start_fp32_export(source)
    say("preparing held-out and calibration data")
    eval_set, calib = conversion_data(source, data=data, calibration=calibration, n_eval=n_eval)
    if eval_set is None:
        eval_set = random_eval(source)
    needs_calib = [f"{f}/{p}" for f, p in targets if p == Precision.INT8]
    if needs_calib and calib is None:
        from edgecnn.convert.data import require_calibration

        require_calibration(None, ", ".join(needs_calib))
    if ("tflite", Precision.INT8) in targets:  # the longest step: calibration, one core; start it now beside the rest
        tflite_conv.start_int8_job(source, calib, profile, int8_weights)
    openvino_conv.start_jobs(source, openvino_precisions, calib, int8_weights)
    onnx_int8_queued = ("onnx", Precision.INT8) not in targets

    def pending(fmt: str, prec: Precision) -> bool:  # its worker job is still running
        if fmt == "onnx":
            return onnx_conv.pending_int8(source, int8_weights) if prec == Precision.INT8 else onnx_conv.pending(source)
        return {"tflite": tflite_conv.pending, "openvino": openvino_conv.pending}[fmt](source, prec, int8_weights)

    say(f"Keras reference outputs on {len(eval_set.x)} held-out inputs")
    keras_probs = source.predict(eval_set.x)
    from edgecnn.models.inspect import analyse
    from edgecnn.profiling.estimate import layer_costs

    report = analyse(source.model)
    cost = {"macs": report.total_macs, "params": report.total_params, "layers": layer_costs(report)}
    thresholds = GateThresholds(max_drop_points=max_drop)
    check_pixels = selfcheck.pixels_from_inputs(eval_set.x[:64], source.spec)
    rows: list[Row] = []
    queue = list(targets)
    while queue:
        if not onnx_int8_queued:  # as soon as tf2onnx is done, ONNX int8 goes to its own worker
            onnx_int8_queued = onnx_conv.start_int8_job(source, calib, int8_weights)
        # the first artifact asked for whose worker job (if any) is done: the rest meanwhile instead of waiting on
        # one with a core idle, and when all wait, whichever a worker answers first. The table keeps the order.
        ready = [i for i, t in enumerate(queue) if not pending(*t)]
        if not ready:
            wait_for_any(source)
            continue
        fmt, prec = queue.pop(ready[0])
        say(f"{fmt}/{prec}: converting, then checking parity on {len(eval_set.x)} inputs")
        try:
            row = _one(
                source,
                fmt,
                prec,
                staging / f"{fmt}-{prec}",
                profile=profile,
                calibration=calib,
                eval_set=eval_set,
                keras_probs=keras_probs,
                thresholds=thresholds,
                gate=gate,
                force=False,
                max_drop=max_drop if accuracy_control else None,
                cost=cost,
                conversion=conversion,
                check_pixels=check_pixels,
                int8_weights=int8_weights,
            )
        except DiskFullError as exc:
            done = ", ".join(f"{r.format}/{r.precision}" for r in rows if r.path) or "none"
            exc.message += f"; stopped at {fmt}/{prec} (finished and verified: {done})"
            raise
        rows.append(row)
    order = {t: i for i, t in enumerate(targets)}
    rows.sort(key=lambda r: order.get((r.format, r.precision), len(order)))  # the table in the profile's order
    return eval_set, calib, rows


def _size_ratios(rows: list[Row], source: Any) -> None:
    fp32 = {r.format: r.size_mb for r in rows if r.precision == "fp32" and r.size_mb}
    keras_mb = source.model.count_params() * 4 / 1e6
    for r in rows:
        if r.size_mb:
            r.size_ratio = r.size_mb / fp32.get(r.format, keras_mb)


def summary_rows(summary: ConversionSummary) -> list[list[str]]:
    table = []
    for r in summary.rows:
        p = r.parity

        def pct(v: float | None) -> str:
            return "-" if v is None else f"{v * 100:.2f}%"

        table.append(
            [
                r.format,
                r.precision,
                "-" if r.size_mb is None else f"{r.size_mb:.3f}",
                "-" if r.size_ratio is None else f"{r.size_ratio:.2f}x",
                pct(p.keras_accuracy) if p else "-",
                pct(p.artifact_accuracy) if p else "-",
                pct(p.agreement) if p else "-",
                f"{p.max_abs_dp:.1e}" if p else "-",
                f"{p.p50_ms:.3f}" if p and p.p50_ms else "-",
                r.status if r.status != "ERROR" else f"ERROR: {r.error}",
            ]
        )
    return table


HEADERS = [
    "format",
    "precision",
    "size MB",
    "vs fp32",
    "Keras acc",
    "artifact acc",
    "agreement",
    "max|dp|",
    "p50 ms (host)",
    "status",
]


def write_summary(summary: ConversionSummary, folder: Path | None = None) -> None:
    """summary.json and summary.md into ``folder`` (default: the summary's output folder)."""
    folder = folder or summary.out
    data = {
        "model": summary.model,
        "device": summary.device,
        "conversion_id": summary.conversion_id,
        "eval_data": summary.eval_source,
        "calibration": summary.calibration_source,
        "ok": summary.ok,
        "signed": summary.signed,
        "artifacts": [r.to_dict() for r in summary.rows] + summary.kept,
        "timeline_s": [list(t) for t in summary.timeline],
    }
    write_json_atomic(folder / "summary.json", data)
    lines = [
        f"# {summary.model} for {summary.device}",
        "",
        f"Parity data: {summary.eval_source}. Calibration: {summary.calibration_source or '-'}.",
        "",
        *md.table(HEADERS, summary_rows(summary)),
    ]
    for r in summary.rows:
        if r.parity and r.parity.per_class_delta and r.status != "ok":
            worst = sorted(r.parity.per_class_delta.items(), key=lambda kv: kv[1])[:5]
            lines.append(
                f"\n{r.format}/{r.precision} per-class accuracy change (points): " + ", ".join(f"{k}: {v:+.1f}" for k, v in worst)
            )
        for note in r.notes:
            lines.append(f"\n{r.format}/{r.precision}: {note}")
    if summary.kept:
        kept = ", ".join(f"{r.get('format')}/{r.get('precision')}" for r in summary.kept)
        lines.append(f"\nKept from the earlier conversion of the same model (same conversion id): {kept}.")
    write_atomic(folder / "summary.md", "\n".join(lines) + "\n")


def raise_if_failed(summary: ConversionSummary) -> None:
    bad = [f"{r.format}/{r.precision} ({r.status})" for r in summary.rows if r.status != "ok"]
    if bad:
        raise ConversionError(
            f"{len(bad)} of {len(summary.rows)} artifacts failed: {', '.join(bad)}; see {summary.out / 'summary.md'}"
        )
