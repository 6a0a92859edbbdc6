"""Host side: ``convert()``, one source model -> every requested (format, precision) artifact, gated and summarised.

resolve targets -> start the converters' background jobs -> prepare the data -> convert each artifact as soon as
its jobs have answered (``artifact.build``: files, manifest, parity gate, self-check) -> summary -> publish the set.
No format is named here: the converters are looked up by format (``convert.base``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecnn.devices import load_profile
from edgecnn.errors import DiskFullError
from edgecnn.formats import Precision
from edgecnn.host.convert import artifact
from edgecnn.host.convert.base import ConvertRequest, parse_targets
from edgecnn.host.convert.data import conversion_data, random_eval, require_calibration
from edgecnn.host.convert.parity import GateThresholds
from edgecnn.host.convert.recovery import qat_rung, recover
from edgecnn.host.convert.session import ConversionSession
from edgecnn.host.convert.source import load_source
from edgecnn.host.convert.summary import HEADERS, ConversionSummary, raise_if_failed, size_ratios, summary_rows, write_summary

__all__ = ["HEADERS", "ConversionSummary", "ConvertOptions", "convert", "raise_if_failed", "summary_rows"]


@dataclass(frozen=True)
class ConvertOptions:
    """Everything a conversion can be asked, with its defaults (``convert(model, device, **options)``).

    Attributes:
        precisions: ``int8`` (every format of the profile) or ``tflite/int8``; default: the profile's list.
        data: a labelled image folder for the parity gate (default: the run's test split).
        calibration: an image folder or .npy for int8 (default: 300 class-balanced training images).
        out: the output folder (default ``out/<model>-<device>``); ``force`` replaces it.
        gate: remove artifacts that fail the parity gate; ``max_drop`` is the int8/dynamic budget in points.
        accuracy_control: OpenVINO int8 with NNCF's accuracy control (``max_drop``).
        int8_weights: ``per-channel`` or ``per-tensor`` weight scales (default: each converter's).
        trust: load Keras files that hold code (Lambda layers).
        n_eval: use only the first N held-out images.
        preprocess, labels: for a bare .keras file without preprocess.json / labels.txt beside it.
        sign_key: sign every artifact with this private key before the set appears.
        keep_float: Keras layer names to leave in float in every int8 artifact, or ``"auto"``: when one
            fails the gate, leave the most sensitive layers in float one at a time until it passes, at most
            ``max_float_layers`` (convert/selective.py).
        sensitivity: write each int8 artifact's per-layer sensitivity report into it.
        qat: make every int8 artifact from a quantisation-aware fine-tuned copy of the model; with
            ``keep_float="auto"``, only as the last rung, when float layers did not pass (convert/qat/).
        qat_epochs, qat_data: the fine-tune's epochs and labelled image folder (default: the run's training split).
    """

    precisions: tuple[str, ...] | list[str] | None = None
    data: str | None = None
    calibration: str | None = None
    out: str | Path | None = None
    force: bool = False
    gate: bool = True
    max_drop: float = 1.0
    accuracy_control: bool = False
    int8_weights: str | None = None
    trust: bool = False
    n_eval: int | None = None
    preprocess: Any = None
    labels: list[str] | None = None
    sign_key: str | Path | None = None
    keep_float: str | list[str] | tuple[str, ...] | None = None
    max_float_layers: int = 4
    sensitivity: bool = False
    sensitivity_check: bool = False
    qat: bool = False
    qat_epochs: int = 5
    qat_data: str | None = None

    @property
    def auto(self) -> bool:
        return self.keep_float == "auto"

    @property
    def float_layers(self) -> tuple[str, ...]:
        if not self.keep_float or self.auto:
            return ()
        names = self.keep_float.split(",") if isinstance(self.keep_float, str) else self.keep_float
        return tuple(n.strip() for n in names if n.strip())


def convert(
    model: str | Path, device: str, *, progress: Callable[[str], None] | None = None, **options: Any
) -> ConversionSummary:
    """Convert ``model`` (an edgecnn run folder or a .keras file) for the device profile ``device``.

    Every check that needs no Keras comes first, so that a refusal is quick; the whole set is then built beside
    ``out`` and replaces it in one step (``convert.output``). ``options``: the fields of ``ConvertOptions``."""
    opts = ConvertOptions(**options)
    say = _Timeline(progress)
    profile, requests, plan, located = _plan(model, device, opts)
    say(f"loading {model}")
    source = load_source(model, trust=opts.trust, preprocess=opts.preprocess, labels=opts.labels, located=located)
    if opts.float_layers:
        from edgecnn.host.convert.selective import check_layer_names, keras_layers

        check_layer_names(list(opts.float_layers), keras_layers(source.model))
    from edgecnn.host.convert.output import staged_set

    qat_options = _qat_options(source, opts)
    with ConversionSession(source, profile) as session, staged_set(plan) as staging:
        session.qat_options = qat_options
        rows = _convert_all(session, requests, staging, opts, say, conversion={"id": plan.conversion_id})
        size_ratios(rows, source)
        for r in rows:  # the paths the artifacts will have once the set is published
            r.path = str(plan.final / Path(r.path).name) if r.path else None
        calib = session.calibration
        summary = ConversionSummary(
            source.name, profile.name, plan.final, rows, session.eval_set.source, calib.source if calib else None,
            say.timeline, conversion_id=plan.conversion_id, kept=plan.kept_rows, signed=opts.sign_key is not None,
        )  # fmt: skip
        if plan.replaces:
            say(f"replacing {plan.replaces} in {plan.final}")
        say("done")
        plan.carry_over(staging)
        write_summary(summary, staging)
        _sign(staging, opts.sign_key)
    return summary


def _qat_options(source: Any, opts: ConvertOptions) -> Any:
    """--qat's fine-tune options, once the model's layers and the fine-tune's data are known to be usable."""
    if not opts.qat:
        return None
    from edgecnn.host.convert.qat.finetune import QATOptions, require_data
    from edgecnn.host.convert.qat.rewrite import check_supported

    check_supported(source.model)
    options = QATOptions(epochs=opts.qat_epochs, data=opts.qat_data)
    require_data(source, options)
    return options


class _Timeline:
    """``say(message)``: the progress callback, and the timeline of steps that summary.json records."""

    def __init__(self, progress: Callable[[str], None] | None) -> None:
        self.progress, self.started, self.timeline = progress, time.perf_counter(), []

    def __call__(self, message: str) -> None:
        self.timeline.append((round(time.perf_counter() - self.started, 2), message))
        if self.progress:
            self.progress(message)


def _plan(model: str | Path, device: str, opts: ConvertOptions) -> tuple[Any, list[ConvertRequest], Any, Any]:
    """(profile, requests, output plan, located source): every check that needs no TensorFlow."""
    from edgecnn.atomic import remove_stale_temp
    from edgecnn.host.convert.output import OutputPlan, check_out_path, locate_source
    from edgecnn.host.convert.scheduler import LOG_PREFIX
    from edgecnn.host.convert.source import EXPORT_PREFIX

    profile = load_profile(device)
    budget = opts.max_drop if opts.accuracy_control else None
    requests = [
        ConvertRequest(
            fmt,
            precision,
            opts.int8_weights,
            budget if precision == Precision.INT8 else None,
            keep_float=opts.float_layers if precision == Precision.INT8 else (),
            sensitivity=(opts.sensitivity or opts.sensitivity_check) and precision == Precision.INT8,
            sensitivity_check=opts.sensitivity_check and precision == Precision.INT8,
            qat=opts.qat and not opts.auto and precision == Precision.INT8,
        )
        for fmt, precision in parse_targets(list(opts.precisions or []), list(profile.artifacts))
    ]
    _check_recovery_options(opts, requests)
    located = locate_source(model)
    out = Path(opts.out) if opts.out else Path("out") / f"{located.name}-{profile.name}"
    check_out_path(located, out)
    if opts.sign_key is not None:
        from edgecnn.signing import check_private_key

        check_private_key(opts.sign_key)
    plan = OutputPlan.make(out, force=opts.force, source=located, targets=[r.name for r in requests])
    remove_stale_temp((EXPORT_PREFIX, LOG_PREFIX))  # what a killed conversion left in the temp folder
    return profile, requests, plan, located


def _check_recovery_options(opts: ConvertOptions, requests: list[ConvertRequest]) -> None:
    from edgecnn.errors import ConfigError

    asked = [flag for flag, on in (("--keep-float", opts.keep_float), ("--sensitivity", opts.sensitivity)) if on]
    if asked and not any(r.precision == Precision.INT8 for r in requests):
        precisions = ", ".join(sorted({str(r.precision) for r in requests}))
        raise ConfigError(
            f"{' and '.join(asked)} apply to int8 artifacts (int16x8 is its own way out); this conversion makes {precisions}",
            hint="add --precision int8",
        )
    _check_keep_float(opts, requests)
    if opts.qat or opts.qat_data:
        from edgecnn.host.convert.recovery import check_qat_options

        check_qat_options(opts, requests)


def _check_keep_float(opts: ConvertOptions, requests: list[ConvertRequest]) -> None:
    from edgecnn.errors import ConfigError

    if opts.keep_float is not None and not opts.auto and not opts.float_layers:
        raise ConfigError("--keep-float needs layer names (LAYER[,LAYER...]) or 'auto'")
    if opts.auto and not opts.gate:
        raise ConfigError("--keep-float auto walks until the parity gate passes: it cannot run with --no-gate")
    if opts.max_float_layers < 1:
        raise ConfigError(f"--max-float-layers must be at least 1; received {opts.max_float_layers}")
    if any(r.accuracy_control is not None for r in requests) and opts.keep_float:
        raise ConfigError("--accuracy-control chooses OpenVINO's float layers itself: use it or --keep-float, not both")


def _prepare(session: ConversionSession, requests: list[ConvertRequest], opts: ConvertOptions, say: Callable) -> Any:
    """Held-out and calibration data, the Keras reference outputs and what every artifact shares."""
    from edgecnn.host.models.inspect import analyse
    from edgecnn.profiling.estimate import layer_costs
    from edgecnn.runtime import selfcheck

    source = session.source
    say("preparing held-out and calibration data")
    eval_set, calib = conversion_data(source, data=opts.data, calibration=opts.calibration, n_eval=opts.n_eval)
    session.eval_set = eval_set or random_eval(source)
    needs_calibration = [r.label for r in requests if r.precision == Precision.INT8]
    if needs_calibration and calib is None:
        require_calibration(None, ", ".join(needs_calibration))
    session.set_calibration(calib)
    if opts.calibration and calib is not None and needs_calibration:
        from edgecnn.host.convert.calibration_check import quick_check

        say("checking the calibration images (classes, distribution, channels)")
        report = quick_check(session, opts.calibration)
        report.raise_errors(opts.calibration)
        for w in report.warnings:
            say(f"calibration warning: {w['message']} (edgecnn calibrate-check for the whole picture)")
        session.calibration_check = [w["message"] for w in report.warnings]
    say(f"Keras reference outputs on {len(session.eval_set.x)} held-out inputs")
    keras_probs = source.predict(session.eval_set.x)
    report = analyse(source.model)
    return dict(
        session=session,
        keras_probs=keras_probs,
        thresholds=GateThresholds(max_drop_points=opts.max_drop),
        gate=opts.gate,
        cost={"macs": report.total_macs, "params": report.total_params, "layers": layer_costs(report)},
        check_pixels=selfcheck.pixels_from_inputs(session.eval_set.x[:64], source.spec),
    )


def _convert_all(
    session: ConversionSession,
    requests: list[ConvertRequest],
    staging: Path,
    opts: ConvertOptions,
    say: Callable,
    conversion: dict,
) -> list[artifact.Row]:
    """Every request into ``staging``: the first whose background jobs are done, the rest meanwhile; the table keeps
    the order asked."""
    say("exporting a SavedModel; the background jobs start")
    session.say = say  # the long selective steps (sensitivity) say where they are
    session.start(requests)
    shared = artifact.Shared(**_prepare(session, requests, opts, say), conversion=conversion)
    queue, rows = list(requests), []
    while queue:
        ready = [r for r in queue if session.ready(r)]
        if not ready:  # every remaining artifact waits on a worker: whichever answers first
            session.scheduler.wait_any()
            continue
        request = ready[0]
        queue.remove(request)
        say(f"{request.label}: converting, then checking parity on {len(session.eval_set.x)} inputs")
        try:
            rows.append(_build(shared, request, staging / request.name, opts, say))
        except DiskFullError as exc:
            done = ", ".join(f"{r.format}/{r.precision}" for r in rows if r.path) or "none"
            exc.message += f"; stopped at {request.label} (finished and verified: {done})"
            raise
    order = {r.name: i for i, r in enumerate(requests)}
    return sorted(rows, key=lambda row: order.get(f"{row.format}-{row.precision}", len(order)))


def _build(shared: artifact.Shared, request: ConvertRequest, final: Path, opts: ConvertOptions, say: Callable) -> artifact.Row:
    """One artifact; with ``--keep-float auto`` a failing int8 climbs the ladder: float layers, then (``--qat``) QAT."""
    row = artifact.build(shared, request, final)
    if opts.auto and request.precision == Precision.INT8 and row.status == "FAILED" and row.parity is not None:
        row = recover(shared, request, final, row, opts.max_float_layers, say)
        if opts.qat and row.status == "FAILED":
            row = qat_rung(shared, request, final, row, say)
    return row


def _sign(staging: Path, key: str | Path | None) -> None:
    if key is None:
        return
    from edgecnn.signing import sign_folder

    sign_folder(staging, key)  # every artifact, then the folder as a set
