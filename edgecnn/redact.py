"""Device side: the one redacting form of any URI or line that may hold one (camera and broker passwords, tokens).

Every error, log line, JSON result, health file, page and measurement that names a source, a sink, a broker or a
board goes through ``redact``: ``rtsp://admin:SECRET@cam/stream?token=abc`` becomes
``rtsp://admin:***@cam/stream?token=***``. It works on whole lines too, so a library's message that quotes the URL
(OpenCV, paho-mqtt, ssh) is made safe the same way.
"""

from __future__ import annotations

import re

MASK = "***"
# scheme://user:password@host : the password is everything between the first ':' after '//' and the last '@' of the
# authority (a password may itself hold '@' or ':'); the authority ends at '/', '?', '#' or white space
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/?#\s:@]*):(?P<pw>[^/?#\s]*)@(?=[^/?#\s@]*(?:[/?#\s]|$))")
# query values whose names say they are secrets
_SECRET_KEYS = r"(?:pass(?:word|wd)?|pwd|secret|token|access_token|api[_-]?key|apikey|key|auth|sig|signature|credentials?)"
_QUERY = re.compile(rf"(?P<head>[?&;]{_SECRET_KEYS}=)(?P<value>[^&#\s]*)", re.IGNORECASE)


def redact(text: object) -> str:
    """``text`` with every URL password and secret-named query value replaced by ``***``."""
    out = _USERINFO.sub(lambda m: f"{m.group('head')}:{MASK}@", str(text))
    return _QUERY.sub(lambda m: m.group("head") + (MASK if m.group("value") else ""), out)


def has_password(url: str) -> bool:
    """True when ``url`` carries a password in its user part (``scheme://user:pw@host``)."""
    return bool(_USERINFO.search(url))
