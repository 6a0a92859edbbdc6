"""The latency estimate: per-layer kinds, SIMD tiles, the calibration fit, calibrate -> profile --device."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from edgecnn.cli import main
from edgecnn.devices import load_profile
from edgecnn.errors import ArtifactError, ConfigError
from edgecnn.host.lab.latency_calibration import calibrate, checks_from_artifacts, fit
from edgecnn.profiling.estimate import COEFFICIENTS, features, find_calibration, layer_costs, roofline_by_kind


def _x86_host():
    host = load_profile("host")
    return dataclasses.replace(host, arch="x86_64")


def test_lenet_layers_become_operators_with_kinds():
    from edgecnn.host.models import create_model
    from edgecnn.host.models.inspect import analyse

    rows = layer_costs(analyse(create_model("lenet5", num_classes=10, input_size=32, channels=1)))
    assert [r[4] for r in rows] == [
        "conv", "activation",  # c1 with tanh: tanh is an operator of its own in every runtime
        "average",
        "conv", "activation",
        "average",
        "free",  # flatten
        "dense", "activation",
        "dense", "activation",
        "dense", "activation",  # softmax
    ]  # fmt: skip
    c1 = rows[0]
    assert c1[:4] == [117_600, 156, 32 * 32 * 1 * 4, 28 * 28 * 6 * 4] and c1[5:] == [6, 1]


def test_mobilenet_batchnorm_and_relu_are_folded():
    from edgecnn.host.models import create_model
    from edgecnn.host.models.inspect import analyse

    rows = layer_costs(analyse(create_model("mobilenet_v2", num_classes=10, input_size=96, alpha=0.35)))
    kinds = [r[4] for r in rows]
    assert kinds.count("depthwise") == 17 and kinds.count("activation") == 1  # only the final softmax
    assert kinds.count("free") >= 80 and "conv" in kinds and "memory" in kinds  # BN + ReLU6 free; Add/ZeroPadding


def test_layer_kinds():
    from edgecnn.profiling.estimate import layer_kind

    assert layer_kind("Activation", activation="relu") == "free"  # fused into the convolution before it
    assert layer_kind("Activation", activation="tanh") == "activation"
    assert layer_kind("Activation", activation="hard_silu") == "memory"  # piecewise linear: data movement
    assert layer_kind("Conv2D", "k=1x1 s=1 same -> 7x7", 100) == "pointwise"
    assert layer_kind("Conv2D", "k=3x3 s=2 same -> 7x7", 100) == "conv"
    assert layer_kind("AveragePooling2D") == layer_kind("GlobalAveragePooling2D") == "average"
    assert layer_kind("Add") == layer_kind("ZeroPadding2D") == "memory"
    assert layer_kind("BatchNormalization") == "free"


def test_channels_are_padded_to_the_simd_tile():
    host = _x86_host()
    # the same convolution with 6 and with 8 output channels: 6 costs as much as 8 (computed in one tile of 8)
    six = [[6 * 1000, 0, 0, 0, "conv", 6, 16]]
    eight = [[8 * 1000, 0, 0, 0, "conv", 8, 16]]
    assert roofline_by_kind(six, "fp32", host)["conv"] == pytest.approx(roofline_by_kind(eight, "fp32", host)["conv"])
    # int8 reads input channels in groups of 8: a 1-channel input costs as much as an 8-channel one
    one = [[1000, 0, 0, 0, "conv", 16, 1]]
    eight_in = [[8000, 0, 0, 0, "conv", 16, 8]]
    assert roofline_by_kind(one, "int8", host)["conv"] == pytest.approx(roofline_by_kind(eight_in, "int8", host)["conv"])
    assert roofline_by_kind(one, "fp32", host)["conv"] == pytest.approx(roofline_by_kind(eight_in, "fp32", host)["conv"] / 8)


def test_fit_recovers_known_coefficients():
    rng = np.random.default_rng(0)
    truth = np.array([0.003, 0.001, 0.9, 0.8, 0.6, 0.2, 0.5, 0.7, 0.4])
    xs = rng.uniform(0, 2, (30, len(COEFFICIENTS)))
    rows = [(list(x), float(x @ truth)) for x in xs]
    assert fit(rows) == pytest.approx(list(truth), rel=1e-6)
    assert all(c >= 0 for c in fit([(list(x), 1.0) for x in xs]))  # never negative, even where a fit would want it


def test_fixed_costs_scale_with_the_clock():
    host = _x86_host()
    slow = dataclasses.replace(host, cpu=dataclasses.replace(host.cpu, clock_ghz=host.cpu.clock_ghz / 2))
    x_host = features([[0, 0, 4, 4, "memory", 1, 1]], "fp32", host, ref_clock_ghz=host.cpu.clock_ghz)
    x_slow = features([[0, 0, 4, 4, "memory", 1, 1]], "fp32", slow, ref_clock_ghz=host.cpu.clock_ghz)
    assert x_slow[0] == pytest.approx(2 * x_host[0]) and x_slow[1] == pytest.approx(2 * x_host[1])


@pytest.mark.slow
def test_calibrate_then_estimate_with_it(lenet_artifacts, tmp_path, capsys):
    """A quick LiteRT fp32 calibration with the LeNet-5 artifact as a held-out check, then profile --device rpi4."""
    host = load_profile("host")
    checks = checks_from_artifacts([lenet_artifacts / "tflite-fp32"])
    assert list(checks) == ["lenet5"] and list(checks["lenet5"][1]) == [("tflite", "fp32")]
    (cal,) = calibrate(
        host,
        runtimes=["litert"],
        precisions=["fp32"],
        threads=1,
        out_dir=tmp_path,
        seconds=0.3,
        passes=1,
        quick=True,
        checks=checks,
    )
    saved = json.loads((tmp_path / "litert-fp32-t1.json").read_text())
    assert saved["schema"] == "edgecnn.calibration" and saved["runtime"] == "litert" and saved["threads"] == 1
    assert set(saved["coefficients"]) == set(COEFFICIENTS) and min(saved["coefficients"].values()) >= 0
    assert len(saved["networks"]) == 9 and all(n["measured_ms"] > 0 for n in saved["networks"])
    assert saved["fit_error_median_abs"] < 1.0  # a loose bound: nine networks timed once each, on cores shared with other tests
    (check,) = saved["checks"]
    assert check["name"] == "lenet5" and check["measured_ms"] > 0 and check["predicted_ms"] > 0
    assert cal["path"] == str(tmp_path / "litert-fp32-t1.json")

    args = ["profile", str(lenet_artifacts / "tflite-fp32"), "--device", "rpi4", "--threads", "1"]
    args += ["--runs", "30", "--min-seconds", "0", "--json", "--calibration", cal["path"]]
    assert main(args) == 0
    est = json.loads(capsys.readouterr().out)["estimate"]
    assert est["device"] == "rpi4" and "calibrated" in est["method"] and est["calibration"] == cal["path"]
    assert est["estimated_p50_ms"] > est["host_predicted_ms"] > 0  # a Pi 4 is slower than this host
    assert est["host_check_error"] == pytest.approx(est["host_predicted_ms"] / est["host_measured_ms"] - 1)


def test_calibrate_cli_bad_inputs(tmp_path, capsys):
    assert main(["calibrate", "--runtime", "tensorrt", "--out", str(tmp_path)]) == 1
    assert "error: unknown runtime 'tensorrt' (known: imx500, litert, onnxruntime, openvino)" in capsys.readouterr().err
    assert main(["calibrate", "--threads", "0", "--out", str(tmp_path)]) == 2  # a usage error
    assert "argument --threads: must be a whole number from 1 to 1,024; received '0'" in capsys.readouterr().err
    assert main(["calibrate", "--check", str(tmp_path), "--out", str(tmp_path)]) == 1
    assert "holds no edgecnn artifact" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing written


def test_calibration_bad_inputs(tmp_path, monkeypatch):
    host = load_profile("host")
    with pytest.raises(ConfigError, match="unknown runtime 'tensorrt'"):
        calibrate(host, runtimes=["tensorrt"], precisions=["fp32"], threads=1, out_dir=tmp_path)
    with pytest.raises(ConfigError, match="calibration precisions are fp32 and int8; received 'fp16'"):
        calibrate(host, runtimes=["litert"], precisions=["fp16"], threads=1, out_dir=tmp_path)
    with pytest.raises(ConfigError, match="calibration file not found"):
        find_calibration("litert", "fp32", 1, cpu_model=host.cpu.model, path=tmp_path / "none.json")
    (tmp_path / "x.json").write_text('{"schema": "edgecnn.profile"}')
    with pytest.raises(ConfigError, match="is not an edgecnn calibration"):
        find_calibration("litert", "fp32", 1, cpu_model=host.cpu.model, path=tmp_path / "x.json")
    other = {"schema": "edgecnn.calibration", "runtime": "openvino", "precision": "int8", "host": {"cpu_model": "X"}}
    other["coefficients"] = dict.fromkeys(COEFFICIENTS, 1.0)
    (tmp_path / "ov.json").write_text(json.dumps(other))
    with pytest.raises(ConfigError, match=r"calibrates openvino/int8 on 'X'; this profile is litert/fp32"):
        find_calibration("litert", "fp32", 1, cpu_model=host.cpu.model, path=tmp_path / "ov.json")
    # without an explicit path a calibration for another CPU is simply not used
    (tmp_path / "litert-fp32-t1.json").write_text(json.dumps(other | {"runtime": "litert", "precision": "fp32"}))
    monkeypatch.setenv("EDGECNN_CALIBRATION_DIR", str(tmp_path))
    assert find_calibration("litert", "fp32", 1, cpu_model=host.cpu.model) is None
    with pytest.raises(ArtifactError, match="holds no edgecnn artifact"):
        checks_from_artifacts([tmp_path])
