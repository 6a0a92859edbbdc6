"""Device side: find data shipped with edgecnn (device profiles, recipes) in a wheel or a checkout, and edgecnn's
cache folder on this machine."""

from __future__ import annotations

import os
from pathlib import Path

from edgecnn.errors import ConfigError


def resource_dir(name: str) -> Path:
    here = Path(__file__).resolve().parent
    for candidate in (here / "_resources" / name, here.parent / name):
        if candidate.is_dir():
            return candidate
    raise ConfigError(f"edgecnn's {name}/ folder is missing (a broken install?)", hint="reinstall edgecnn")


def cache_dir(name: str) -> Path:
    """``name`` in edgecnn's cache: ``$EDGECNN_CACHE``, else ``$XDG_CACHE_HOME/edgecnn``, else ``~/.cache/edgecnn``
    (library logs, calibrations, the measurements boards made)."""
    base = os.environ.get("EDGECNN_CACHE")
    if not base:
        base = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "edgecnn")
    return Path(base) / name
