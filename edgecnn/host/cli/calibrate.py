"""Host side: edgecnn calibrate: measure this host's per-layer costs once, for `profile --device NAME` estimates;
or, with --from-measurements, refit the estimate for a device profile from what boards of that kind measured."""

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
    p.add_argument(
        "--from-measurements",
        action="store_true",
        help="refit the estimate for device profiles from the measurements 'benchmark --on BOARD' kept "
        "(~/.cache/edgecnn/measurements); no timing here",
    )
    p.add_argument(
        "--device",
        nargs="+",
        metavar="NAME",
        help="with --from-measurements: these device profiles (default: every one measured)",
    )
    p.add_argument("--json", action="store_true", help="print the calibrations as JSON")
    p.add_argument("--quiet", action="store_true")


def run(args) -> int:
    from edgecnn.errors import ConfigError

    if args.device and not args.from_measurements:
        raise ConfigError("--device goes with --from-measurements (a host calibration times this host)")
    if args.from_measurements:
        if args.check or args.runtime or args.quick:
            raise ConfigError("--from-measurements refits from kept measurements: --check, --runtime and --quick time this host")
        return _from_measurements(args)
    return _host(args)


def _host(args) -> int:
    import json
    import sys

    from rich.console import Console
    from rich.table import Table

    from edgecnn.devices import load_profile
    from edgecnn.host.lab.latency_calibration import calibrate, checks_from_artifacts
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


def _from_measurements(args) -> int:
    import json
    import sys

    from edgecnn.cli import console
    from edgecnn.cli.tables import Column, fitted
    from edgecnn.host.lab.benchmark import measurements_folder
    from edgecnn.host.lab.measured_calibration import from_measurements

    say = (lambda s: print(s, file=sys.stderr, flush=True)) if not (args.quiet or args.json) else (lambda s: None)
    folder = measurements_folder()
    records, skipped = from_measurements(args.device, folder=folder, out_dir=args.out, say=say)
    if args.json:
        print(json.dumps({"records": records, "left_out": skipped}, indent=2))
        return 0
    if args.quiet:
        return 0
    columns = [
        Column("device"),
        Column("runtime/precision"),
        Column("artifacts", justify="right"),
        Column("error before", justify="right"),
        Column("error after (leave-one-out)", fold_to=12),
        Column("kept", fold_to=10),
        Column("file", keep=1, fold_to=20),
    ]
    rows = [_row(r) for r in records]
    out = console()
    out.print(
        fitted(
            "estimates refitted from boards' measurements (error: estimate / measured - 1, median |error|)",
            columns,
            rows,
            out.width,
        )
    )
    for device, reasons in skipped.items():
        for why, n in reasons.items():
            print(f"{device}: {n} line(s) left out: {why}", file=sys.stderr)
    return 0


def _row(r: dict) -> list[str]:
    loo = r["leave_one_out_error_median_abs"]
    if r["coefficients"] is None:
        after, kept = f"{loo['prior'] * 100:.0f}% (no fit beat it)", "as before"
    else:
        after = f"{r['fit_error_median_abs'] * 100:.0f}%" if loo else "unknown (one artifact)"
        kept = r["method"]
    return [
        r["device"],
        f"{r['runtime']}/{r['precision']}",
        str(len(r["artifacts"])),
        f"{r['before_error_median_abs'] * 100:.0f}%",
        after,
        kept,
        r.get("path", "-"),
    ]
