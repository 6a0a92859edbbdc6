"""Host side: edgecnn calibrate-check: is a calibration set fit to calibrate int8 (classes, distribution, range,
channels, sizes), and how many images are enough for this model."""

from __future__ import annotations

HELP = "check an int8 calibration set: class balance, images unlike the training set, value range, how many are enough"


def add_arguments(p) -> None:
    p.add_argument("model", help="edgecnn run directory or a .keras classifier")
    p.add_argument("--calibration", required=True, help="image folder (flat or one sub-folder per class) or .npy")
    p.add_argument("--data", help="labelled image folder: held-out images for the size sweep, and the training-like "
                   "images to compare with (default: the run's own splits)")  # fmt: skip
    p.add_argument("--device", default="host", help="device profile (its int8 input type; default host)")
    p.add_argument(
        "--sizes", type=lambda s: [int(v) for v in s.split(",") if v], help="calibration counts for the sweep "
        "(default 50,100,300,1000, as many as exist); '' skips the sweep",
    )  # fmt: skip
    p.add_argument("--trust-model", action="store_true", help="allow Lambda layers / custom code in a .keras file")
    p.add_argument("--json", action="store_true", help="print the findings and figures as JSON")


def run(args) -> int:
    import json
    import sys

    from edgecnn.host.convert.calibration_check import run_check

    say = (lambda s: None) if args.json else (lambda s: print(f"[calibrate-check] {s}", file=sys.stderr, flush=True))
    report = run_check(
        args.model, args.calibration, data=args.data, device=args.device, sizes=args.sizes, trust=args.trust_model, say=say
    )
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        for f in report.findings:
            print(f"{f['level']:>7}  {f['check']}: {f['message']}")
        for p in report.figures.get("size_sweep", []):
            print(f"  int8 agreement with Keras, calibrated on {p['n']:>4} images: {p['agreement']:.1%}")
        if not report.errors and not report.warnings:
            print("the calibration set looks fit for int8")
    report.raise_errors(args.calibration)
    return 0
