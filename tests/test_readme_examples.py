"""The README's examples name what the commands really make (issue #31: the signing example verified a folder that
convert never writes)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _signing_block() -> list[str]:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:sh|bash)?\n(.*?)```", text, re.S)
    block = next(b for b in blocks if "--sign-key signing-key.pem" in b)
    return [ln.split("#")[0].strip() for ln in block.splitlines() if ln.strip().startswith("edgecnn ")]


def test_the_signing_example_verifies_and_classifies_the_folder_convert_writes(lenet_run, tmp_path, monkeypatch):
    from edgecnn.host.convert.output import locate_source

    lines = _signing_block()
    convert = next(ln.split() for ln in lines if ln.startswith("edgecnn convert "))
    run, device = convert[2], convert[convert.index("--device") + 1]
    assert "--out" not in convert  # the example relies on convert's own folder name
    # the README's run, as a real run folder at the README's path (its model is named as the recipe names it)
    monkeypatch.chdir(tmp_path)
    shutil.copytree(lenet_run, tmp_path / run)
    written = f"out/{locate_source(tmp_path / run).name}-{device}"
    for verb in ("verify", "classify"):
        line = next(ln.split() for ln in lines if ln.startswith(f"edgecnn {verb} "))
        assert line[2] == written, (verb, line, written)
