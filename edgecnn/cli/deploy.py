"""Device side: edgecnn deploy: an artifact folder to a board over SSH: stage, verify there, switch, restart, watch,
roll back."""

from __future__ import annotations

from edgecnn.cli.args import integer, number

HELP = "deploy an artifact folder to a board: stage, verify and self-check there, switch atomically, restart, roll back"


def add_arguments(p) -> None:
    p.add_argument("artifact", nargs="?", help="artifact folder or conversion output folder (not with --rollback)")
    p.add_argument("--to", required=True, metavar="DIR", help="the folder on the board: releases/ and the current link")
    p.add_argument(
        "--restart", metavar="CMD", help="shell command on the board that restarts the service (e.g. systemctl restart edgecnn)"
    )
    p.add_argument(
        "--health", metavar="FILE", help="the service's classify --health log on the board: it must move after the restart"
    )
    p.add_argument("--check", metavar="CMD", help="shell command on the board that exits 0 when the service is healthy")
    p.add_argument("--grace", type=number(0, 3600), default=10.0, help="seconds to watch after the restart (default 10)")
    p.add_argument("--keep", type=integer(1, 1000), default=3, help="releases kept on the board (default 3)")
    p.add_argument("--trust-key", metavar="PUBLIC.pem", help="the board refuses a release not signed by this key")
    p.add_argument("--rollback", action="store_true", help="switch back to the previous release and restart")
    p.add_argument("--json", action="store_true", help="print what happened as JSON")
    from edgecnn.cli.boards import add_board_arguments

    add_board_arguments(p, required=True)


def run(args) -> int:
    import json
    import sys
    from pathlib import Path

    from edgecnn.cli.boards import board_from
    from edgecnn.errors import ConfigError
    from edgecnn.remote.deploy import deploy, rollback

    if args.rollback == bool(args.artifact):
        raise ConfigError("give an artifact folder to deploy, or --rollback (not both)")
    if args.artifact and not Path(args.artifact).is_dir():
        raise ConfigError(f"no such artifact folder: {args.artifact}")
    if not args.to.startswith("/"):
        raise ConfigError(f"--to {args.to!r}: give an absolute folder on the board")
    board = board_from(args)

    def say(line: str) -> None:
        print(f"[deploy] {line}", file=sys.stderr, flush=True)

    if args.rollback:
        report = rollback(board, args.to, restart=args.restart, say=say)
    else:
        report = deploy(
            board,
            args.artifact,
            args.to,
            restart=args.restart,
            health=args.health,
            check=args.check,
            grace=args.grace,
            trust_key=args.trust_key,
            keep=args.keep,
            say=say,
        )
    print(
        json.dumps(report, indent=2)
        if args.json
        else f"deployed: {board.label}:{args.to}/current -> {report.get('release') or report.get('current')}"
    )
    return 0
