"""``edgecnn --help`` on a device install marks the commands that need the host toolchain (issue #31)."""

from __future__ import annotations

import importlib.util
import re

from edgecnn.cli import TRAIN_MARK, main

HOST_VERBS = {
    "models",
    "inspect",
    "validate",
    "train",
    "convert",
    "qat",
    "sensitivity",
    "calibrate-check",
    "calibrate",
    "benchmark",
    "toolchain",
    "demo",
}


def _listed(text: str) -> dict[str, str]:
    """COMMAND -> its help line, from the top-level help's command list."""
    return {m[1]: m[2] for m in re.finditer(r"^    ([a-z-]+)\s+(.*)$", text, re.M)}


def _without_tensorflow(monkeypatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("tensorflow", "keras") else real(name, *a))


def test_a_device_install_marks_the_host_commands_and_says_how_to_get_them(monkeypatch, capsys):
    _without_tensorflow(monkeypatch)
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    listed = _listed(out)
    assert {v for v, line in listed.items() if line.startswith(TRAIN_MARK)} == HOST_VERBS, listed
    assert {"classify", "profile", "verify", "report"} <= set(listed) - HOST_VERBS
    assert 'need pip install "edgecnn[train]"' in " ".join(out.split())
    assert main(["convert", "--help"]) == 0
    assert TRAIN_MARK in capsys.readouterr().out


def test_a_full_install_marks_nothing(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert TRAIN_MARK not in out and "edgecnn[train]" not in out and len(_listed(out)) >= 20
