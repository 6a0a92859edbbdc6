"""Device side: reading the text files users write (recipes, labels, fleet lists): every encoding either read or refused clearly.

UTF-8 is the default, with or without a byte-order mark. A UTF-16 or UTF-32 file announces itself with its BOM
(Windows' Notepad and PowerShell write those) and is read as such. Anything else that is not valid UTF-8 (Latin-1,
Windows-1252) is ambiguous and refused with the byte that gave it away, never a ``UnicodeDecodeError``.
"""

from __future__ import annotations

import codecs
from pathlib import Path

from edgecnn.errors import ConfigError

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),  # before UTF-16 LE: its BOM starts with the same two bytes
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def read_text(path: str | Path, what: str = "file") -> str:
    """The text of ``path``: UTF-8 (BOM or not), or UTF-16/32 with a BOM; a clear ConfigError otherwise."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{what} {path} is a folder, not a file")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{what} not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from None
    encoding = next((enc for bom, enc in _BOMS if raw.startswith(bom)), "utf-8")
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        bad = raw[exc.start : exc.start + 1].hex()
        raise ConfigError(
            f"{what} {path} is not {encoding.upper().replace('-SIG', '')} text: byte 0x{bad} at offset {exc.start} "
            "(Latin-1 or Windows-1252?)",
            hint="save it as UTF-8 (most editors: 'Save with encoding'; iconv -f latin1 -t utf-8 FILE)",
        ) from None


def read_lines(path: str | Path, what: str = "file") -> list[str]:
    """Non-empty stripped lines of a text file (labels.txt)."""
    return [line.strip() for line in read_text(path, what).splitlines() if line.strip()]
