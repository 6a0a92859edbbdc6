"""The IMX500 (Raspberry Pi AI Camera) target: the toolchain environment, the Keras 3 -> tf.keras 2.15 bridge, the
memory report, and the conversion end to end (slow; skipped with its reason where `edgecnn toolchain install imx500`
has not been run)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from edgecnn.errors import ConversionError
from edgecnn.host import toolchain


@pytest.fixture()
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGECNN_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_a_missing_toolchain_is_one_line_naming_the_command(empty_cache):
    with pytest.raises(toolchain.ToolchainError, match="the imx500 toolchain is not installed") as e:
        toolchain.require("imx500")
    assert e.value.hint == "run: edgecnn toolchain install imx500"
    assert str(empty_cache) in e.value.message and e.value.message.endswith(": run edgecnn toolchain install imx500")


def test_toolchain_list_and_unknown_names(empty_cache, capsys):
    from edgecnn.cli import main

    assert main(["toolchain", "list"]) == 0
    assert "imx500: not installed" in capsys.readouterr().out
    assert main(["toolchain", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["name"] == "imx500" and rows[0]["installed"] is False
    assert main(["toolchain", "install", "coral"]) == 1
    assert "unknown toolchain 'coral' (known: imx500)" in capsys.readouterr().err


def test_java_missing_or_old_names_the_debian_package(monkeypatch, tmp_path):
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(toolchain.ToolchainError, match="needs a Java 17 runtime; no Java runtime") as e:
        toolchain.check_java(toolchain.IMX500)
    assert e.value.message.endswith(": apt-get install openjdk-17-jre-headless")
    assert e.value.hint.startswith("install it: apt-get install openjdk-17-jre-headless")
    java = tmp_path / "java"
    java.write_text("#!/bin/sh\necho 'openjdk version \"11.0.2\" 2019-01-15' >&2\n")
    java.chmod(0o755)
    assert toolchain.java_version() == 11
    with pytest.raises(toolchain.ToolchainError, match="Java 11 found"):
        toolchain.check_java(toolchain.IMX500)


def test_install_refuses_without_a_python_it_can_use(empty_cache, monkeypatch):
    monkeypatch.setattr(toolchain, "check_java", lambda s: 17)
    with pytest.raises(toolchain.ToolchainError, match="needs /nonexistent/python3.11") as e:
        toolchain.install("imx500", python="/nonexistent/python3.11", say=lambda m: None)
    assert "--python PATH" in e.value.hint
    assert not (empty_cache / "toolchains" / "imx500").exists()  # nothing half-made


def _keras():
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras

    return keras


def test_bridge_refuses_the_first_layer_it_cannot_rebuild(tmp_path):
    from edgecnn.host.convert.imx500_bridge import describe

    k = _keras()
    inp = k.Input((16, 16, 3), name="image")
    x = k.layers.Conv2D(4, 3, name="c1")(inp)
    x = k.layers.LayerNormalization(name="ln1")(x)
    x = k.layers.UpSampling2D(name="up")(x)
    out = k.layers.Dense(2, name="d")(k.layers.Flatten(name="f")(x))
    with pytest.raises(ConversionError, match="layer 'ln1' is a LayerNormalization, which the IMX500 bridge cannot") as e:
        describe(k.Model(inp, out), tmp_path / "w.npz")
    assert "Conv2D" in e.value.hint


def test_bridge_refuses_an_activation_the_two_kerases_define_differently(tmp_path):
    from edgecnn.host.convert.imx500_bridge import describe

    k = _keras()
    inp = k.Input((8, 8, 3))
    out = k.layers.Dense(2, activation="hard_sigmoid", name="gate")(k.layers.Flatten()(inp))
    with pytest.raises(ConversionError, match="layer 'gate' \\(Dense\\) uses the activation 'hard_sigmoid'"):
        describe(k.Model(inp, out), tmp_path / "w.npz")


def test_bridge_flattens_the_zoo_mobilenet_with_its_weights_by_name(tmp_path):
    from edgecnn.host.convert.imx500_bridge import describe
    from edgecnn.host.models.zoo import create_model

    model = create_model("mobilenet_v2", input_size=32, channels=3, num_classes=3, alpha=0.35)
    graph = describe(model, tmp_path / "w.npz")
    names = [n["name"] for n in graph["nodes"]]
    assert "base" not in names and len(names) == len(set(names))
    assert graph["nodes"][0]["class"] == "InputLayer" and graph["nodes"][0]["config"]["shape"] == [32, 32, 3]
    first_conv = next(n for n in graph["nodes"] if n["class"] == "Conv2D")
    assert first_conv["inputs"] == [names[0]]  # the nested base's input is the outer input
    head = next(n for n in graph["nodes"] if n["name"] == graph["outputs"][0])
    assert head["class"] == "Dense" and head["config"]["activation"] == "softmax"
    add = next(n for n in graph["nodes"] if n["class"] == "Add")
    assert len(add["inputs"]) == 2
    with np.load(graph["weights"]) as w:
        dense = model.get_layer(graph["outputs"][0])
        assert np.array_equal(w[f"{dense.name}/0"], dense.get_weights()[0])
        n_weights = sum(len(layer.get_weights()) for layer in model.get_layer("base").layers) + sum(
            len(layer.get_weights()) for layer in model.layers if layer.name != "base"
        )
        assert len(w.files) == n_weights


def test_memory_report_figures(tmp_path):
    from edgecnn.host.convert.imx500_worker import _bytes, _refuse_if_too_big, memory_report

    report = {"Memory Report": {"Memory Usage": "9.50MB", "Total Memory Available On Chip": "8.00MB",
                                "Model Memory Physical Size": "7.25MB", "Runtime Memory Physical Size": "2.25MB",
                                "Memory Utilization": "119%", "Fit In Chip": False}}  # fmt: skip
    (tmp_path / "net_MemoryReport.json").write_text(json.dumps(report))
    m = memory_report(tmp_path)
    assert (m["used_bytes"], m["available_bytes"], m["fits"]) == (int(9.5 * 2**20), 8 * 2**20, False)
    assert _bytes("626.03KB") == round(626.03 * 1024) and _bytes("1024B") == 1024 and _bytes("n/a") is None
    with pytest.raises(ConversionError, match="does not fit on the IMX500: it needs 9.50 MiB, the chip has 8.00 MiB"):
        _refuse_if_too_big(m, "imxconv's memory report")
    with pytest.raises(ConversionError, match="wrote no memory report"):
        memory_report(tmp_path / "nothing")


def test_rpi_aicam_profile_puts_imx500_first_with_tflite_as_fallback():
    from edgecnn.devices import load_profile
    from edgecnn.formats import Format, format_of

    p = load_profile("rpi-aicam")
    assert p.artifacts[0] == "imx500/int8" and "tflite/int8" in p.artifacts[1:]
    assert p.runtimes == ("imx500", "litert")
    info = format_of("imx500")
    assert info.format == Format.IMX500 and info.files[0] == ("model", "packerOut.zip")
    with pytest.raises(Exception, match="precision 'fp32' is not supported by 'imx500' \\(supported: int8\\)"):
        info.check("fp32")


def test_options_that_do_not_apply_to_the_sensor_are_refused_not_ignored():
    from edgecnn.formats import Format, Precision
    from edgecnn.host.convert.base import ConvertRequest
    from edgecnn.host.convert.imx500 import IMX500Converter

    conv = IMX500Converter.__new__(IMX500Converter)
    conv.session = None
    request = ConvertRequest(Format.IMX500, Precision.INT8, "per-tensor", keep_float=("dense",), qat=True)
    with pytest.raises(ConversionError, match="imx500/int8: --qat, --keep-float, --int8-weights do not apply"):
        conv.convert(request, None)
