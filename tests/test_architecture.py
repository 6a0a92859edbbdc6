"""The package's shape, measured by tools/architecture.py on every run of the suite (issue 31): no function over 60
lines, none over complexity 15 (and none at it: a function at the limit is split before it is crossed),
and no import circle of any kind, lazy imports and imports for annotations only included."""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("radon")


def _architecture():
    spec = importlib.util.spec_from_file_location("architecture", ROOT / "tools" / "architecture.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("architecture", module)
    spec.loader.exec_module(module)
    return module


def test_no_long_function_no_complex_function_and_no_circle_of_any_kind():
    arch = _architecture()
    m = arch.measure(ROOT / "edgecnn")
    assert m["modules"] > 100  # it measured the package, not an empty folder
    assert m["functions_over_60_lines"] == []
    assert m["functions_over_complexity_15"] == []
    assert m["import_circles"] == []
    assert arch.complex_functions(arch.modules(ROOT / "edgecnn"), 14) == []  # none sits at the limit


def test_the_measure_finds_each_kind_of_fault(tmp_path):
    """A package made to hold one of each: the tool reports each (a test that could not fail would prove nothing)."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.b import B\n")
    (pkg / "b.py").write_text("from pkg.a import x\n")
    (pkg / "c.py").write_text("def lazy():\n    from pkg import d\n")
    (pkg / "d.py").write_text("import pkg.c\n")
    branches = "".join(f"    if x == {i}:\n        return {i}\n" for i in range(16))
    (pkg / "e.py").write_text("def busy(x):\n" + branches + "    return -1\n")
    (pkg / "f.py").write_text("def long():\n" + textwrap.indent("\n".join(f"a{i} = {i}" for i in range(61)), "    ") + "\n")
    m = _architecture().measure(pkg)
    assert sorted(m["import_circles"]) == [["pkg.a", "pkg.b"], ["pkg.c", "pkg.d"]]
    assert m["functions_over_complexity_15"] == [("pkg.e:busy", 17)]
    assert m["functions_over_60_lines"] == [("pkg.f:long", 62)]
