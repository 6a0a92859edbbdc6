"""Device side: typed command-line values with their ranges: a bad value is a usage error (exit 2) that names the option, the
range and what was received, before anything heavy is imported."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def _f(v: float) -> str:
    return f"{int(v):,}" if float(v).is_integer() else f"{v:g}"


def _describe(kind: str, lo: float | None, hi: float | None, above: float | None) -> str:
    if above is not None and hi is not None:
        return f"{kind} above {_f(above)} and at most {_f(hi)}"
    if above is not None:
        return f"{kind} above {_f(above)}"
    if lo is not None and hi is not None:
        return f"{kind} from {_f(lo)} to {_f(hi)}"
    if lo is not None:
        return f"{kind} of at least {_f(lo)}"
    return f"{kind} of at most {_f(hi)}" if hi is not None else kind


def _check(value: float, text: str, kind: str, lo, hi, above) -> None:
    if (lo is not None and value < lo) or (hi is not None and value > hi) or (above is not None and value <= above):
        raise argparse.ArgumentTypeError(f"must be {_describe(kind, lo, hi, above)}; received {text!r}")


def integer(lo: int | None = None, hi: int | None = None) -> Callable[[str], int]:
    """An argparse ``type`` for a whole number in [lo, hi]."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {_describe('a whole number', lo, hi, None)}; received {text!r}") from None
        _check(value, text, "a whole number", lo, hi, None)
        return value

    parse.__name__ = "integer"
    return parse


def number(lo: float | None = None, hi: float | None = None, *, above: float | None = None) -> Callable[[str], float]:
    """An argparse ``type`` for a finite number in [lo, hi] (and > ``above``)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {_describe('a number', lo, hi, above)}; received {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number; received {text!r}")
        _check(value, text, "a number", lo, hi, above)
        return value

    parse.__name__ = "number"
    return parse


THREADS = integer(1, 1024)
SECONDS = number(above=0, hi=86_400)  # a positive duration: timeouts, intervals
TIMEOUT = number(above=0, hi=3_600)


def source_and_targets(p, *, device_help: str, precision_help: str) -> None:
    """The positional model and --device/--precision that convert-like verbs share."""
    p.add_argument("model", help="edgecnn run directory or a .keras classifier")
    p.add_argument("--device", required=True, help=device_help)
    p.add_argument("--precision", action="append", default=[], metavar="P", help=precision_help)
