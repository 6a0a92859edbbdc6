"""edgecnn convert: gated artifacts in three formats, manifests, verify, bad input."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgecnn.cli import main
from edgecnn.errors import ConfigError, DataError, ModelError
from edgecnn.formats import format_of
from edgecnn.host.convert.api import convert
from edgecnn.host.convert.base import parse_targets
from edgecnn.manifest import Manifest


def test_host_artifacts_pass_parity(lenet_artifacts):
    summary = json.loads((lenet_artifacts / "summary.json").read_text())
    rows = {(a["format"], a["precision"]): a for a in summary["artifacts"]}
    assert set(rows) == {
        ("tflite", "fp32"),
        ("tflite", "int8"),
        ("onnx", "fp32"),
        ("onnx", "int8"),
        ("openvino", "fp32"),
        ("openvino", "int8"),
    }
    for (_fmt, prec), row in rows.items():
        p = row["parity"]
        assert row["status"] == "ok" and p["passed"] and p["n"] == 270
        if prec == "fp32":
            assert p["agreement"] >= 0.999 and p["max_abs_dp"] <= 1e-4
        else:
            assert p["accuracy_drop_points"] <= 1.0
            assert row["size_ratio"] < 0.45  # int8 weights are about a quarter of fp32
    assert (lenet_artifacts / "summary.md").read_text().count("| ok |") == 6


def test_manifest_contents(lenet_artifacts):
    m = Manifest.load(lenet_artifacts / "tflite-int8")
    assert m.labels == [str(i) for i in range(10)] and m.preprocess.input_shape == (32, 32, 1)
    assert m.input["dtype"] == "int8" and m.input["quantization"]["scale"] > 0
    assert m.device == "host" and m.source_model["sha256"] and "tensorflow" in m.tools
    assert m.parity["keras_accuracy"] >= 0.97 and m.extra["calibration"]["n"] == 300
    assert m.extra["cost"]["params"] == 61706
    ov = Manifest.load(lenet_artifacts / "openvino-fp32")
    assert set(ov.files) == {"model", "weights", "self_check"}
    assert m.conversion["id"] == ov.conversion["id"] and len(m.conversion["id"]) == 32
    assert m.self_check["n"] == 8 and m.self_check["tolerance"] == 0.05 and ov.self_check["tolerance"] == 1e-4


def test_labels_embedded_in_onnx_and_openvino(lenet_artifacts):
    import onnx
    import openvino as ov

    meta = {p.key: p.value for p in onnx.load(str(lenet_artifacts / "onnx-fp32" / "model.onnx")).metadata_props}
    assert json.loads(meta["edgecnn.labels"]) == [str(i) for i in range(10)]
    model = ov.Core().read_model(str(lenet_artifacts / "openvino-fp32" / "model.xml"))
    assert json.loads(model.get_rt_info(["model_info", "labels"]).astype(str)) == [str(i) for i in range(10)]
    onnx_in = onnx.load(str(lenet_artifacts / "onnx-int8" / "model.onnx")).graph
    assert onnx_in.input[0].name == "input" and onnx_in.output[0].name == "probabilities"
    assert any(n.op_type == "QuantizeLinear" for n in onnx_in.node)


def test_verify_accepts_and_refuses_tampered(artifact_copy, capsys):
    assert main(["verify", str(artifact_copy)]) == 0
    assert capsys.readouterr().out.count("ok: ") == 6
    model = artifact_copy / "onnx-fp32" / "model.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    assert main(["verify", str(artifact_copy / "onnx-fp32")]) == 1
    assert "does not match the manifest (tampered or corrupted)" in capsys.readouterr().err


@pytest.mark.slow
def test_rpi4_profile_all_formats_and_fp16_dynamic(lenet_run, tmp_path, capsys):
    assert main(["convert", str(lenet_run), "--device", "rpi4", "--out", str(tmp_path / "rpi4"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.count(" ok ") == 6 and "tflite" in out and "openvino" in out
    # rpi4's litert_floor is tflite-runtime 2.14 (32-bit Pi OS): dynamic-range dense layers get one scale per tensor,
    # FULLY_CONNECTED version 3 instead of the per-channel version 12 that 2.14 cannot load (tools/arm64_check.sh)
    from tensorflow.lite.tools import flatbuffer_utils

    dyn = tmp_path / "rpi4" / "tflite-dynamic"
    model = flatbuffer_utils.read_model(str(dyn / "model.tflite"))
    versions = {c.builtinCode: c.version for c in model.operatorCodes}
    assert versions[9] < 12, versions  # 9: FULLY_CONNECTED in the TFLite schema
    assert "per-tensor" in Manifest.load(dyn).extra["quantization"]["dense_layers"]
    s = convert(lenet_run, "host", precisions=["tflite/fp16", "onnx/fp16", "openvino/fp16"], out=tmp_path / "fp16")
    assert s.ok and {r.precision for r in s.rows} == {"fp16"}
    assert all(r.parity.agreement >= 0.995 for r in s.rows)


def test_gate_failure_marks_failed_and_exits_1(lenet_run, tmp_path, capsys):
    """A calibration set of one flat grey image gives int8 ranges that lose about 5 accuracy points: the gate fails."""
    np.save(tmp_path / "flat.npy", np.full((50, 32, 32, 1), 0.5, np.float32))
    args = [
        "convert",
        str(lenet_run),
        "--device",
        "host",
        "--precision",
        "tflite/int8",
        "--calibration",
        str(tmp_path / "flat.npy"),
    ]
    assert main([*args, "--out", str(tmp_path / "g"), "--quiet"]) == 1
    err = capsys.readouterr()
    assert "FAILED" in err.out and "1 of 1 artifacts failed" in err.err
    assert not (tmp_path / "g" / "tflite-int8").exists()
    summary = (tmp_path / "g" / "summary.md").read_text()
    assert "per-class accuracy change" in summary and "(--max-drop)" in summary
    assert main([*args, "--no-gate", "--out", str(tmp_path / "k"), "--quiet"]) == 1
    assert Manifest.load(tmp_path / "k" / "tflite-int8").parity["passed"] is False
    assert main([*args, "--max-drop", "-5", "--out", str(tmp_path / "n")]) == 2  # a negative budget means nothing
    assert "argument --max-drop: must be a number from 0 to 100; received '-5'" in capsys.readouterr().err


def test_bad_requests(lenet_run, tmp_path, capsys):
    with pytest.raises(
        ConfigError, match=r"precision 'int4' is not supported by 'tflite' \(supported: fp32, fp16, dynamic, int8, int16x8\)"
    ):
        parse_targets(["tflite/int4"], [])
    with pytest.raises(ConfigError, match="precision 'dynamic' is not supported by 'onnx'"):
        format_of("onnx").check("dynamic")
    assert main(["convert", str(lenet_run), "--device", "rpi-4"]) == 1
    assert "Did you mean 'rpi4'" in capsys.readouterr().err
    assert (
        main(
            ["convert", str(lenet_run), "--device", "host", "--precision", "tflite/fp32", "--out", str(tmp_path / "a"), "--quiet"]
        )
        == 0
    )
    assert (
        main(
            ["convert", str(lenet_run), "--device", "host", "--precision", "tflite/fp32", "--out", str(tmp_path / "a"), "--quiet"]
        )
        == 1
    )
    assert "output folder already exists" in capsys.readouterr().err
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"not a zip")
    assert main(["convert", str(bad), "--device", "host"]) == 1
    assert "is not a Keras model" in capsys.readouterr().err


def test_user_keras_model_checks(tmp_path):
    import keras

    from edgecnn.host.models import create_model

    m = create_model("lenet5", num_classes=3)
    m.save(tmp_path / "mine.keras")
    with pytest.raises(ConfigError, match="no preprocessing known"):
        convert(tmp_path / "mine.keras", "host", precisions=["tflite/fp32"], out=tmp_path / "o")
    with pytest.raises(DataError, match="needs calibration data"):
        from edgecnn.preprocess import PreprocessSpec

        convert(
            tmp_path / "mine.keras",
            "host",
            precisions=["tflite/int8"],
            out=tmp_path / "o2",
            preprocess=PreprocessSpec.unit(32, 1),
        )
    inp = keras.Input((8, 8, 1))
    reg = keras.Model(inp, keras.layers.Dense(3)(keras.layers.Flatten()(inp)))
    reg.save(tmp_path / "reg.keras")
    with pytest.raises(ModelError, match="activation is 'linear', not softmax"):
        convert(tmp_path / "reg.keras", "host", precisions=["tflite/fp32"], out=tmp_path / "o3")
    emb = keras.Model(inp, keras.layers.Conv2D(4, 3)(inp))
    emb.save(tmp_path / "emb.keras")
    with pytest.raises(ModelError, match="not a class-probability vector"):
        convert(tmp_path / "emb.keras", "host", precisions=["tflite/fp32"], out=tmp_path / "o4")


def test_user_model_with_data_folder_and_calibration_range(lenet_run, tmp_path, digits_test_split):
    import cv2

    from edgecnn.host.data.calibration import CalibrationSet
    from edgecnn.preprocess import PreprocessSpec

    data = tmp_path / "digits"
    for i, (img, y) in enumerate(zip(digits_test_split.images, digits_test_split.labels)):
        (data / str(y)).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(data / str(y) / f"{i}.png"), img)
    shutil.copy(lenet_run / "model.keras", tmp_path / "user.keras")
    shutil.copy(lenet_run / "preprocess.json", tmp_path / "preprocess.json")
    shutil.copy(lenet_run / "labels.txt", tmp_path / "labels.txt")
    s = convert(
        tmp_path / "user.keras", "host", precisions=["tflite/fp32", "onnx/int8"], data=str(data), out=tmp_path / "o", max_drop=2.0
    )
    assert s.ok, (tmp_path / "o" / "summary.md").read_text()
    assert [r.parity.n for r in s.rows] == [270, 270] and s.rows[1].parity.artifact_accuracy > 0.94
    assert s.rows[0].parity.keras_accuracy == s.rows[0].parity.artifact_accuracy
    wrong = np.random.default_rng(0).uniform(0, 255, (20, 32, 32, 1)).astype(np.float32)
    np.save(tmp_path / "calib.npy", wrong)
    with pytest.raises(DataError, match=r"calibration values span \[.*\] but the model was trained on \[0, 1\]"):
        CalibrationSet.from_path(tmp_path / "calib.npy", PreprocessSpec.unit(32, 1))
    with pytest.raises(DataError, match="empty or not NHWC"):
        CalibrationSet(np.zeros((0, 32, 32, 1), np.float32))
    np.save(tmp_path / "shape.npy", np.zeros((5, 16, 16, 1), np.float32))
    with pytest.raises(DataError, match=r"shape \(16, 16, 1\), the model takes \(32, 32, 1\)"):
        CalibrationSet.from_path(tmp_path / "shape.npy", PreprocessSpec.unit(32, 1))


def test_converter_failure_is_one_error_line(lenet_run, tmp_path, monkeypatch, capsys):
    import edgecnn.host.convert.onnx as onnx_mod

    real = onnx_mod._tf2onnx_args

    def broken(saved_model, out):  # the real tf2onnx, asked for a signature the SavedModel does not have
        return [a if a != "serving_default" else "no_such_signature" for a in real(saved_model, out)]

    monkeypatch.setattr(onnx_mod, "_tf2onnx_args", broken)
    rc = main(
        ["convert", str(lenet_run), "--device", "host", "--precision", "onnx/fp32", "--out", str(tmp_path / "x"), "--quiet"]
    )
    captured = capsys.readouterr()
    assert rc == 1 and "ERROR: onnx: tf2onnx failed: ValueError" in captured.out
    summary = (tmp_path / "x" / "summary.md").read_text()
    assert "tf2onnx failed: ValueError: make_sure failure: Specified signature not in model no_such_signature" in summary
    log = Path(re.search(r"the conversion process's full log: (\S+)", summary).group(1))
    assert "no_such_signature" in log.read_text()  # kept for the user, with tf2onnx's traceback
    log.unlink()
    assert not (tmp_path / "x" / "onnx-fp32").exists()
