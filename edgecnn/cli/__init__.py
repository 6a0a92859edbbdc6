"""The ``edgecnn`` command line: ``main(argv) -> int``; one module per verb.

Each verb module has ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int`` and imports
heavy libraries only inside ``run``, so ``edgecnn --help`` never loads TensorFlow.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback

from edgecnn import __version__
from edgecnn.errors import EdgeCNNError

VERBS = [
    "models",
    "inspect",
    "devices",
    "validate",
    "train",
    "convert",
    "verify",
    "sign",
    "classify",
    "profile",
    "calibrate",
    "benchmark",
    "report",
    "demo",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgecnn",
        description="Train, convert, quantise, run and profile CNN image classifiers for edge devices.",
    )
    parser.add_argument("--version", action="version", version=f"edgecnn {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="COMMAND")
    for verb in VERBS:
        module = importlib.import_module(f"edgecnn.cli.{verb}")
        p = sub.add_parser(verb, help=module.HELP, description=module.HELP)
        p.add_argument("--debug", action="store_true", help="show full tracebacks")
        p.add_argument("-v", "--verbose", action="store_true", help="say more (runtime choices, skipped candidates)")
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 edgecnn error, 2 usage error; 130/143 when interrupted, see
    edgecnn.cleanup: the process entry points take Ctrl-C and SIGTERM in a thread of their own)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    if not getattr(args, "verb", None):
        parser.print_help()
        return 2
    try:
        return _run(args)
    except EdgeCNNError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"  hint: {exc.hint}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # raised by a library that handles SIGINT itself
        if args.debug:
            traceback.print_exc()
        print("error: interrupted by Ctrl-C", file=sys.stderr)
        return 130
    except OSError as exc:  # the environment, not edgecnn: a full or read-only disk, a permission, a vanished file
        if args.debug or exc.errno is None:
            raise
        where = f": {exc.filename}" if exc.filename else ""
        print(f"error: {exc.strerror}{where}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    from edgecnn import cleanup

    try:
        code = int(args._run(args) or 0)
    except BaseException:
        cleanup.park_if_stopping()  # a signal's clean-up is under way: it ends the process, not this error
        raise
    cleanup.park_if_stopping()
    return code


def console():
    """A rich Console for tables and progress on a terminal; quiet output stays plain."""
    import shutil

    from rich.console import Console

    # tables are wide: never squeeze them below 160 columns (pipes and CI logs have no width)
    return Console(stderr=False, highlight=False, soft_wrap=False, width=max(shutil.get_terminal_size((160, 24)).columns, 160))


def cli_entry() -> None:
    """Console-script entry point (and ``python -m edgecnn``)."""
    from edgecnn import cleanup

    cleanup.watch_signals()  # before anything starts a thread
    sys.exit(main())
