"""Threads, precision and streams as each runtime runs them (issue #28): read back, honoured, in every profile;
ONNX int8 activations that ONNX Runtime fuses on this CPU."""

from __future__ import annotations

import platform
from pathlib import Path

import numpy as np
import pytest

from edgecnn.devices import load_profile
from edgecnn.profiling.measure import ProfileOptions, profile
from edgecnn.runtime.base import open_backend

FILES = {"litert": "tflite-fp32/model.tflite", "onnxruntime": "onnx-fp32/model.onnx", "openvino": "openvino-fp32/model.xml"}
X86 = platform.machine().lower() in ("x86_64", "amd64")


def test_onnx_int8_activations_follow_the_device():
    from edgecnn.host.convert.onnx import activation_type

    assert activation_type(load_profile("intel-cpu")) == (
        "uint8",
        "onnxruntime fuses Q/DQ into QLinear kernels on x86 only for uint8 activations",
    )
    assert activation_type(load_profile("jetson-orin-nano"))[0] == "int8"  # TensorRT: signed Q/DQ only
    kind, why = activation_type(load_profile("rpi4"))
    assert kind == "int8" and "aarch64" in why


@pytest.mark.parametrize("runtime", list(FILES))
def test_each_runtime_reports_its_pinning_as_it_runs(lenet_artifacts, runtime):
    with open_backend(runtime, lenet_artifacts / FILES[runtime], threads=2) as b:
        pins = b.describe()["pinning"]
    assert pins["threads"] == 2 and pins["streams"] == 1
    how = pins["how"]
    if runtime == "openvino":  # read back from the compiled model, as benchmark_app prints them
        assert pins["precision"] == "f32" and how["INFERENCE_PRECISION_HINT"] == "f32"
        assert how["NUM_STREAMS"] == "1" and how["INFERENCE_NUM_THREADS"] == "2"
        assert how["api"] == "one InferRequest, start_async + wait"
    elif runtime == "onnxruntime":  # read back from the session
        assert how["intra_op_num_threads"] == 2 and how["execution_mode"] == "ORT_SEQUENTIAL"
        assert how["graph_optimization_level"] == "ORT_ENABLE_ALL"
    else:
        assert how["Interpreter(num_threads)"] == 2 and pins["precision"] == "f32"


def _threads_now() -> int:
    return len(list(Path("/proc/self/task").iterdir()))


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts threads in /proc")
def test_litert_and_openvino_honour_threads(lenet_artifacts):
    x = np.zeros((1, 32, 32, 1), np.float32)
    before = _threads_now()
    with open_backend("litert", lenet_artifacts / FILES["litert"], threads=4) as b:
        b.run(x)
        assert _threads_now() - before >= 3  # XNNPACK's pool: the caller and three workers
    with open_backend("openvino", lenet_artifacts / FILES["openvino"], threads=1) as b:
        assert b.pinning()["threads"] == 1 and b.pinning()["how"]["INFERENCE_NUM_THREADS"] == "1"
        assert b.run(x).shape == (1, 10)


def test_openvino_run_and_invoke_agree_and_outputs_are_not_overwritten(lenet_artifacts):
    rng = np.random.default_rng(0)
    a, c = rng.uniform(0, 1, (1, 32, 32, 1)).astype(np.float32), rng.uniform(0, 1, (1, 32, 32, 1)).astype(np.float32)
    with open_backend("openvino", lenet_artifacts / FILES["openvino"], threads=2) as b:
        pa = b.run(a)
        kept = pa.copy()
        pc = b.run(c)
        assert np.array_equal(pa, kept) and not np.allclose(pa, pc)  # run() returns its own copy
        b.set_input(a)
        assert np.allclose(b.invoke(), kept, atol=1e-6)


