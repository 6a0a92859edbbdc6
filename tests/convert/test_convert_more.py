"""Edge TPU profile, NNCF accuracy control, and interrupted conversions."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from edgecnn.host.convert.api import convert
from edgecnn.manifest import Manifest
from edgecnn.runtime.select import load_artifact_set


def test_coral_profile_gives_uint8_io_and_says_compiler_is_needed(lenet_run, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no edgetpu_compiler here
    s = convert(lenet_run, "coral-edgetpu", out=tmp_path / "coral")
    assert s.ok and [(r.format, r.precision) for r in s.rows] == [("tflite", "int8")]
    m = Manifest.load(tmp_path / "coral" / "tflite-int8")
    assert m.input["dtype"] == "uint8" and m.output["dtype"] == "uint8"
    assert m.extra["edgetpu"]["compiled"] is False and "edgetpu_compiler" in m.extra["edgetpu"]["note"]
    assert "edgetpu_compiler is not on PATH" in (tmp_path / "coral" / "summary.md").read_text()


@pytest.mark.slow
def test_openvino_int8_with_accuracy_control(lenet_run, tmp_path):
    s = convert(lenet_run, "host", precisions=["openvino/int8"], out=tmp_path / "ac", accuracy_control=True, max_drop=0.5)
    row = s.rows[0]
    assert row.status == "ok", row.notes
    assert row.parity.accuracy_drop_points <= 0.5
    assert Manifest.load(tmp_path / "ac" / "openvino-int8").extra["accuracy_control"] == {"max_drop": 0.5}


@pytest.mark.slow
def test_per_tensor_int8_weights_in_every_format(lenet_run, lenet_artifacts, tmp_path, capsys):
    """--int8-weights per-tensor: one scale per weight tensor in TFLite, ONNX and OpenVINO; smaller files."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    from edgecnn.cli import main

    out = tmp_path / "pt"
    args = ["convert", str(lenet_run), "--device", "host", "--out", str(out), "--int8-weights", "per-tensor", "--quiet"]
    assert main([*args, "--precision", "tflite/int8", "--precision", "onnx/int8", "--precision", "openvino/int8"]) == 0
    for fmt in ("tflite", "onnx", "openvino"):
        m = Manifest.load(out / f"{fmt}-int8")
        assert m.extra["quantization"]["weights"] == "per-tensor", fmt
        assert m.parity["passed"] and m.parity["accuracy_drop_points"] <= 1.0, (fmt, m.parity)
        # the default is per channel for TFLite and OpenVINO (ONNX picks by calibration agreement)
        if fmt != "onnx":
            assert Manifest.load(lenet_artifacts / f"{fmt}-int8").extra["quantization"]["weights"] == "per-channel"

    from ai_edge_litert.interpreter import Interpreter

    def scales(path):
        return [len(d["quantization_parameters"]["scales"]) for d in Interpreter(model_path=str(path)).get_tensor_details()]

    assert max(scales(out / "tflite-int8" / "model.tflite")) == 1
    assert max(scales(lenet_artifacts / "tflite-int8" / "model.tflite")) == 120  # f5 and its bias: 120 units
    size = lambda d: (d / "model.tflite").stat().st_size  # noqa: E731
    assert size(out / "tflite-int8") < size(lenet_artifacts / "tflite-int8")

    g = onnx.load(str(out / "onnx-int8" / "model.onnx")).graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    weight_scales = [inits[n.input[1]] for n in g.node if n.op_type == "DequantizeLinear" and n.input[0] in inits]
    assert weight_scales and all(np.asarray(s).size == 1 for s in weight_scales)
    assert main(["verify", str(out)]) == 0 and capsys.readouterr().out.count("ok:") == 3


@pytest.mark.slow
def test_killed_conversion_leaves_the_whole_set_or_nothing(lenet_run, tmp_path):
    """SIGKILL at the named moments of a conversion into a new folder (``EDGECNN_CRASH_AT``): before the publish only
    a hidden staging folder beside it, which the next run removes; after it the complete, verified set. (Random
    moments, slower: tools/kill_trials.py.)"""
    cmd = [sys.executable, "-m", "edgecnn", "convert", str(lenet_run), "--device", "host", "--quiet",
           "--precision", "tflite/fp32", "--precision", "onnx/fp32"]  # fmt: skip

    out = tmp_path / "o"

    def staging():
        return [p.name for p in tmp_path.iterdir() if p.name.startswith(".o.")]

    for point, published in (("set:staged", False), ("set:published", True)):
        r = subprocess.run([*cmd, "--out", str(out)], env=os.environ | {"EDGECNN_CRASH_AT": point}, capture_output=True)
        assert r.returncode == -signal.SIGKILL, r.stderr[-1000:]
        assert out.exists() is published
        if not published:
            assert len(staging()) == 1 and staging()[0].endswith(".partial"), staging()
    # the second run removed the first one's staging folder, then published its whole set before it was killed
    assert staging() == [] and sorted(d.name for d in out.iterdir()) == ["onnx-fp32", "summary.json", "summary.md",
                                                                         "tflite-fp32"]  # fmt: skip
    assert len(load_artifact_set(out)) == 2  # every artifact's hashes verified: none points at a partial file
    for d in (out / "onnx-fp32", out / "tflite-fp32"):
        assert Manifest.load(d).parity["passed"]


