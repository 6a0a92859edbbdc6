"""Stream URIs, parsed once: the scheme that picks a source or sink class, its target, and its checked options.

``synthetic:?fps=30&size=64x48``, ``file:clip.mp4?live=1&loop=1&fps=25``, ``picamera2:?size=1280x720``: every
option is declared by the class that reads it (``Option``), with its type and range, so that a misspelt name or a
value out of range is one clear error before the first frame. A URL (``http://``, ``rtsp://``) keeps its own query:
it belongs to the camera.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from edgecnn.errors import StreamError
from edgecnn.redact import redact
from edgecnn.registry import did_you_mean

_URL_SCHEMES = ("http", "https", "rtsp", "rtsps")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


@dataclass(frozen=True)
class Option:
    """One URI option: its type (``int``, ``float``, ``bool``, ``size`` = WxH) and range."""

    kind: str
    default: Any
    lo: float | None = None
    hi: float | None = None
    help: str = ""

    def describe(self) -> str:
        if self.kind == "bool":
            return "true or false (1/0, yes/no)"
        what = {"int": "a whole number", "float": "a number", "size": "WIDTHxHEIGHT, each"}[self.kind]
        return f"{what} from {self.lo:g} to {self.hi:g}" if self.lo is not None and self.hi is not None else what

    def parse(self, text: str) -> Any:
        value: Any
        if self.kind == "bool":
            if text.lower() not in _TRUE + _FALSE:
                raise ValueError
            return text.lower() in _TRUE
        if self.kind == "size":
            m = re.fullmatch(r"(\d+)[xX](\d+)", text)
            if not m:
                raise ValueError
            value = (int(m.group(1)), int(m.group(2)))
            if any(not self.lo <= v <= self.hi for v in value):
                raise ValueError
            return value
        value = int(text) if self.kind == "int" else float(text)
        if value != value or (self.lo is not None and value < self.lo) or (self.hi is not None and value > self.hi):
            raise ValueError
        return value


@dataclass(frozen=True)
class StreamURI:
    """A source or sink as the user wrote it (``text``), resolved to a registered ``scheme`` and a ``target``."""

    text: str
    scheme: str
    target: str
    query: str = ""
    role: str = "source"

    def options(self, declared: dict[str, Option]) -> dict[str, Any]:
        """The query's values for the options a class declares; anything else is an error naming what is allowed."""
        pairs = parse_qsl(self.query, keep_blank_values=True)
        given = dict(pairs)
        unknown = [k for k in given if k not in declared]
        if unknown:
            allowed = ", ".join(f"{k} ({o.describe()})" for k, o in declared.items()) or "none"
            raise StreamError(
                f"{self.role} {redact(self.text)!r}: unknown option {unknown[0]!r} (options of {self.scheme}: {allowed})."
                + did_you_mean(unknown[0], list(declared))
            )
        out = {}
        for name, opt in declared.items():
            if name not in given:
                out[name] = opt.default
                continue
            try:
                out[name] = opt.parse(given[name])
            except (ValueError, OverflowError):
                raise StreamError(
                    f"{self.role} {redact(self.text)!r}: option {name} must be {opt.describe()}; received {given[name]!r}"
                ) from None
        return out


def split_scheme(text: str) -> tuple[str | None, str]:
    """('http', 'http://...') for a URL, ('file', 'clip.mp4?x') for 'file:clip.mp4?x', (None, text) for a bare path."""
    m = re.match(r"([A-Za-z][A-Za-z0-9+.-]*):(.*)\Z", text, re.S)
    if not m or (len(m.group(1)) == 1 and Path(text[:3]).anchor):  # a Windows drive letter, not a scheme
        return None, text
    scheme = m.group(1).lower()
    if scheme in _URL_SCHEMES:
        return scheme, text
    rest = m.group(2)
    if rest.startswith("//") and scheme in ("file", "v4l2", "folder"):
        rest = rest[2:]
    return scheme, rest


def parse(text: str, *, role: str, schemes: list[str], claim: Any) -> StreamURI:
    """Resolve ``text`` to one of ``schemes``. ``claim(text)`` names the scheme of a bare path (or None)."""
    text = str(text)
    if not text.strip():
        raise StreamError(f"empty {role}", hint=f"examples: {_EXAMPLES[role]}")
    scheme, rest = split_scheme(text)
    if scheme is None or (scheme not in schemes and Path(text).exists()):
        scheme, rest = claim(text), text
        if scheme is None:
            raise StreamError(
                f"{role} {redact(text)!r} is not a file, folder, camera index or URI" if role == "source" else f"unknown sink {redact(text)!r}",
                hint=f"examples: {_EXAMPLES[role]}",
            )
    if scheme not in schemes:
        from edgecnn.errors import UnknownNameError

        raise UnknownNameError(
            f"unknown {role} scheme '{scheme}:' (supported: {', '.join(_SUPPORTED[role])}).{did_you_mean(scheme, schemes)}"
        )
    if scheme in _URL_SCHEMES:
        return StreamURI(text, scheme, text, "", role)
    target, _, query = rest.partition("?")
    return StreamURI(text, scheme, target, query, role)


_EXAMPLES = {
    "source": "0, v4l2:///dev/video0, file:clip.mp4, a folder of images, http://host:8080/video, rtsp://..., synthetic:",
    "sink": "jsonl:predictions.jsonl, jsonl:-, out.mp4, display:, http://:8080",
}
_SUPPORTED = {
    "source": [
        "0 (camera index)",
        "v4l2://",
        "file:",
        "folder (a path)",
        "http://",
        "https://",
        "rtsp://",
        "gst:",
        "picamera2:",
        "synthetic:",
    ],
    "sink": ["jsonl:PATH", "jsonl:-", "display:", "a .mp4/.avi/.mkv file", "http://:PORT"],
}
