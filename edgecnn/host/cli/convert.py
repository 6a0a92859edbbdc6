"""Host side: edgecnn convert: convert-and-quantise for a device profile, with the parity gate."""

from __future__ import annotations

from edgecnn.cli.args import number, source_and_targets

HELP = "convert and quantise a model for a device profile (TFLite, ONNX, OpenVINO) with a parity gate"


def add_arguments(p) -> None:
    source_and_targets(
        p,
        device_help="device profile (edgecnn devices)",
        precision_help="fp32, fp16, dynamic, int8, int16x8 (TFLite, ONNX: int16 activations, int8 weights), or FORMAT/P "
        "(repeatable; default: the profile's list)",
    )
    p.add_argument("--data", help="labelled image folder for the parity gate (default: the run's test split)")
    p.add_argument("--calibration", help="image folder or .npy for int8 calibration (default: 300 training images)")
    p.add_argument("--out", help="output folder (default out/<model>-<device>)")
    p.add_argument("--force", action="store_true", help="replace existing artifacts")
    p.add_argument("--no-gate", action="store_true", help="keep artifacts that fail the parity gate")
    p.add_argument(
        "--max-drop", type=number(0, 100), default=1.0, help="allowed int8/dynamic accuracy drop in points (default 1.0)"
    )
    p.add_argument(
        "--int8-weights",
        choices=["per-channel", "per-tensor"],
        help="int8 weight scales: one per output channel (TFLite/OpenVINO default; keeps post-training accuracy on "
        "depthwise layers) or one per tensor (smaller: no per-channel scale arrays). Default for ONNX: whichever "
        "agrees better with fp32 on the calibration images",
    )
    p.add_argument(
        "--accuracy-control", action="store_true", help="OpenVINO int8: nncf.quantize_with_accuracy_control with --max-drop"
    )
    p.add_argument(
        "--keep-float",
        metavar="LAYER[,LAYER...]|auto",
        help="leave these Keras layers in float in every int8 artifact; 'auto': when one fails the gate, "
        "leave its most sensitive layers in float, one more at a time, until it passes (the trade is reported)",
    )
    p.add_argument(
        "--max-float-layers", type=int, default=4, help="--keep-float auto: at most this many layers in float (default 4)"
    )
    p.add_argument(
        "--sensitivity",
        action="store_true",
        help="write each int8 artifact's per-layer sensitivity (sensitivity.json/.md/.png): every weighted "
        "layer quantised alone, ranked by its error",
    )
    _qat_arguments(p)
    p.add_argument("--labels", help="for a bare .keras: a text file with one label per line (default: labels.txt beside it)")
    p.add_argument("--trust-model", action="store_true", help="allow Lambda layers / custom code in the .keras file")
    p.add_argument("--input-scale", type=number(above=0), help="for a bare .keras: pixel scale (x = (p*scale - mean)/std)")
    p.add_argument("--input-mean", type=number(), default=0.0)
    p.add_argument("--input-std", type=number(above=0), default=1.0)
    p.add_argument("--color-order", default="RGB", choices=["RGB", "BGR"])
    p.add_argument(
        "--sign-key",
        metavar="PRIVATE.pem",
        help="sign every artifact with this elliptic-curve private key (edgecnn sign) before the set appears",
    )
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def _qat_arguments(p) -> None:
    p.add_argument(
        "--qat",
        action="store_true",
        help="make every int8 artifact by quantisation-aware fine-tuning (batch norm folded, weights per channel, "
        "activations per tensor) with real int8 weights in every format; with --keep-float auto: only as the last "
        "rung, when float layers do not pass",
    )
    p.add_argument("--qat-epochs", type=int, default=5, help="--qat: at most this many fine-tuning epochs (default 5)")
    p.add_argument(
        "--qat-data",
        help="--qat: labelled image folder to fine-tune on (default: the run's training split; needed for a bare .keras)",
    )


def run(args) -> int:
    import sys

    import edgecnn
    from edgecnn.host.convert.api import HEADERS, raise_if_failed, summary_rows

    preprocess = _preprocess_from_flags(args)
    say = None if args.quiet or args.json else (lambda msg: print(f"[convert] {msg}", file=sys.stderr, flush=True))
    summary = edgecnn.convert(
        args.model,
        args.device,
        precisions=args.precision,
        data=args.data,
        calibration=args.calibration,
        out=args.out,
        force=args.force,
        gate=not args.no_gate,
        max_drop=args.max_drop,
        accuracy_control=args.accuracy_control,
        int8_weights=args.int8_weights,
        trust=args.trust_model,
        preprocess=preprocess,
        labels=_labels(args.labels),
        sign_key=args.sign_key,
        keep_float=args.keep_float,
        max_float_layers=args.max_float_layers,
        sensitivity=args.sensitivity,
        qat=args.qat,
        qat_epochs=args.qat_epochs,
        qat_data=args.qat_data,
        progress=say,
    )
    from edgecnn import liblog

    if not args.sign_key:  # a signed set stays exactly as signed: the log then stays in edgecnn's log folder
        liblog.keep_in(summary.out)
    if args.json:
        print((summary.out / "summary.json").read_text())
    else:
        from rich.table import Table

        from edgecnn.cli import console

        table = Table(title=f"{summary.model} -> {summary.device} ({summary.out})")
        for h in HEADERS:
            table.add_column(h, no_wrap=h != "status")
        for row in summary_rows(summary):
            table.add_row(*row)
        console().print(table)
        print(f"parity data: {summary.eval_source}")
    raise_if_failed(summary)
    return 0


def _labels(path):
    if not path:
        return None
    from pathlib import Path

    from edgecnn.text import read_lines

    return read_lines(Path(path), "labels file")


def _preprocess_from_flags(args):
    """--input-scale and friends, for a bare .keras: completed with the model's input size once it is loaded."""
    if args.input_scale is None:
        return None
    from edgecnn.host.convert.source import InputFlags

    return InputFlags(args.input_scale, args.input_mean, args.input_std, args.color_order)
