"""The host/device boundary (DESIGN.md): device-side modules never import the host toolchain, not even lazily.

tests/test_runtime_only_install.py proves it by running classify and profile in a venv without TensorFlow; this
reads every import statement of the device-side modules, so a lazy import on a path those tests do not take is
caught too (a host-only helper placed in ``profiling/`` was, once).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "edgecnn"
DEVICE_SIDE = [
    "runtime",
    "stream",
    "profiling",
    "preprocess.py",
    "manifest.py",
    "devices.py",
    "atomic.py",
    "signing.py",
    "errors.py",
]
HOST_ONLY = ("tensorflow", "keras", "tf2onnx", "nncf", "scipy", "sklearn", "edgecnn.train", "edgecnn.models", "edgecnn.convert")


def _device_modules() -> list[Path]:
    files: list[Path] = []
    for entry in DEVICE_SIDE:
        path = PACKAGE / entry
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return files


def host_imports(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        found += [n for n in names if any(n == h or n.startswith(h + ".") for h in HOST_ONLY)]
    return found


def test_the_scanner_sees_lazy_imports():
    assert host_imports("def f():\n    import keras\n    from scipy.optimize import nnls\n") == ["keras", "scipy.optimize"]
    assert host_imports("import numpy\nfrom edgecnn.runtime.base import open_backend\n") == []


@pytest.mark.parametrize("module", _device_modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_device_side_never_imports_the_host_toolchain(module):
    assert host_imports(module.read_text()) == []
