"""Host side: edgecnn benchmark: every format x precision for a device, with a recommendation."""

from __future__ import annotations

from edgecnn.cli.args import integer, number

HELP = "convert to every format x precision a profile allows; size, accuracy, agreement, latency, memory; recommend one"


def add_arguments(p) -> None:
    p.add_argument("model", help="edgecnn run directory or a .keras classifier")
    p.add_argument("--device", required=True)
    p.add_argument("--data", help="labelled image folder (default: the run's test split)")
    p.add_argument("--max-drop", type=number(0, 100), default=1.0, help="accuracy budget in points (default 1)")
    p.add_argument("--runs", type=integer(1, 10_000_000), default=100)
    p.add_argument("--min-seconds", type=number(0, 86_400), default=3.0)
    p.add_argument("--out", help="output folder (default bench/<model>-<device>)")
    p.add_argument("--force", action="store_true")
    p.add_argument("--quiet", action="store_true")
    from edgecnn.cli.boards import add_board_arguments

    add_board_arguments(p)


def run(args) -> int:
    import sys
    from pathlib import Path

    from rich.table import Table

    from edgecnn.cli import console
    from edgecnn.convert.benchmark import headers, run_benchmark, table_rows

    out = Path(args.out or f"bench/{Path(args.model).stem}-{args.device}")
    board = None
    if args.on:
        from edgecnn.cli.boards import board_from
        from edgecnn.remote.transport import check_version

        board = board_from(args)
        check_version(board)  # an unreachable board is refused before the conversion, not after it
    say = (lambda m: None) if args.quiet else (lambda m: print(f"[benchmark] {m}", file=sys.stderr, flush=True))
    result = run_benchmark(
        args.model,
        args.device,
        data=args.data,
        out=out,
        max_drop=args.max_drop,
        runs=args.runs,
        seconds=args.min_seconds,
        force=args.force,
        board=board,
        say=say,
    )
    from edgecnn import liblog

    liblog.keep_in(out)
    table = Table(title=f"{result['model']} on {result['device']} ({out})")
    for h in headers(result):
        table.add_column(h)
    for row in table_rows(result):
        table.add_row(*row)
    console().print(table)
    rec = result["recommendation"]
    print(f"recommendation: {rec['artifact'] or 'none'}: {rec['why']}")
    return 0