def test_profile_json_records_pinning_and_what_is_timed(lenet_artifacts):
    r = profile(
        lenet_artifacts / "openvino-fp32",
        profile=load_profile("host"),
        opts=ProfileOptions(runs=5, min_seconds=0, warmup=2, threads=2),
    )
    assert r["threads"] == 2
    assert r["pinning"]["threads"] == 2 and r["pinning"]["precision"] == "f32" and r["pinning"]["streams"] == 1
    assert r["pinning"] == r["runtime"]["pinning"]
    assert "unchanged" in r["timing"]["invoke"] and "new input" in r["timing"]["fresh_input"]
    from edgecnn.profiling.report import markdown

    assert "- pinned: 2 threads, f32, 1 stream(s): {'PERFORMANCE_HINT': 'LATENCY', 'NUM_STREAMS': '1'" in markdown(r)


def _residual_onnx(path: Path) -> Path:
    """NHWC input -> Conv a -> Conv b; Add(a, b) -> Conv c: a tensor read by two nodes, as MobileNetV2's residuals."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = {
        k: numpy_helper.from_array(rng.normal(0, 0.3, (8, 8 if k != "wa" else 3, 3, 3)).astype(np.float32), k)
        for k in ("wa", "wb", "wc")
    }
    nodes = [
        helper.make_node("Transpose", ["input"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["nchw", "wa"], ["a"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a"], ["ar"]),
        helper.make_node("Conv", ["ar", "wb"], ["b"], pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["ar", "b"], ["s"]),
        helper.make_node("Conv", ["s", "wc"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("GlobalAveragePool", ["c"], ["g"]),
        helper.make_node("Flatten", ["g"], ["probabilities"]),
    ]
    graph = helper.make_graph(
        nodes,
        "residual",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 16, 16, 3])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 8])],
        list(w.values()),
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _ops_run(model: Path, tmp: Path) -> list[str]:
    import onnx
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.optimized_model_filepath = str(tmp / f"{model.stem}-optimized.onnx")
    so.log_severity_level = 3
    ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
    return [n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node]


@pytest.mark.skipif(not X86, reason="the uint8 choice is x86's")
def test_onnx_int8_for_this_cpu_runs_every_convolution_in_int8(tmp_path):
    from edgecnn.host.convert.onnx import activation_type, quantize
    from edgecnn.host.data.calibration import CalibrationSet

    fp32 = _residual_onnx(tmp_path / "fp32.onnx")
    calib = CalibrationSet(np.random.default_rng(1).uniform(-1, 1, (16, 16, 16, 3)).astype(np.float32))
    kind = activation_type(load_profile("host"))[0]
    assert kind == "uint8"
    extra = quantize(fp32, calib, tmp_path / "u8.onnx", "per-channel", activations=kind)
    assert extra["quantization"]["activations"] == "uint8"
    ops = _ops_run(tmp_path / "u8.onnx", tmp_path)
    assert ops.count("QLinearConv") == 3 and "Conv" not in ops and "QLinearAdd" in ops, ops
    # why: with int8 activations this onnxruntime leaves the convolution after the branching tensor in float
    quantize(fp32, calib, tmp_path / "s8.onnx", "per-channel", activations="int8")
    assert "Conv" in _ops_run(tmp_path / "s8.onnx", tmp_path)


@pytest.mark.skipif(not X86, reason="the uint8 choice is x86's")
def test_onnx_int8_runs_every_convolution_as_an_int8_kernel(lenet_artifacts, tmp_path):
    import onnx
    import onnxruntime as ort

    from edgecnn.manifest import Manifest

    m = Manifest.load(lenet_artifacts / "onnx-int8", verify=False)
    assert m.extra["quantization"]["activations"] == "uint8"
    assert "x86" in m.extra["quantization"]["activations_why"]
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(m.file_path("model")), so, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node]
    convs = [n.op_type for n in onnx.load(str(m.file_path("model"))).graph.node].count("Conv")
    # int8 activations left convolutions in float between DequantizeLinear and QuantizeLinear on x86 (MobileNetV2:
    # 15 of 52); LeNet-5's Tanh has no int8 kernel and stays in float either way
    assert convs == 2 and ops.count("QLinearConv") == convs and "Conv" not in ops, ops
    assert ops.count("QGemm") == 3, ops
