"""Device side: edgecnn report: compare profile results across devices."""

from __future__ import annotations

HELP = "compare profile results (JSON from edgecnn profile --out) across devices: table + bar chart"


def add_arguments(p) -> None:
    p.add_argument("results", nargs="+", help="profile JSON files")
    p.add_argument("--out", default="report.png", help="bar chart PNG (default report.png)")


def run(args) -> int:
    import importlib.util
    from pathlib import Path

    from edgecnn.atomic import check_can_create
    from edgecnn.cli import console
    from edgecnn.cli.tables import Column, fitted
    from edgecnn.profiling.compare import HEADERS, bar_chart, flags, load_results, rows

    chart = Path(args.out)
    plots = importlib.util.find_spec("matplotlib") is not None
    if plots:
        check_can_create(chart, "chart")  # before reading anything
    results = load_results(args.results)
    out = console()
    keep = {"RSS MB": 0, "threads": 2, "invoke p90": 3, "runtime": 4, "precision": 5, "fresh p50": 6, "FPS": 7}
    left = ("measured on", "profile", "runtime", "result")
    # where it was measured and for which profile are never left out: they fold instead (issue #31)
    fold = {"measured on": 14, "profile": 14}
    columns = [
        Column(h, keep=keep.get(h), justify="left" if h in left else "right", fold_to=fold.get(h)) for h in HEADERS
    ]
    out.print(fitted("latency across devices (ms)", columns, rows(results), out.width))
    from rich.markup import escape

    from edgecnn.untrusted import clean

    for note in flags(results):
        out.print(f"[yellow]note:[/yellow] {escape(clean(note))}")
    if plots:
        bar_chart(results, chart)
        print(f"chart: {chart}")
    else:
        print(f'no chart ({chart.name}): matplotlib is not installed; pip install "edgecnn[plots]" draws it')
    return 0
