"""Device side: find data shipped with edgecnn (device profiles, recipes) in a wheel or a checkout."""

from __future__ import annotations

from pathlib import Path

from edgecnn.errors import ConfigError


def resource_dir(name: str) -> Path:
    here = Path(__file__).resolve().parent
    for candidate in (here / "_resources" / name, here.parent / name):
        if candidate.is_dir():
            return candidate
    raise ConfigError(f"edgecnn's {name}/ folder is missing (a broken install?)", hint="reinstall edgecnn")
