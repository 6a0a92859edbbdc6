"""Device side: edgecnn deploy: an artifact folder to a board over SSH: stage, verify there, switch, restart, watch,
roll back; the board runs everything after the copy by itself (edgecnn release) and the host follows it."""

from __future__ import annotations

from edgecnn.cli.args import integer, number

HELP = "deploy an artifact folder to a board: stage, verify and self-check there, switch atomically, restart, roll back"


def add_arguments(p) -> None:
    p.add_argument("artifact", nargs="?", help="artifact folder or conversion output folder (not with --rollback)")
    p.add_argument(
        "--to", required=True, metavar="DIR", help="the folder on the board (absolute, or ~/...): releases/ and the current link"
    )
    p.add_argument(
        "--restart", metavar="CMD", help="shell command on the board that restarts the service (e.g. systemctl restart edgecnn)"
    )
    p.add_argument(
        "--health", metavar="FILE", help="the service's classify --health log on the board: it must move after the restart"
    )
    p.add_argument("--check", metavar="CMD", help="shell command on the board that exits 0 when the service is healthy")
    p.add_argument(
        "--service",
        metavar="UNIT",
        help="an edgecnn serve systemd unit: restarted with systemctl (--restart overrides), judged by --healthz or --health",
    )
    p.add_argument(
        "--healthz",
        metavar="URL",
        help="the service's /healthz as the board reaches it (e.g. http://127.0.0.1:8090/healthz): 200 with the new model",
    )
    p.add_argument("--grace", type=number(0, 3600), default=10.0, help="seconds to watch after the restart (default 10)")
    p.add_argument("--keep", type=integer(1, 1000), default=3, help="releases kept on the board (default 3)")
    p.add_argument("--trust-key", metavar="PUBLIC.pem", help="the board refuses a release not signed by this key")
    p.add_argument("--rollback", action="store_true", help="switch back to the previous release (verified there) and restart")
    p.add_argument("--status", action="store_true", help="show the board's current and previous release and how the last deploy ended")
    p.add_argument(
        "--no-wait", action="store_true", help="refuse at once when another deploy to the same folder is under way (default: wait)"
    )
    p.add_argument(
        "--reconnect",
        type=number(0, 86400),
        default=300.0,
        metavar="SECONDS",
        help="when the connection drops, keep trying this long to hear how the board ended (default 300)",
    )
    p.add_argument("--json", action="store_true", help="print what happened as JSON")
    from edgecnn.cli.boards import add_board_arguments

    add_board_arguments(p, required=True)


def run(args) -> int:
    import json
    import sys

    from edgecnn.cli.boards import board_from
    from edgecnn.remote.deploy import deploy, rollback, status

    watch = _checked(args)  # every option, before any connection
    board = board_from(args)

    def say(line: str) -> None:
        print(f"[deploy] {line}", file=sys.stderr, flush=True)

    common = {"wait": not args.no_wait, "reconnect": args.reconnect, "say": say}
    if args.status:
        report = status(board, args.to)
        print(json.dumps(report, indent=2) if args.json else _status_line(report))
        return 0
    if args.rollback:
        watched = args.health or args.check or args.healthz
        report = rollback(board, args.to, **watch, grace=args.grace if watched else 0.0, **common)
    else:
        report = deploy(board, args.artifact, args.to, **watch, grace=args.grace, keep=args.keep, **common)
    print(
        json.dumps(report, indent=2)
        if args.json
        else f"{report['outcome']}: {board.label}:{report['to']}/current -> {report.get('current')}"
        + (" (finished by the board after the connection dropped)" if report.get("recovered") else "")
    )
    return 0


def _checked(args) -> dict:
    """The options checked (a private key given as --trust-key refused before any connection); the watch options."""
    import shlex
    from pathlib import Path

    from edgecnn.errors import ConfigError
    from edgecnn.signing import public_key_pem

    if sum([bool(args.artifact), args.rollback, args.status]) != 1:
        raise ConfigError("give an artifact folder to deploy, or --rollback, or --status (one of them)")
    if args.artifact and not Path(args.artifact).is_dir():
        raise ConfigError(f"no such artifact folder: {args.artifact}")
    if not (args.to.startswith("/") or args.to.startswith("~/")):
        raise ConfigError(f"--to {args.to!r}: give an absolute folder on the board, or one under its home as ~/PATH")
    if args.trust_key:
        public_key_pem(args.trust_key)
    _check_watch(args)
    restart = args.restart or (f"systemctl restart {shlex.quote(args.service)}" if args.service else None)
    return {"restart": restart, "health": args.health, "check": args.check, "healthz": args.healthz, "trust_key": args.trust_key}


def _check_watch(args) -> None:
    """How the board judges the restarted service: --service needs a judge; --healthz is a URL."""
    from edgecnn.errors import ConfigError

    if args.service and not (args.healthz or args.health or args.check):
        raise ConfigError(
            f"--service {args.service}: say how the board judges it: --healthz URL (edgecnn serve's) or --health FILE",
            hint="e.g. --healthz http://127.0.0.1:8090/healthz: the rollback then rests on the service itself",
        )
    if args.healthz and not args.healthz.startswith(("http://", "https://")):
        raise ConfigError(f"--healthz {args.healthz!r}: give the URL of the service's /healthz (http://HOST:PORT/healthz)")


def _status_line(report: dict) -> str:
    last = report.get("last") or {}
    busy = "; a deploy is under way" if report.get("busy") else ""
    ended = f"; the last deploy ended: {last.get('outcome')}" if last else ""
    return f"{report['to']}: current -> {report.get('current')}, previous -> {report.get('previous')}{busy}{ended}"
