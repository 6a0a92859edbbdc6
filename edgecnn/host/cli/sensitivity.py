"""Host side: edgecnn sensitivity: which layers carry the int8 error, in each format, ranked (and optionally checked
by brute force)."""

from __future__ import annotations

from edgecnn.cli.args import source_and_targets

HELP = "per-layer int8 sensitivity in each format: every weighted layer quantised alone, ranked by its error"


def add_arguments(p) -> None:
    source_and_targets(
        p,
        device_help="device profile (edgecnn devices): its int8 formats are measured",
        precision_help="int8 or FORMAT/int8 (repeatable; default: int8 in every format of the profile)",
    )
    p.add_argument("--calibration", help="image folder or .npy for calibration (default: 300 training images)")
    p.add_argument("--data", help="labelled image folder for the accuracy figures (default: the run's test split)")
    p.add_argument("--out", help="output folder (default out/<model>-<device>-sensitivity)")
    p.add_argument("--force", action="store_true", help="replace the output folder")
    p.add_argument(
        "--check",
        action="store_true",
        help="also the brute-force view: each layer alone left in float, the rest quantised (twice the time)",
    )
    p.add_argument("--top", type=int, default=10, help="rows shown per artifact (default 10; the report has all)")
    p.add_argument("--json", action="store_true", help="print the reports as JSON")


def run(args) -> int:
    import json
    import sys
    from pathlib import Path

    from edgecnn.host.convert.api import convert
    from edgecnn.host.convert.output import locate_source

    out = Path(args.out) if args.out else Path("out") / f"{locate_source(args.model).name}-{args.device}-sensitivity"
    say = None if args.json else (lambda msg: print(f"[sensitivity] {msg}", file=sys.stderr, flush=True))
    summary = convert(
        args.model,
        args.device,
        precisions=args.precision or ["int8"],
        data=args.data,
        calibration=args.calibration,
        out=out,
        force=args.force,
        gate=False,
        sensitivity=True,
        sensitivity_check=args.check,
        progress=say,
    )
    reports = {}
    for r in summary.rows:
        if r.path and (Path(r.path) / "sensitivity.json").is_file():
            reports[f"{r.format}/{r.precision}"] = json.loads((Path(r.path) / "sensitivity.json").read_text())
        elif r.error:
            print(f"{r.format}/{r.precision}: {r.error}", file=sys.stderr)
    if args.json:
        print(json.dumps(reports, indent=2))
        return 0 if reports else 1
    _print(reports, summary, args.top)
    return 0 if reports else 1


def _print(reports: dict, summary, top: int) -> None:
    from edgecnn.cli import console
    from edgecnn.cli.tables import Column, fitted

    out = console()
    for label, rep in reports.items():
        check = rep.get("check")
        columns = [Column("rank", justify="right"), Column("layer"), Column("type", keep=2), Column("mean |dp|", justify="right")]
        columns += [Column("top-1 agreement", justify="right", keep=1)]
        columns += [Column("check rank", justify="right")] if check else []
        rows = [
            [str(r["rank"]), r["layer"], r["type"], f"{r['mean_abs_dp']:.4f}", f"{r['agreement']:.1%}"]
            + ([str(r["check_rank"])] if check else [])
            for r in rep["layers"][:top]
        ]
        every = rep["every_layer_quantised"]
        title = f"{label}: each layer quantised alone (every layer: mean |dp| {every['mean_abs_dp']:.4f})"
        out.print(fitted(title, columns, rows, out.width))
    row = next((r for r in summary.rows if r.path), None)
    if row is not None:
        print(
            f"reports: {summary.out}/*/sensitivity.md (and .json, .png); leave layers in float with "
            "edgecnn convert ... --keep-float LAYER[,LAYER...] or --keep-float auto"
        )
