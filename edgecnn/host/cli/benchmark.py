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
    p.add_argument(
        "--qat", action="store_true", help="where int8 misses the budget, also its int8 by quantisation-aware fine-tuning"
    )
    p.add_argument("--qat-epochs", type=int, default=5, help="--qat: at most this many epochs (default 5)")
    p.add_argument("--qat-data", help="--qat: labelled image folder to fine-tune on (default: the run's training split)")
    from edgecnn.cli.boards import add_board_arguments

    add_board_arguments(p)
    p.add_argument(
        "--fleet",
        nargs="*",
        metavar="NAME",
        help="also measure every artifact on the fleet's boards (all, or these), in parallel; results in OUT/boards/",
    )


def run(args) -> int:
    import sys
    from pathlib import Path

    from rich.table import Table

    from edgecnn.cli import console
    from edgecnn.host.lab.benchmark import headers, run_benchmark, table_rows

    out = Path(args.out or f"bench/{Path(args.model).stem}-{args.device}")
    boards = _fleet_boards(args)
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
        cpu_precisions=not boards,  # a fleet measures one set on every board: no row that only this CPU has
        qat={"qat_epochs": args.qat_epochs, "qat_data": args.qat_data} if args.qat else None,
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
    if boards:
        return _on_fleet(boards, result, out, args)
    return 0


def _fleet_boards(args):
    """The boards --fleet names (checked before any work), or None without --fleet."""
    if args.fleet is None:
        return None
    from edgecnn.errors import ConfigError
    from edgecnn.registry import did_you_mean
    from edgecnn.remote.fleet import fleet_path, load_fleet

    if args.on:
        raise ConfigError("--on and --fleet: measure on one board or on the fleet, not both")
    fleet = load_fleet(args.fleet_file, required=True)
    for name in args.fleet:
        if name not in fleet:
            raise ConfigError(f"no board {name!r} in {fleet_path(args.fleet_file)}", hint=did_you_mean(name, sorted(fleet)))
    boards = [fleet[n] for n in (args.fleet or sorted(fleet))]
    if not boards:
        raise ConfigError(f"{fleet_path(args.fleet_file)} names no boards")
    return boards


def _on_fleet(boards, result, out, args) -> int:
    """Every artifact on every board at once, with a table that fills in as they answer; 1 if any cell failed."""
    import sys

    from rich.live import Live

    from edgecnn.atomic import write_json_atomic
    from edgecnn.cli import console
    from edgecnn.formats import runtime_for
    from edgecnn.remote.farm import measure_fleet

    artifacts = [
        (r["artifact"].replace("/", "-"), out / "artifacts" / r["artifact"].replace("/", "-"), runtime_for(r["format"]))
        for r in result["rows"]
        if r.get("p50_ms") or r.get("here_p50_ms")
    ]
    screen = console()
    if sys.stdout.isatty() and not args.quiet:  # the table fills in as the boards answer
        with Live(_fleet_table(boards, artifacts, {}), console=screen, auto_refresh=False) as live:
            cells = measure_fleet(
                boards,
                artifacts,
                out,
                runs=args.runs,
                seconds=args.min_seconds,
                on_change=lambda c: live.update(_fleet_table(boards, artifacts, c), refresh=True),
            )
    else:
        cells = measure_fleet(boards, artifacts, out, runs=args.runs, seconds=args.min_seconds)
        screen.print(_fleet_table(boards, artifacts, cells))
    result["fleet"] = cells
    write_json_atomic(out / "benchmark.json", result)
    failed = [(board, name, c["error"]) for board, row in cells.items() for name, c in row.items() if c["state"] == "error"]
    for board, name, error in failed:
        print(f"[benchmark] {board} {name}: {error}", file=sys.stderr)
    files = sorted(str(p) for p in (out / "boards").glob("*/*.json"))
    if files:
        print(f"compare them: edgecnn report {' '.join(files[:3])}{' ...' if len(files) > 3 else ''}")
    return 1 if failed else 0


def _fleet_table(boards, artifacts, cells):
    from rich.table import Table

    from edgecnn.remote.farm import cell_text

    table = Table(title="invoke p50 ms on each board")
    table.add_column("artifact")
    for b in boards:
        table.add_column(b.label, justify="right")
    for name, _, _ in artifacts:
        table.add_row(name, *(cell_text(cells.get(b.label, {}).get(name, {"state": "waiting"})) for b in boards))
    return table
