"""Host side: edgecnn calibrate: measure this host's per-layer costs once, for `profile --device NAME` estimates."""

from __future__ import annotations

from edgecnn.cli.args import THREADS, number

HELP = "time small networks with each runtime here and fit the per-layer cost formula that latency estimates use"


def add_arguments(p) -> None:
    p.add_argument(
        "--runtime",
        nargs="+",
        help="runtimes to calibrate (default: every registered runtime)",
    )
    p.add_argument("--precision", nargs="+", default=["fp32", "int8"], help="fp32 and/or int8 (default both)")
    p.add_argument("--threads", type=THREADS, help="threads per inference (default: the host profile's)")
    p.add_argument("--out", help="folder for the calibration files (default ~/.cache/edgecnn/calibration)")
    p.add_argument(
        "--seconds", type=number(above=0, hi=600), default=1.0, help="timing per network and runtime, in all passes (default 1)"
    )
    p.add_argument("--quick", action="store_true", help="nine networks instead of twenty (a rougher fit, for a try)")
    p.add_argument(
        "--check",
        nargs="+",
        default=[],
        metavar="ARTIFACT",
        help="artifacts (or conversion outputs) to time in the same passes and predict, not fit: the estimate's error",
    )
    p.add_argument("--json", action="store_true", help="print the calibrations as JSON")
    p.add_argument("--quiet", action="store_true")


def run(args) -> int:
    import json
    import sys

    from rich.console import Console
    from rich.table import Table

    from edgecnn.convert.latency_calibration import calibrate, checks_from_artifacts
    from edgecnn.devices import load_profile
    from edgecnn.runtime.base import RUNTIMES

    host = load_profile("host")
    checks = checks_from_artifacts(args.check) if args.check else None
    say = (lambda s: print(s, file=sys.stderr, flush=True)) if not (args.quiet or args.json) else (lambda s: None)
    results = calibrate(
        host,
        runtimes=args.runtime or RUNTIMES.names(),
        precisions=args.precision,
        threads=host.threads if args.threads is None else args.threads,
        out_dir=args.out,
        seconds=args.seconds,
        quick=args.quick,
        checks=checks,
        say=say,
    )
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    if args.quiet:
        return 0
    table = Table(title=f"calibration on {host.cpu.model}, {results[0]['threads'] if results else '?'} thread(s)")
    for col in ("runtime", "precision", "fit |error| median", "fit |error| max", "checks (predicted vs measured)", "file"):
        table.add_column(col)
    for c in results:
        checks_txt = ", ".join(f"{k['name']} {k['error'] * 100:+.0f}%" for k in c["checks"]) or "-"
        table.add_row(
            c["runtime"],
            c["precision"],
            f"{c['fit_error_median_abs'] * 100:.1f}%",
            f"{c['fit_error_max_abs'] * 100:.1f}%",
            checks_txt,
            c["path"],
        )
    Console().print(table)
    return 0
