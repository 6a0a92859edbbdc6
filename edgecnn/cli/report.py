"""edgecnn report: compare profile results across devices."""

from __future__ import annotations

HELP = "compare profile results (JSON from edgecnn profile --out) across devices: table + bar chart"


def add_arguments(p) -> None:
    p.add_argument("results", nargs="+", help="profile JSON files")
    p.add_argument("--out", default="report.png", help="bar chart PNG (default report.png)")


def run(args) -> int:
    from pathlib import Path

    from rich.table import Table

    from edgecnn.cli import console
    from edgecnn.profiling.compare import HEADERS, bar_chart, flags, load_results, rows

    results = load_results(args.results)
    table = Table(title="latency across devices (ms)")
    for h in HEADERS:
        table.add_column(h)
    for r in rows(results):
        table.add_row(*r)
    out = console()
    out.print(table)
    for note in flags(results):
        out.print(f"[yellow]note:[/yellow] {note}")
    bar_chart(results, Path(args.out))
    print(f"chart: {args.out}")
    return 0
