"""Device side: text and JSON that come from outside (a board's answer, a file someone else wrote), made safe to print
and to read.

``clean`` strips every control character and terminal escape sequence (a board's error line could otherwise set the
operator's clipboard or window title, or clear the screen); ``loads`` reads JSON whose depth or size would make the
parser raise ``RecursionError``/``MemoryError`` as one clear error; ``expect`` checks a field's type with an error
naming the file and the field.
"""

from __future__ import annotations

import json
import re
from typing import Any

from edgecnn.errors import EdgeCNNError

# ESC [ ... final, ESC ] ... (BEL | ESC \), ESC P/X/^/_ ... ESC \, any other ESC + one char; then the single
# C0 controls but tab and newline, DEL and the C1 range (which some terminals also obey)
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[\]PX^_][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b.?|\x9b[0-?]*[ -/]*[@-~]", re.S)
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
MAX_JSON_BYTES = 64 * 1024 * 1024


def clean(text: object) -> str:
    """``text`` without terminal escape sequences and control characters (tab and newline kept)."""
    return _CONTROLS.sub("", _ESCAPES.sub("", str(text)))


def clean_json(value: Any) -> Any:
    """Every string (keys too) of a JSON value, cleaned."""
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, list):
        return [clean_json(v) for v in value]
    if isinstance(value, dict):
        return {clean(k): clean_json(v) for k, v in value.items()}
    return value


def loads(text: str | bytes, what: str, *, error: type[EdgeCNNError] = EdgeCNNError) -> Any:
    """``json.loads`` with every way it can fail on hostile input turned into one ``error`` naming ``what``."""
    if len(text) > MAX_JSON_BYTES:
        raise error(f"{what}: {len(text) / 1e6:.0f} MB of JSON is more than edgecnn reads ({MAX_JSON_BYTES // 2**20} MiB)")
    try:
        return json.loads(text)
    except RecursionError:
        raise error(f"{what}: the JSON is nested too deeply to read") from None
    except MemoryError:
        raise error(f"{what}: the JSON is too large to read") from None
    except (ValueError, TypeError) as exc:  # JSONDecodeError is a ValueError; bytes that are not UTF-8 too
        raise error(f"{what}: not valid JSON ({clean(str(exc))[:160]})") from None


_NAMES = {dict: "an object", list: "a list", str: "a string", bool: "true or false", int: "a whole number",
          float: "a number", type(None): "null"}


def expect(value: Any, kinds: type | tuple[type, ...], where: str, *, error: type[EdgeCNNError] = EdgeCNNError) -> Any:
    """``value`` when it is one of ``kinds`` (an int is a float, a bool is not a number); else one error naming
    ``where`` (``file: field``), what it must be and what it was."""
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
    if not ok and float in kinds and isinstance(value, int) and not isinstance(value, bool):
        ok = True
    if not ok:
        want = " or ".join(_NAMES.get(k, k.__name__) for k in kinds)
        got = _NAMES.get(type(value), type(value).__name__)
        raise error(f"{where} must be {want}; received {got} {clean(repr(value))[:80]}")
    return value
