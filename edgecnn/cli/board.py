"""Device side: edgecnn board install: edgecnn onto a bare board over SSH, from the package index or, offline, from
a wheelhouse this host builds for the board's platform; then its self-check there."""

from __future__ import annotations

HELP = "put edgecnn on a board over SSH (board install --on BOARD): a venv, its runtime, a self-check there"


def add_arguments(p) -> None:
    import argparse

    from edgecnn.cli.boards import add_board_arguments

    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    i = sub.add_parser(
        "install",
        help="install edgecnn on a board in a venv, with the runtime its device profile names",
        description="Ask the board its Python, architecture, libc and profile; make a venv there (default "
        "~/.local/share/edgecnn/venv); install edgecnn's wheel with the runtime extra, from the index (the board's pip) "
        "or --offline from a wheelhouse built here; end with the installed edgecnn's verify --run on the board.",
    )
    add_board_arguments(i, required=True)
    i.add_argument(
        "--extras",
        metavar="EXTRA[,EXTRA]",
        help="edgecnn's extras to install (litert, onnx, openvino, gpu, jetson, opencv, sign); "
        "default: the runtime the board's device profile names first",
    )
    i.add_argument("--prefix", metavar="DIR", help="the venv on the board (default ~/.local/share/edgecnn/venv)")
    i.add_argument(
        "--offline",
        action="store_true",
        help="the board has no package index: build a wheelhouse for its platform here, copy it, install with --no-index",
    )
    i.add_argument("--python", metavar="PATH", help="the board's Python 3.10+ (default: python3 on its PATH)")
    i.add_argument("--upgrade", action="store_true", help="replace an install made from another wheel, in place")
    i.add_argument("--json", action="store_true", help="print what was installed as JSON")
    # as on every verb, also after the action (SUPPRESS: `board --debug install` keeps the verb's own)
    i.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show full tracebacks")
    i.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="say more")


def run(args) -> int:
    import json
    import sys

    from edgecnn.cli.boards import board_from
    from edgecnn.remote.install import InstallOptions, install
    from edgecnn.resources import cache_dir

    board = board_from(args)
    extras = tuple(e.strip() for e in (args.extras or "").split(",") if e.strip())
    options = InstallOptions(extras=extras, prefix=args.prefix, offline=args.offline, python=args.python, upgrade=args.upgrade)
    report = install(board, options, cache=cache_dir("board-install"), show=sys.stderr.isatty() and not args.json)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
        return 0
    for line in summary(report, board_arg=args.on):
        print(line)
    return 0


def summary(r, *, board_arg: str) -> list[str]:
    from edgecnn.remote.board import DEFAULT_PREFIX

    head = f"[{r.board}] edgecnn {r.versions.get('edgecnn', '?')}"
    if r.installed:
        lines = [f"{head} installed at {r.prefix} ({r.mode}, extras {','.join(r.extras) or 'none'}) in {r.seconds:.1f} s"]
    else:
        lines = [f"{head} is installed at {r.prefix} from this very wheel: nothing to install ({r.seconds:.1f} s)"]
    lines.append(f"  board: profile {r.profile} ({r.profile_reason}); {r.platform}; {r.python}")
    runtimes = ", ".join(f"{k} {v}" for k, v in r.versions.items() if k != "edgecnn")
    lines.append(f"  {runtimes}; {r.size_bytes / 2**20:.0f} MB on disk; {r.bytes_copied / 2**20:.1f} MB copied")
    if r.self_check:
        lines.append(f"  self-check passed on the board: {r.self_check}")
    default = r.prefix.endswith(DEFAULT_PREFIX.removeprefix("~"))
    lines.append(
        f"  use it: edgecnn profile ARTIFACT --on {board_arg}"
        + ("" if default else f" --remote-edgecnn {r.edgecnn} (or 'edgecnn: {r.edgecnn}' in fleet.yaml)")
    )
    return lines
