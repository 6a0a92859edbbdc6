"""The host/device boundary (DESIGN.md) as a path rule: everything under ``edgecnn/host/`` is the host wing, everything
else is the device side, and no device-side module imports the host wing or the host toolchain, not even lazily: this
reads every import statement, so an import on a path the runtime-only install test does not take is caught too.
A module's docstring may say which side it is on (``Device side:`` / ``Host side:``; top-level ones must), and then
it must agree with its path. tests/test_runtime_only_install.py proves the same by running the device verbs in a venv
without TensorFlow.
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "edgecnn"
HOST_LIBRARIES = ("tensorflow", "keras", "tf2onnx", "nncf", "scipy", "sklearn", "skimage", "onnx")
_DECLARED = re.compile(r"^(Device|Host) side: \S")


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def declared_side(path: Path) -> str | None:
    doc = ast.get_docstring(ast.parse(path.read_text()))
    match = _DECLARED.match(doc or "")
    return match.group(1).lower() if match else None


def side_by_path(name: str) -> str:
    return "host" if name == "edgecnn.host" or name.startswith("edgecnn.host.") else "device"


def sides(package: Path = PACKAGE) -> dict[str, str]:
    """module name -> "device" | "host" by its path; a module that declares a side must agree with its path, and every
    top-level module and package declares one."""
    found: dict[str, str] = {}
    for path in sorted(package.rglob("*.py")):
        name = module_name(path, package.parent)
        declared, side = declared_side(path), side_by_path(name)
        top_level = name.count(".") == 1 or path.parent == package
        if declared is None and top_level:
            raise AssertionError(f"{path.relative_to(package.parent)}: no 'Device side:' or 'Host side:' first docstring line")
        if declared is not None and declared != side:
            raise AssertionError(
                f"{path.relative_to(package.parent)}: declares '{declared.capitalize()} side:' but lives on the {side} side "
                f"({'under' if side == 'host' else 'outside'} edgecnn/host/)"
            )
        found[name] = side
    return found


def imports(path: Path, skip: set[int] = frozenset()) -> list[str]:
    """Every module an import statement in ``path`` names, lazy ones included, relative ones resolved (but those
    on the lines in ``skip``)."""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = (
                ".".join(package[: len(package) - node.level + 1] + [node.module or ""]).strip(".") if node.level else node.module
            )
            names += [base] + ([f"{base}.{a.name}" for a in node.names] if base.startswith("edgecnn") else [])
    return names


# The package's own __init__ is the public API's doorway (issue 31): its ``convert`` imports the host wing when it is
# called, and its annotations name host-side types under ``if TYPE_CHECKING:``; nothing else in it may. ``import
# edgecnn`` loading nothing of the host wing is tested by tests/test_api.py.
DOORWAY = {PACKAGE / "__init__.py": {"convert"}}


def _doorway_imports(path: Path) -> set[int]:
    """The lines of ``path`` whose imports the doorway rule lets through."""
    allowed = DOORWAY.get(path, set())
    let: set[int] = set()
    for node in ast.parse(path.read_text()).body:
        function = isinstance(node, ast.FunctionDef) and node.name in allowed
        annotations = isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING" and allowed
        if function or annotations:
            let |= set(range(node.lineno, node.end_lineno + 1))
    return let


def crossings(path: Path, side_of: dict[str, str]) -> list[str]:
    """The host-side modules and libraries a device-side file imports."""
    bad = []
    for name in imports(path, skip=_doorway_imports(path)):
        if name.split(".")[0] in HOST_LIBRARIES or side_of.get(name) == "host":
            bad.append(name)
    return sorted(set(bad))


def test_every_module_declares_its_side_and_the_packages_split_as_the_readme_says():
    side_of = sides()
    # the README's layout section names each world's top-level packages and modules
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Layout: two worlds", 1)[1].split("\n## ", 1)[0]
    device_part, host_part = section.split("Host side", 1)
    # the top level of each wing: edgecnn.X on the device side, edgecnn.host.X in the host wing
    top = [n for n in side_of if n.count(".") == 1 and n not in ("edgecnn.cli", "edgecnn.__main__", "edgecnn.host")]
    top += [n for n in side_of if n.count(".") == 2 and n.startswith("edgecnn.host.") and n != "edgecnn.host.cli"]
    for name in sorted(top):
        short = name.rsplit(".", 1)[1]
        shown = f"`{short}/`" if (ROOT / name.replace(".", "/")).is_dir() else f"`{short}.py`"
        assert shown in (device_part if side_of[name] == "device" else host_part), (name, side_of[name])
    assert {"edgecnn.host.convert", "edgecnn.host.train", "edgecnn.host.models", "edgecnn.host.data", "edgecnn.host.hardening"} <= {
        n for n, s in side_of.items() if s == "host"
    }
    assert {"edgecnn.runtime", "edgecnn.stream", "edgecnn.profiling", "edgecnn.cli", "edgecnn.manifest"} <= {
        n for n, s in side_of.items() if s == "device"
    }


def test_the_scanner_sees_lazy_and_relative_imports():
    side_of = {"edgecnn.host.convert": "host", "edgecnn.host.convert.api": "host", "edgecnn.runtime.base": "device"}
    probe = PACKAGE / "runtime" / "_probe_for_the_test.py"
    probe.write_text(
        "import numpy\nfrom edgecnn.runtime.base import open_backend\n"
        "def f():\n    import keras\n    from scipy.optimize import nnls\n    from ..host.convert import api\n"
    )
    try:
        assert crossings(probe, side_of) == ["edgecnn.host.convert", "edgecnn.host.convert.api", "keras", "scipy.optimize"]
    finally:
        probe.unlink()


def test_a_module_is_on_its_paths_side_and_a_declaration_that_disagrees_is_named(tmp_path):
    (tmp_path / "edgecnn" / "runtime").mkdir(parents=True)
    (tmp_path / "edgecnn" / "host" / "convert").mkdir(parents=True)
    (tmp_path / "edgecnn" / "__init__.py").write_text('"""Device side: the package."""\n')
    (tmp_path / "edgecnn" / "runtime" / "__init__.py").write_text('"""Device side: runtimes."""\n')
    (tmp_path / "edgecnn" / "runtime" / "fast.py").write_text('"""A backend: takes the side of its path."""\n')
    (tmp_path / "edgecnn" / "host" / "__init__.py").write_text('"""Host side: the wing."""\n')
    (tmp_path / "edgecnn" / "host" / "convert" / "__init__.py").write_text('"""Host side: converters."""\n')
    (tmp_path / "edgecnn" / "host" / "convert" / "tflite.py").write_text('"""TFLite."""\n')
    assert sides(tmp_path / "edgecnn") == {
        "edgecnn": "device",
        "edgecnn.runtime": "device",
        "edgecnn.runtime.fast": "device",
        "edgecnn.host": "host",
        "edgecnn.host.convert": "host",
        "edgecnn.host.convert.tflite": "host",
    }
    (tmp_path / "edgecnn" / "runtime" / "tool.py").write_text('"""Host side: declares the other side."""\n')
    with pytest.raises(AssertionError, match=r"runtime/tool.py: declares 'Host side:' but lives on the device side"):
        sides(tmp_path / "edgecnn")
    (tmp_path / "edgecnn" / "runtime" / "tool.py").unlink()
    (tmp_path / "edgecnn" / "loose.py").write_text('"""Helpers."""\n')
    with pytest.raises(AssertionError, match="loose.py: no 'Device side:' or 'Host side:'"):
        sides(tmp_path / "edgecnn")


def _device_files() -> list[Path]:
    side_of = sides()
    return [p for p in sorted(PACKAGE.rglob("*.py")) if side_of[module_name(p)] == "device"]


@pytest.mark.parametrize("module", _device_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_device_side_never_imports_the_host_side(module):
    assert crossings(module, _package_sides()) == []


@functools.cache
def _package_sides() -> dict[str, str]:
    return sides()


def test_the_doorway_lets_through_only_convert_and_annotations(tmp_path, monkeypatch):
    door = PACKAGE / "_doorway_probe_for_the_test.py"
    door.write_text(
        "from edgecnn.host.train import trainer\n"
        "TYPE_CHECKING = False\nif TYPE_CHECKING:\n    from edgecnn.host.convert.api import ConversionSummary\n"
        "def convert():\n    from edgecnn.host.convert.api import convert\n"
        "def other():\n    from edgecnn.host.models import zoo\n"
    )
    try:
        monkeypatch.setitem(DOORWAY, door, {"convert"})
        side_of = {"edgecnn.host.train.trainer": "host", "edgecnn.host.convert.api": "host", "edgecnn.host.models.zoo": "host"}
        assert crossings(door, side_of) == ["edgecnn.host.models.zoo", "edgecnn.host.train.trainer"]
        monkeypatch.delitem(DOORWAY, door)
        assert "edgecnn.host.convert.api" in crossings(door, side_of)  # elsewhere, the same lines are crossings
    finally:
        door.unlink()
