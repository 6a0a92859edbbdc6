"""Device side: edgecnn classify: classify a camera / video / network stream with an artifact."""

from __future__ import annotations

from edgecnn.cli.args import SECONDS, THREADS, TIMEOUT, integer

HELP = "classify a camera, video file or network stream with a converted artifact"


def add_arguments(p) -> None:
    p.add_argument("artifact", help="artifact folder, or a conversion output folder (the profile picks the artifact)")
    p.add_argument(
        "--source",
        required=True,
        help="0, v4l2:///dev/video0, file:clip.mp4, FOLDER, http://..., rtsp://..., gst:..., picamera2:, synthetic:",
    )
    p.add_argument(
        "--sink",
        action="append",
        default=[],
        help="jsonl:PATH|-, out.mp4, display:, http://:8080 (repeatable). http:// serves the live page and prints its "
        "address; a video file or folder then plays at its own frame rate and the page stays up until Ctrl-C",
    )
    p.add_argument("--device", help="device profile whose runtime chain and threads apply (default: detected)")
    p.add_argument("--runtime", help="force a runtime: litert, onnxruntime, openvino")
    p.add_argument("--accelerator", help="force an accelerator: CUDA, TensorRT, GPU, NPU, AUTO")
    p.add_argument(
        "--no-fallback", action="store_true", help="fail instead of falling back when the runtime/accelerator is missing"
    )
    p.add_argument("--threads", type=THREADS)
    p.add_argument("--top-k", type=integer(1, 1000), default=3, help="labels per prediction (default 3)")
    p.add_argument("--max-frames", type=integer(1))
    p.add_argument("--duration", type=SECONDS, help="stop after S seconds")
    p.add_argument("--open-timeout", type=TIMEOUT, default=5.0, help="seconds to connect to a source (default 5)")
    p.add_argument("--read-timeout", type=TIMEOUT, default=5.0, help="seconds to wait for a frame (default 5)")
    p.add_argument("--json", action="store_true", help="print the final report as JSON")
    p.add_argument("--health", help="write a health line (RSS, threads, fds, buffers, p50/p99 latency) as JSONL to this file")
    p.add_argument("--health-every", type=SECONDS, default=10.0, help="seconds between health lines (default 10)")
    add_trust_arguments(p)


def add_trust_arguments(p) -> None:
    """--trust-key and --skip-self-check, shared by classify and profile."""
    p.add_argument(
        "--trust-key",
        metavar="PUBLIC.pem",
        help="refuse an artifact not signed by this public key (default: $EDGECNN_TRUST_KEY if set)",
    )
    p.add_argument(
        "--skip-self-check",
        action="store_true",
        help="do not replay the artifact's stored images through this runtime before trusting it (noted in the output)",
    )


def run(args) -> int:
    import json
    import sys

    from edgecnn.devices import detect, load_profile
    from edgecnn.runtime import Classifier, selfcheck
    from edgecnn.runtime.select import check_runtime_request
    from edgecnn.signing import trust_key_from
    from edgecnn.stream.loop import classify_stream
    from edgecnn.stream.sources import SourceOptions, open_source

    check_runtime_request(args.runtime, args.accelerator, no_fallback=args.no_fallback)
    source = open_source(args.source, SourceOptions(args.open_timeout, args.read_timeout))  # checked, not opened yet
    profile = load_profile(args.device or detect()[0])
    from edgecnn.stream.imx500 import sensor_classifier

    clf = sensor_classifier(source, args.artifact, top_k=args.top_k) or Classifier(  # the AI Camera: its sensor's outputs
        args.artifact,
        profile=profile,
        runtime=args.runtime,
        accelerator=args.accelerator,
        threads=args.threads,
        top_k=args.top_k,
        allow_fallback=not args.no_fallback,
        trust_key=trust_key_from(args.trust_key),
    )
    log = sys.stderr
    with clf:
        if hasattr(clf, "selection"):
            checked = selfcheck.require(clf, skip=args.skip_self_check)
        else:  # the sensor: Picamera2 offers no tensor injection to replay the samples through it
            checked = {"skipped": True, "why": "the IMX500 computes in the sensor (no tensor injection in Picamera2)"}
        if args.verbose and hasattr(clf, "selection"):
            for line in clf.selection.explain():
                print(f"[classify] {line}", file=log)
        note_self_check(checked, "classify", verbose=args.verbose)
        if args.top_k > len(clf.labels):
            print(
                f"[classify] note: --top-k {args.top_k} but the model has {len(clf.labels)} labels: all of them are given",
                file=log,
            )
        report = classify_stream(
            clf,
            source,
            args.sink,
            max_frames=args.max_frames,
            duration=args.duration,
            health=(args.health, args.health_every) if args.health else None,
            say=lambda line: print(f"[classify] {line}", file=log, flush=True),
        )
    report["runtime"] = clf.describe()
    if hasattr(clf, "dnn_ms"):  # the IMX500's own DNN time per frame (get_kpi_info)
        from edgecnn.stream.imx500 import sensor_kpi

        report["sensor"] = sensor_kpi(clf.dnn_ms)
    report["self_check"] = checked
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    print(summary_line(report), file=log)
    return 0


def summary_line(report: dict) -> str:
    """The one line classify ends with: counts, FPS and the latency of each stage."""
    lat = report["latency_ms"]

    def fmt(stage: str) -> str:
        v = lat.get(stage)
        return f"{stage} p50 {v['p50']:.2f} / p90 {v['p90']:.2f} ms" if v else f"{stage} -"

    stopped = ""
    if report.get("stopped_by"):
        stopped = f"; stopped by {report['stopped_by']}" + (f" {report['stopped']}" if report.get("stopped") else "")
    return (
        f"frames read {report['frames_read']}, classified {report['classified']}, dropped {report['dropped']}, "
        f"corrupt {report['corrupt']}, reconnects {report['reconnects']}, {report['fps']:.1f} FPS; "
        + "; ".join(
            fmt(s)
            for s in ("capture_age", "preprocess", "inference", "postprocess", "sensor_dnn")
            if s in lat or s != "sensor_dnn"
        )
        + stopped
    )


def note_self_check(checked: dict, verb: str, *, verbose: bool) -> None:
    """The self-check's outcome on stderr: always when it was skipped, with -v when it passed."""
    import sys

    if checked.get("skipped"):
        print(f"[{verb}] warning: the artifact's self-check was skipped ({checked['why']})", file=sys.stderr)
    elif verbose:
        print(
            f"[{verb}] self-check passed: top-1 {checked['agreement']}/{checked['n']}, max |dp| {checked['max_abs_dp']:.1e} "
            f"(tolerance {checked['tolerance']:.0e}) in {checked['seconds'] * 1e3:.1f} ms",
            file=sys.stderr,
        )
