"""Device side: the ``edgecnn`` command line: ``main(argv) -> int``; one module per verb.

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
    "toolchain",
    "qat",
    "sensitivity",
    "calibrate-check",
    "verify",
    "sign",
    "classify",
    "serve",
    "profile",
    "calibrate",
    "benchmark",
    "report",
    "fleet",
    "board",
    "deploy",
    "release",
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
        module = importlib.import_module(f"edgecnn.cli.{verb.replace('-', '_')}")
        p = sub.add_parser(verb, help=module.HELP, description=module.HELP)
        p.add_argument("--debug", action="store_true", help="show full tracebacks")
        p.add_argument("-v", "--verbose", action="store_true", help="say more (runtime choices, skipped candidates)")
        module.add_arguments(p)
        p.set_defaults(_run=module.run, _host_side=(module.__doc__ or "").startswith("Host side:"))
    return parser


def main(argv: list[str] | None = None, *, divert_library_output: bool = False) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 edgecnn error, 2 usage error; 130/143 when interrupted, see
    edgecnn.cleanup: the process entry points take Ctrl-C and SIGTERM in a thread of their own).

    ``divert_library_output`` (the process entry point's choice): the libraries' own output goes to a log file, not
    the terminal, unless -v or --debug (edgecnn.liblog)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    if not getattr(args, "verb", None):
        parser.print_help()
        return 2
    diverted = None
    if divert_library_output and not (args.verbose or args.debug):
        from edgecnn import liblog

        diverted = liblog.divert(args.verb)
    code = 1
    try:
        code = _guarded(args)
    finally:
        if "edgecnn.remote.transport" in sys.modules:  # one SSH connection per board and command: close them
            sys.modules["edgecnn.remote.transport"].close_connections()
        if diverted is not None:
            diverted.close(failed=code not in (0, 2))
    return code


# A library a verb needs and this install lacks -> what it is for and how to get it (an install on a board has no
# host toolchain; a Jetson may have no pip OpenCV).
_HOST_TOOLCHAIN = ("tensorflow", "keras", "tf2onnx", "nncf", "sklearn", "skimage", "scipy")
_MISSING = {
    **{
        name: ("the host toolchain (TensorFlow, Keras, tf2onnx, NNCF, scikit-learn)", 'pip install "edgecnn[train]"')
        for name in _HOST_TOOLCHAIN
    },
    "cv2": (
        "OpenCV",
        "pip install \"edgecnn[opencv]\", or use the system's OpenCV (on a Jetson: JetPack's python3-opencv, "
        "seen from a venv made with --system-site-packages)",
    ),
    "matplotlib": ("matplotlib (plots)", 'pip install "edgecnn[plots]"'),
    "model_signing": ("model-signing", 'pip install "edgecnn[sign]"'),
}


def _guarded(args: argparse.Namespace) -> int:
    """The verb, with edgecnn's errors as one ``error:`` line (and a hint) and the exit codes of ``main``."""
    try:
        return _run(args)
    except ModuleNotFoundError as exc:
        missing = _MISSING.get((exc.name or "").split(".")[0])
        if missing is None or args.debug:
            raise
        what, install = missing
        print(
            f"error: edgecnn {args.verb} needs {what}, which this install lacks (no module named {exc.name!r})", file=sys.stderr
        )
        print(f"  hint: {install}", file=sys.stderr)
        return 1
    except EdgeCNNError as exc:
        from edgecnn.redact import redact
        from edgecnn.untrusted import clean

        if args.debug:
            traceback.print_exc()
        # the last guard: no password of a URL and no terminal escape of a board's text reaches the terminal or a log
        print(f"error: {clean(redact(exc.message))}", file=sys.stderr)
        if exc.hint:
            print(f"  hint: {clean(redact(exc.hint))}", file=sys.stderr)
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

    if getattr(args, "_host_side", False):  # a verb that needs the host toolchain says so before any work, on a device install
        import importlib.util

        for name in ("tensorflow", "keras"):
            if importlib.util.find_spec(name) is None:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)

    try:
        code = int(args._run(args) or 0)
    except BaseException:
        cleanup.park_if_stopping()  # a signal's clean-up is under way: it ends the process, not this error
        raise
    cleanup.park_if_stopping()
    return code


def console():
    """A rich Console for tables: as wide as $COLUMNS where it is set, else as the terminal; in a pipe (no terminal, no
    COLUMNS) wide enough that no row is folded. Tables fold their cells to fit."""
    import os
    import shutil

    from rich.console import Console

    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        width = int(columns)
    elif sys.stdout.isatty():
        width = shutil.get_terminal_size().columns
    else:
        width = 400
    return Console(highlight=False, soft_wrap=False, width=width)


def cli_entry() -> None:
    """Console-script entry point (and ``python -m edgecnn``)."""
    from edgecnn import cleanup

    cleanup.watch_signals()  # before anything starts a thread
    sys.exit(main(divert_library_output=True))
