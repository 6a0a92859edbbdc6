"""Device side: edgecnn profile: honest latency numbers for an artifact or a bare .tflite/.onnx/.xml."""

from __future__ import annotations

import argparse

from edgecnn.cli.args import THREADS, integer, number

HELP = "profile latency of an artifact or a bare .tflite / .onnx / OpenVINO .xml on this host"


def add_arguments(p) -> None:
    p.add_argument("model", help="artifact folder, conversion output folder, or a .tflite / .onnx / .xml file")
    p.add_argument(
        "--device", help="device profile: its runtime chain and threads apply; if it is not this host, an estimate is added"
    )
    p.add_argument("--runtime", help="force a runtime: litert, onnxruntime, openvino")
    p.add_argument("--threads", type=THREADS)
    p.add_argument(
        "--runs", type=integer(1, 10_000_000), default=200, help="at least this many timed runs per mode (default 200)"
    )
    p.add_argument("--min-seconds", type=number(0, 86_400), default=10.0, help="and at least this long per mode (default 10)")
    p.add_argument("--warmup", type=integer(0, 1_000_000), default=20)
    p.add_argument("--batch", type=integer(1, 4096), default=1)
    p.add_argument("--input-shape", help="for dynamic shapes: e.g. 1,224,224,3")
    p.add_argument(
        "--calibration",
        help="calibration file for the --device estimate (default: the one 'edgecnn calibrate' wrote for this runtime)",
    )
    p.add_argument(
        "--sensor",
        metavar="picamera2-imx500:ARTIFACT",
        help="the Raspberry Pi AI Camera: read the IMX500's own DNN time (get_kpi_info) over --runs frames",
    )
    p.add_argument("--out", help="write OUT.json, .csv, .md and .png")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--with-samples", action="store_true", help=argparse.SUPPRESS)  # --json with raw_ms (for --on)
    from edgecnn.cli.boards import add_board_arguments
    from edgecnn.cli.classify import add_trust_arguments

    add_trust_arguments(p)
    add_board_arguments(p)


def _options(args):
    """ProfileOptions from the flags; --input-shape parsed and --out's folder checked before anything loads."""
    from pathlib import Path

    from edgecnn.errors import ConfigError
    from edgecnn.profiling.measure import ProfileOptions

    shape = None
    if args.input_shape:
        try:
            shape = tuple(int(v) for v in args.input_shape.split(","))
        except ValueError:
            raise ConfigError(
                f"--input-shape must be comma-separated integers like 1,224,224,3; received {args.input_shape!r}"
            ) from None
    if args.out and not Path(args.out).parent.is_dir():
        raise ConfigError(f"cannot write {args.out}: folder {Path(args.out).parent} does not exist")
    return ProfileOptions(
        runs=args.runs,
        min_seconds=args.min_seconds,
        warmup=args.warmup,
        threads=args.threads,
        batch=args.batch,
        input_shape=shape,
    )


def _print(result, args) -> None:
    import json

    from edgecnn.profiling.report import markdown

    if args.json:
        shown = result if args.with_samples else {k: v for k, v in result.items() if k != "raw_ms"}
        print(json.dumps(shown, indent=2, default=str))
    elif not args.quiet:
        print(markdown(result, skipped=args.verbose))  # the runtimes passed over: in the .md file, on screen with -v


def run(args) -> int:
    import edgecnn
    from edgecnn.cli.progress import timed_bar
    from edgecnn.profiling.report import write_outputs
    from edgecnn.signing import trust_key_from

    if args.sensor:  # the network runs in the camera's sensor: its own timing, not a runtime's
        import json

        from edgecnn.stream.imx500 import profile_sensor

        result = profile_sensor(args.sensor, args.runs)
        s = result["sensor"]
        print(json.dumps(result, indent=2) if args.json else
              f"IMX500 DNN time over {s['frames']} frames: p50 {s['p50_ms']:.2f} ms, p90 {s['p90_ms']:.2f} ms "
              f"(sensor, get_kpi_info); DSP p50 {result['dsp_p50_ms']:.2f} ms")  # fmt: skip
        return 0
    opts = _options(args)
    if args.on:
        return _run_on_board(args)
    with timed_bar("profiling", opts, enabled=not (args.quiet or args.json)) as tick:
        result = edgecnn.profile(
            args.model,
            device=args.device,
            runtime=args.runtime,
            runs=opts.runs,
            min_seconds=opts.min_seconds,
            warmup=opts.warmup,
            threads=opts.threads,
            batch=opts.batch,
            input_shape=opts.input_shape,
            calibration=args.calibration,
            trust_key=trust_key_from(args.trust_key),
            self_check=not args.skip_self_check,
            tick=tick,
        )
    if result.get("self_check"):
        from edgecnn.cli.classify import note_self_check

        note_self_check(result["self_check"], "profile", verbose=args.verbose)
    if args.out:
        import sys

        for note in write_outputs(result, args.out)[1]:
            print(f"[profile] note: {note}", file=sys.stderr)
    _print(result, args)
    return 0


def _run_on_board(args) -> int:
    """The board's own edgecnn measures (its runtime, its CPU); the result comes back with ``measured_on``."""
    import sys

    from edgecnn.cli.boards import board_from
    from edgecnn.profiling.report import write_outputs
    from edgecnn.remote.run import profile_on

    board = board_from(args)
    if args.calibration:
        from edgecnn.errors import ConfigError

        raise ConfigError("--calibration is for an estimate made here; with --on the board measures, nothing is estimated")
    if not (args.quiet or args.json):
        print(f"[profile] measuring on {board.label}" + (f" ({board.url})" if board.name else ""), file=sys.stderr)
    result = profile_on(board, args.model, _options(args), device=args.device or board.device, runtime=args.runtime,
                        self_check=not args.skip_self_check, trust_key=args.trust_key)
    copy = result["measured_on"]["copy"]
    if not (args.quiet or args.json):
        how = f"copied by {copy['method']} in {copy['seconds']:.1f} s" if copy["copied"] else "already in its cache"
        print(f"[profile] {result['measured_on']['remote_path']} on {board.label}: {how}", file=sys.stderr)
    if args.out:
        for note in write_outputs(result, args.out)[1]:
            print(f"[profile] note: {note}", file=sys.stderr)
    _print(result, args)
    return 0