def _unshared(blob: bytes) -> bytes:
    """The model re-encoded as TF's flatbuffer_utils writes it: one zero-point vector per tensor, as the converter."""
    import flatbuffers
    from tensorflow.lite.tools import flatbuffer_utils

    builder = flatbuffers.Builder(len(blob))
    builder.Finish(flatbuffer_utils.convert_bytearray_to_object(blob).Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def test_int8_tflite_stores_each_zero_point_vector_once(lenet_artifacts):
    """Per-channel zero points (all 0) are shared between tensors; the model reads back with every tensor's own
    scales and zero points, and re-encoding it without sharing makes it bigger and gives the same outputs."""
    from ai_edge_litert.interpreter import Interpreter

    from edgecnn.host.convert.tflite import _same_outputs, share_zero_point_vectors

    path = lenet_artifacts / "tflite-int8" / "model.tflite"
    extra = Manifest.load(lenet_artifacts / "tflite-int8").extra["flatbuffer"]
    assert extra["shared_zero_points"] is True and extra["bytes_saved"] > 0
    shared = path.read_bytes()
    unshared = _unshared(shared)
    assert len(unshared) == len(shared) + extra["bytes_saved"]
    assert _same_outputs(unshared, shared)

    def quantization(blob):
        return [
            (d["name"], d["quantization_parameters"]["scales"].tolist(), d["quantization_parameters"]["zero_points"].tolist())
            for d in Interpreter(model_content=blob).get_tensor_details()
        ]

    assert quantization(shared) == quantization(unshared)
    assert max(len(s) for _, s, _ in quantization(shared)) == 120  # still per channel
    again, info = share_zero_point_vectors(unshared)
    assert again == shared and info == {"shared_zero_points": True, "bytes_saved": extra["bytes_saved"]}
    assert share_zero_point_vectors(shared)[1] == {"shared_zero_points": False, "why": "nothing to share"}
    assert shared[4:8] == b"TFL3"


def test_zero_point_sharing_keeps_the_converters_model_when_outputs_differ(lenet_artifacts, monkeypatch):
    from edgecnn.host.convert import tflite

    unshared = _unshared((lenet_artifacts / "tflite-int8" / "model.tflite").read_bytes())
    monkeypatch.setattr(tflite, "_same_outputs", lambda a, b: False)  # stands for a re-encoding that changed a result
    blob, info = tflite.share_zero_point_vectors(unshared)
    assert blob == unshared
    assert info == {"shared_zero_points": False, "why": "the re-encoded model did not give bit-identical outputs"}


def test_onnx_calibration_ranges_match_onnxruntimes_own(lenet_artifacts, tmp_path):
    """The batched, optimised calibration gives the ranges quantize_static's own (one sample at a time, no graph
    optimisation) gives: same tensors, each end within 1e-5 of the range; 50 samples make a short last batch."""
    import numpy as np
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator, load_tensors_data
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from edgecnn.host.convert.onnx import _calibrate_ranges, _Reader
    from edgecnn.host.data.calibration import CalibrationSet

    pre = tmp_path / "pre.onnx"
    quant_pre_process(str(lenet_artifacts / "onnx-fp32" / "model.onnx"), str(pre), skip_symbolic_shape=True)
    calib = CalibrationSet(np.random.default_rng(0).random((50, 32, 32, 1), dtype=np.float32), "test")
    assert _calibrate_ranges(pre, calib, tmp_path / "ranges.json")
    ours = load_tensors_data(tmp_path / "ranges.json").data

    theirs_cal = create_calibrator(
        pre,
        sorted(set(QLinearOpsRegistry) | set(QDQRegistry)),
        augmented_model_path=str(tmp_path / "aug2.onnx"),
        calibrate_method=CalibrationMethod.MinMax,
    )
    theirs_cal.collect_data(_Reader(calib))
    theirs = theirs_cal.compute_data().data
    assert set(ours) == set(theirs) and len(ours) >= 10
    for name, r in theirs.items():
        lo, hi = (float(np.asarray(v).ravel()[0]) for v in r.range_value)
        olo, ohi = (float(np.asarray(v).ravel()[0]) for v in ours[name].range_value)
        assert abs(olo - lo) <= 1e-5 * (hi - lo) + 1e-12 and abs(ohi - hi) <= 1e-5 * (hi - lo) + 1e-12, name


def test_tflite_int8_waits_at_the_end_while_its_child_calibrates(lenet_run, tmp_path):
    """Asked first, TFLite int8 is converted last when its child process is still calibrating (the other formats use
    the time), and the table still lists the artifacts in the order asked."""
    import json

    from edgecnn.host.convert.scheduler import POOL

    POOL.close_all()  # cold workers, as in a first conversion: a TensorFlow worker kept by an earlier test has no import to do
    s = convert(lenet_run, "host", precisions=["tflite/int8", "onnx/fp32"], out=tmp_path / "o")
    assert s.ok and [(r.format, r.precision) for r in s.rows] == [("tflite", "int8"), ("onnx", "fp32")]
    steps = [msg.split(":")[0] for _, msg in s.timeline if msg.endswith("inputs") and "/" in msg.split(":")[0]]
    assert steps == ["onnx/fp32", "tflite/int8"]  # a child needs seconds to import TensorFlow alone
    listed = json.loads((tmp_path / "o" / "summary.json").read_text())["artifacts"]
    assert [a["format"] for a in listed] == ["tflite", "onnx"]
