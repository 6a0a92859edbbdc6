"""Device side: edgecnn release: the board's half of ``edgecnn deploy``, run there by the host over SSH (a person
rarely types it): ``start`` a locked transaction in a process of its own, ``run`` it (what start runs), ``follow``
its journal until it ends, ``status`` of a deploy folder. Every answer is JSON, one object a line."""

from __future__ import annotations

from edgecnn.cli.args import integer, number

HELP = "the board's side of deploy: start / run / follow a locked release transaction, or show a deploy folder's status"


def add_arguments(p) -> None:
    p.add_argument("action", choices=["start", "run", "follow", "status"], help="what to do in --to")
    p.add_argument("--to", required=True, metavar="DIR", help="the deploy folder (releases/, current, previous)")
    p.add_argument("--id", metavar="ID", help="the transaction's id (start, run, follow)")
    p.add_argument("--release", metavar="NAME", help="the release to switch to: a folder name in DIR/releases")
    p.add_argument("--rollback", action="store_true", help="switch to DIR/previous instead of --release")
    p.add_argument("--restart", metavar="CMD", help="shell command that restarts the service")
    p.add_argument("--health", metavar="FILE", help="the service's health log: it must move after the restart")
    p.add_argument("--check", metavar="CMD", help="shell command that exits 0 when the service is healthy")
    p.add_argument("--healthz", metavar="URL", help="an edgecnn serve /healthz: 200, serving one of the release's models")
    p.add_argument("--grace", type=number(0, 3600), default=10.0, help="seconds to watch after the restart")
    p.add_argument("--keep", type=integer(1, 1000), default=3, help="releases kept")
    p.add_argument("--trust-key", metavar="PUBLIC.pem", help="refuse a release not signed by this key")
    p.add_argument("--no-wait", action="store_true", help="refuse instead of waiting when another deploy holds the lock")
    p.add_argument("--timeout", type=number(1, 86400), default=3600, help="follow: give up after this many seconds")


def run(args) -> int:
    import json
    import re
    from pathlib import Path

    from edgecnn.errors import ConfigError
    from edgecnn.remote import release

    def say(record) -> None:
        print(json.dumps(record, separators=(",", ":")), flush=True)

    to = str(Path(args.to).absolute())
    if args.action == "status":
        say(release.status(to))
        return 0
    if not args.id or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", args.id):
        raise ConfigError(f"release {args.action}: --id must be 1-64 letters, digits, '_' or '-'; received {args.id!r}")
    if args.action == "follow":
        end = release.follow(to, args.id, say, timeout=args.timeout)
        if end is None:
            raise ConfigError(f"release follow: transaction {args.id} did not end within {args.timeout:g} s")
        return 0
    if bool(args.release) == args.rollback:
        raise ConfigError("release: give --release NAME or --rollback (one of them)")
    if args.release and not release.RELEASE_NAME.fullmatch(args.release):
        raise ConfigError(f"release: --release must be a release name (16 hex digits); received {args.release!r}")
    txn = release.Transaction(
        to=to, id=args.id, release=args.release, restart=args.restart, health=args.health, check=args.check,
        healthz=args.healthz,
        grace=args.grace, keep=args.keep, trust_key=args.trust_key, wait=not args.no_wait,
    )
    say(release.start(txn) if args.action == "start" else release.run(txn))
    return 0
