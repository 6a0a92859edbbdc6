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

    import edgecnn
    from edgecnn.stream.sources import SourceOptions

    log = sys.stderr

    def ready(clf, checked) -> None:
        if args.verbose and hasattr(clf, "selection"):  # (the AI Camera's sensor has no runtime chain)
            for line in clf.selection.explain()[:-1]:  # the runtimes passed over, and why
                print(f"[classify] {line}", file=log)
        print(f"[classify] {chosen_line(clf.describe())}", file=log, flush=True)
        note_self_check(checked, "classify", verbose=args.verbose)
        if args.top_k > len(clf.labels):
            print(
                f"[classify] note: --top-k {args.top_k} but the model has {len(clf.labels)} labels: all of them are given",
                file=log,
            )

    report = edgecnn.classify_stream(
        args.artifact,
        args.source,
        args.sink,
        device=args.device,
        runtime=args.runtime,
        accelerator=args.accelerator,
        threads=args.threads,
        top_k=args.top_k,
        allow_fallback=not args.no_fallback,
        trust_key=args.trust_key,
        self_check=not args.skip_self_check,
        source_options=SourceOptions(args.open_timeout, args.read_timeout),
        max_frames=args.max_frames,
        duration=args.duration,
        health=(args.health, args.health_every) if args.health else None,
        on_ready=ready,
        say=lambda line: print(f"[classify] {line}", file=log, flush=True),
    )
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    print(summary_line(report), file=log)
    return 0


def chosen_line(d: dict) -> str:
    """The one line that says what classify runs: the artifact, its format and precision, and the runtime on what."""
    from pathlib import Path

    where = Path(d["artifact"])
    threads = f", {d['threads']} threads" if d.get("threads") else ""
    providers = f" [{', '.join(d['providers'])}]" if d.get("providers") and d["providers"] != [d["accelerator"]] else ""
    return (
        f"artifact {where.parent.name}/{where.name} ({d['format']}/{d['precision']}) with {d['runtime']} {d['version']} "
        f"on {d['accelerator']}{threads}{providers}"
    )


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
