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

# The verbs in --help order; those of the host wing (edgecnn.host.cli) need the training toolchain and say so.
HOST_VERBS = ("models", "inspect", "validate", "train", "convert", "qat", "sensitivity", "calibrate-check", "calibrate",
              "benchmark", "toolchain", "demo")
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


TRAIN_MARK = "[needs edgecnn[train]]"


def toolchain_missing() -> bool:
    """True on an install without the host toolchain (a device install: no TensorFlow or Keras)."""
    import importlib.util

    return any(importlib.util.find_spec(name) is None for name in ("tensorflow", "keras"))


def verb_module(verb: str) -> str:
    """The module that implements ``verb``: edgecnn.cli.NAME on the device side, edgecnn.host.cli.NAME for the host."""
    wing = "edgecnn.host.cli" if verb in HOST_VERBS else "edgecnn.cli"
    return f"{wing}.{verb.replace('-', '_')}"


JSON_ERRORS = "--json-errors"  # before the verb: how the host's remote side (edgecnn.remote.verbs) runs a board's edgecnn


class _JSONErrorParser(argparse.ArgumentParser):
    """A usage error as the JSON error object (exit 2), for ``--json-errors``."""

    def error(self, message: str):  # type: ignore[override]
        report_error({"type": "UsageError", "message": f"{self.prog}: {message}", "hint": f"{self.prog} --help"}, json_errors=True)
        self.exit(2)


def build_parser(*, json_errors: bool = False) -> argparse.ArgumentParser:
    device_install = toolchain_missing()
    cls = _JSONErrorParser if json_errors else argparse.ArgumentParser
    parser = cls(
        prog="edgecnn",
        description="Train, convert, quantise, run and profile CNN image classifiers for edge devices.",
        epilog=f'This install has no TensorFlow/Keras: the commands marked {TRAIN_MARK} need pip install "edgecnn[train]" '
        "(on the build host); the others run here."
        if device_install
        else None,
    )
    parser.add_argument("--version", action="version", version=f"edgecnn {__version__}")
    parser.add_argument(
        JSON_ERRORS,
        action="store_true",
        help='an error as one JSON object on stderr, {"error": {"type", "message", "hint", "exit"}}, instead of '
        "'error:' lines (what the host reads when it runs edgecnn on a board over SSH)",
    )
    sub = parser.add_subparsers(dest="verb", metavar="COMMAND", parser_class=cls)
    for verb in VERBS:
        module = importlib.import_module(verb_module(verb))
        host_side = verb in HOST_VERBS
        text = f"{TRAIN_MARK} {module.HELP}" if host_side and device_install else module.HELP
        p = sub.add_parser(verb, help=text, description=text)
        p.add_argument("--debug", action="store_true", help="show full tracebacks")
        p.add_argument("-v", "--verbose", action="store_true", help="say more (runtime choices, skipped candidates)")
        module.add_arguments(p)
        p.set_defaults(_run=module.run, _host_side=host_side)
    return parser


def main(argv: list[str] | None = None, *, divert_library_output: bool = False) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 edgecnn error, 2 usage error; 130/143 when interrupted, see
    edgecnn.cleanup: the process entry points take Ctrl-C and SIGTERM in a thread of their own).

    ``divert_library_output`` (the process entry point's choice): the libraries' own output goes to a log file, not
    the terminal, unless -v or --debug (edgecnn.liblog)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(json_errors=JSON_ERRORS in argv[: _verb_at(argv)])
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


def _verb_at(argv: list[str]) -> int:
    """Where the verb stands in ``argv`` (the options before it are edgecnn's own)."""
    return next((i for i, a in enumerate(argv) if a in VERBS), len(argv))


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
    """The verb, with edgecnn's errors reported (``report_error``: one ``error:`` line and a hint, or with
    ``--json-errors`` one JSON object) and the exit codes of ``main``."""
    try:
        return _run(args)
    except (ModuleNotFoundError, EdgeCNNError, KeyboardInterrupt, OSError) as exc:
        error = _error_of(exc, args)
        if error is None:
            raise
        if args.debug and not isinstance(exc, ModuleNotFoundError):
            traceback.print_exc()
        report_error(error, json_errors=args.json_errors)
        return error["exit"]


def _error_of(exc: BaseException, args: argparse.Namespace) -> dict | None:
    """The error as {"type", "message", "hint", "exit"}; None for one to raise (a bug, or --debug's traceback)."""
    from edgecnn.redact import redact
    from edgecnn.untrusted import clean

    if isinstance(exc, ModuleNotFoundError):
        missing = _MISSING.get((exc.name or "").split(".")[0])
        if missing is None or args.debug:
            return None
        what, install = missing
        message = f"edgecnn {args.verb} needs {what}, which this install lacks (no module named {exc.name!r})"
        return {"type": "MissingDependencyError", "message": message, "hint": install, "exit": 1}
    if isinstance(exc, EdgeCNNError):
        # the last guard: no password of a URL and no terminal escape of a board's text reaches the terminal or a log
        hint = clean(redact(exc.hint)) if exc.hint else None
        return {"type": type(exc).__name__, "message": clean(redact(exc.message)), "hint": hint, "exit": 1}
    if isinstance(exc, KeyboardInterrupt):  # raised by a library that handles SIGINT itself
        return {"type": "Interrupted", "message": "interrupted by Ctrl-C", "hint": None, "exit": 130}
    if args.debug or getattr(exc, "errno", None) is None:  # the environment: a full disk, a permission, a vanished file
        return None
    where = f": {exc.filename}" if getattr(exc, "filename", None) else ""
    return {"type": type(exc).__name__, "message": f"{exc.strerror}{where}", "hint": None, "exit": 1}


def report_error(error: dict, *, json_errors: bool) -> None:
    """``error: MESSAGE`` and ``  hint: HINT`` on stderr, or with ``json_errors`` one line
    ``{"error": {"type", "message", "hint", "exit"}}`` that a program reads (the host, of a board's edgecnn)."""
    if json_errors:
        import json

        print(json.dumps({"error": {"hint": None, "exit": 2} | error}), file=sys.stderr, flush=True)
        return
    print(f"error: {error['message']}", file=sys.stderr)
    if error.get("hint"):
        print(f"  hint: {error['hint']}", file=sys.stderr)


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
