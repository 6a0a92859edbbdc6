"""tools/loopback_sshd.py for the tests: the same real OpenSSH server on 127.0.0.1, skipped with its reason where
OpenSSH is not installed."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("loopback_sshd", Path(__file__).resolve().parents[2] / "tools" / "loopback_sshd.py")
_module = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("loopback_sshd", _module)
_spec.loader.exec_module(_module)
_free_port = _module._free_port


class SSHServer(_module.SSHServer):
    def __init__(self, folder: Path, **kw) -> None:
        try:
            super().__init__(folder, **kw)
        except _module.Unavailable as exc:
            pytest.skip(str(exc))
