"""errors, registry, strict config, import weight."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field

import pytest

from edgecnn import config
from edgecnn.errors import ConfigError, UnknownNameError
from edgecnn.registry import Registry


def test_registry_duplicate_raises_and_unknown_suggests():
    reg: Registry[int] = Registry("widget")
    reg.add("mobilenet_v2", 1)
    reg.add("squeezenet1_1", 2)
    with pytest.raises(ValueError, match="already registered"):
        reg.add("mobilenet_v2", 3)
    with pytest.raises(UnknownNameError) as exc:
        reg.get("mobilenet_v3")
    assert "unknown widget 'mobilenet_v3'" in str(exc.value)
    assert "Did you mean 'mobilenet_v2'?" in str(exc.value)
    assert "known: mobilenet_v2, squeezenet1_1" in str(exc.value)


@dataclass(frozen=True)
class Inner:
    rate: float = 0.1
    name: str = "x"


@dataclass(frozen=True)
class Outer:
    epochs: int
    inner: Inner = field(default_factory=Inner)
    tags: list[str] = field(default_factory=list)


def test_config_strict_unknown_key_names_file_key_and_valid_keys(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("epochs: 3\ninner: {rte: 0.5}\n")
    with pytest.raises(ConfigError) as exc:
        config.load(Outer, p)
    msg = str(exc.value)
    assert str(p) in msg and "inner.rte" in msg and "valid keys: name, rate" in msg and "Did you mean 'rate'" in msg


def test_config_types_and_values(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("epochs: 3\ninner: {rate: 2}\ntags: [a, b]\n")
    cfg = config.load(Outer, p)
    assert cfg == Outer(epochs=3, inner=Inner(rate=2.0), tags=["a", "b"])
    p.write_text("epochs: three\n")
    with pytest.raises(ConfigError, match="'epochs' must be int; received 'three'"):
        config.load(Outer, p)
    p.write_text("inner: {}\n")
    with pytest.raises(ConfigError, match="missing required key 'epochs'"):
        config.load(Outer, p)
    p.write_text("epochs: [1\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        config.load(Outer, p)


def test_import_and_help_do_not_import_tensorflow():
    code = (
        "import sys, io, contextlib\n"
        "import edgecnn\n"
        "from edgecnn.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    rc = main(['--help'])\n"
        "from edgecnn.runtime import Classifier\n"
        "import edgecnn.stream.loop, edgecnn.profiling.measure, edgecnn.manifest, edgecnn.devices\n"
        "heavy = sorted(m for m in ('tensorflow', 'keras', 'tf2onnx', 'nncf') if m in sys.modules)\n"
        "import json; print(json.dumps({'rc': rc, 'heavy': heavy}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"rc": 0, "heavy": []}


def test_cli_usage_error_exit_code_2():
    from edgecnn.cli import main

    assert main(["no-such-verb"]) == 2
    assert main([]) == 2
