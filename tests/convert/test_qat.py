"""Quantisation-aware fine-tuning (issue #29): the outlier model that breaks plain int8 passes the gate with QAT in
every format with int8 kernels; the ladder ends with it; the zoo's models rewrite exactly; bad input is refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgecnn.cli import main

REPO = Path(__file__).resolve().parents[2]
FORMATS = ("tflite", "onnx", "openvino")


@pytest.fixture(scope="module")
def outliers(outlier_model) -> Path:
    return outlier_model  # built once per session (conftest.py), shared with test_int8_recovery.py


def _common(model_dir: Path) -> list[str]:
    cal = str(model_dir / "calibration")
    return ["--device", "host", "--data", str(model_dir / "heldout"), "--calibration", cal, "--qat-data", cal, "--quiet"]


@pytest.fixture(scope="module")
def qat_set(outliers, tmp_path_factory) -> Path:
    """The outlier model converted with --qat: int8 in all three formats from the fine-tuned model."""
    out = tmp_path_factory.mktemp("qat-set") / "set"
    code = main(["convert", str(outliers / "model.keras"), "--precision", "int8", "--qat", "--out", str(out), *_common(outliers)])
    assert code == 0
    return out


def _row(out: Path, fmt: str) -> dict:
    rows = json.loads((out / "summary.json").read_text())["artifacts"]
    return next(r for r in rows if r["format"] == fmt)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
def test_qat_passes_the_gate_with_int8_kernels(qat_set, fmt):
    from edgecnn.host.convert.qat.check import kernel_dtypes
    from edgecnn.manifest import Manifest

    row = _row(qat_set, fmt)
    assert row["status"] == "ok" and row["parity"]["accuracy_drop_points"] <= 1.0, row
    assert row["parity"]["agreement"] >= 0.95
    manifest = Manifest.load(qat_set / f"{fmt}-int8")
    kinds = kernel_dtypes(fmt, manifest.file_path("model"))
    assert len(kinds) == 4 and set(kinds.values()) <= {"int8", "i8"}, kinds  # conv1-3 and the dense layer
    qat = manifest.extra["qat"]
    assert qat["weights"] == {"kernels": 4, "stored_as": "int8"} and 1 <= qat["epochs"] <= 5 and qat["seconds"] > 0
    assert qat["validation_accuracy"]["qat_after"] > 0.9 and "calibration" in qat["data"]
    assert qat["equalised"][0]["layers"] == ["conv2", "conv3"] and qat["equalised"][0]["widest_before"] > 100


@pytest.mark.slow
def test_the_runtimes_run_integer_kernels(qat_set):
    """TFLite: int8 convolutions; ONNX Runtime: QLinearConv after its QDQ fusion; OpenVINO: u8/i8 convolutions."""
    import onnx
    import onnxruntime as ort
    import openvino as ov

    from edgecnn.host.convert.qat.check import tflite_ops
    from edgecnn.runtime.litert import _interpreter_class

    tfl = qat_set / "tflite-int8" / "model.tflite"
    assert tflite_ops(tfl).count("CONV_2D") == 3 and "FULLY_CONNECTED" in tflite_ops(tfl)
    it = _interpreter_class()[0](model_path=str(tfl))
    convs = [op for op in it._get_ops_details() if op["op_name"] == "CONV_2D"]
    assert all(it._get_tensor_details(op["inputs"][0], 0)["dtype"] == np.int8 for op in convs)
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(qat_set.parent / "optimised.onnx")
    ort.InferenceSession(str(qat_set / "onnx-int8" / "model.onnx"), options, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node]
    assert ops.count("QLinearConv") == 3 and "Conv" not in ops, ops
    compiled = ov.Core().compile_model(str(qat_set / "openvino-int8" / "model.xml"), "CPU")
    precisions = {
        op.get_rt_info()["runtimePrecision"].astype(str)
        for op in compiled.get_runtime_model().get_ordered_ops()
        if op.get_rt_info()["layerType"].astype(str) == "Convolution"
    }
    assert precisions <= {"u8", "i8"} and precisions, precisions


@pytest.mark.slow
def test_the_ladder_ends_with_qat_where_float_layers_fail(outliers, tmp_path):
    """Plain int8 fails, one float layer is not enough (--max-float-layers 1), QAT passes: the last rung."""
    out = tmp_path / "ladder"
    args = ["--precision", "tflite/int8", "--keep-float", "auto", "--max-float-layers", "1", "--qat", "--out", str(out)]
    assert main(["convert", str(outliers / "model.keras"), *args, *_common(outliers)]) == 0
    row = _row(out, "tflite")
    steps = row["recovery"]
    assert [s["passed"] for s in steps] == [False, False, True] and steps[-1]["float_layers"] == ["QAT"]
    assert steps[0]["drop_points"] > 5 and steps[-1]["drop_points"] <= 1.0
    assert row["keep_float"] == [] and any(n.startswith("QAT rung passed") for n in row["notes"]), row["notes"]
    manifest = json.loads((out / "tflite-int8" / "edgecnn.json").read_text())
    ladder = manifest["extra"]["ladder"]["steps"]
    assert manifest["extra"]["qat"]["weights"]["stored_as"] == "int8" and [s["float_layers"] for s in ladder] == [[], ["conv3"]]


@pytest.mark.slow
def test_lenet_qat_int8_is_as_accurate_as_post_training_int8(lenet_run, lenet_artifacts, tmp_path):
    out = tmp_path / "lenet-qat"
    assert (
        main(["convert", str(lenet_run), "--device", "host", "--precision", "int8", "--qat", "--out", str(out), "--quiet"]) == 0
    )
    ptq = {r["format"]: r for r in json.loads((lenet_artifacts / "summary.json").read_text())["artifacts"]}
    n = None
    for fmt in FORMATS:
        qat = _row(out, fmt)
        n = qat["parity"]["n"]
        assert qat["status"] == "ok", qat
        if ptq.get(fmt, {}).get("precision") == "int8":  # the host profile's int8 artifacts
            # one image of the 270 is the noise of a 5-epoch fine-tune: QAT is not allowed to lose more
            assert qat["parity"]["artifact_accuracy"] >= ptq[fmt]["parity"]["artifact_accuracy"] - 1.01 / n, fmt
    assert json.loads((out / "tflite-int8" / "edgecnn.json").read_text())["extra"]["qat"]["data"].startswith("the run's")


@pytest.mark.parametrize(
    "name,options",
    [
        ("mobilenet_v2", {"alpha": 0.35}),
        ("mobilenet_v1", {"alpha": 0.25}),
        ("mobilenet_v3_small", {"alpha": 0.75}),
        ("squeezenet1_0", {}),
        ("lenet5", {}),
    ],
)
def test_zoo_models_rewrite_to_the_same_function_with_batch_norm_folded(name, options):
    """Before quantisation (quantisers passing through) the QAT copy computes the model's function: batch norm
    folded into the convolutions, nested base models included, V3's hard-swish and squeeze-excite blocks too."""
    import keras

    from edgecnn.host.convert.qat.finetune import _activation_quantisers
    from edgecnn.host.convert.qat.rewrite import qat_model
    from edgecnn.host.models import create_model

    keras.utils.set_random_seed(0)
    size = 32 if name == "lenet5" else 64
    model = create_model(name, num_classes=5, input_size=size, **options)
    rng = np.random.default_rng(0)
    for layer in model._flatten_layers():
        if type(layer).__name__ == "BatchNormalization":  # statistics that make folding matter
            n = layer.gamma.shape[0]
            layer.moving_mean.assign(rng.normal(0, 0.2, n))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, n))
            layer.gamma.assign(rng.uniform(0.5, 1.5, n))
    last = [layer for layer in model._flatten_layers() if getattr(layer, "kernel", None) is not None][-1]
    last.kernel.assign(last.kernel * 1000.0)  # random weights give near-uniform probabilities: spread them
    x = rng.uniform(0, 1, (6, size, size, model.inputs[0].shape[-1])).astype(np.float32)
    reference = np.asarray(model(x, training=False))
    qat = qat_model(model)
    kinds = [type(layer).__name__ for layer in qat._flatten_layers()]
    assert "BatchNormalization" not in kinds and kinds.count("ActivationQuant") > 5
    for q in _activation_quantisers(qat):
        q.calibrating = True
    for layer in qat._flatten_layers():
        if hasattr(layer, "weights_in_graph"):
            layer.weights_in_graph = False
    got = np.asarray(qat(x, training=False))
    assert reference.std() > 0.005 and np.abs(got - reference).max() < 1e-4


@pytest.mark.slow
def test_mobilenet_v2_nested_base_gets_int8_kernels_in_every_format(outliers, tmp_path):
    """MobileNetV2 alpha 0.35 (the nested ``base`` of the transfer-learning models, seeded weights): QAT in all
    three formats, every convolution (the 17 depthwise ones too) stored int8, and the three int8 models of the one
    QAT model agree (the accuracy comparison with post-training int8 is tools/bench_qat.py's, on a transfer run)."""
    import keras

    from edgecnn.host.convert.qat.check import kernel_dtypes, tflite_ops
    from edgecnn.host.models import create_model

    keras.utils.set_random_seed(0)
    model = create_model("mobilenet_v2", num_classes=10, input_size=32, channels=1, alpha=0.35)
    folder = tmp_path / "mnv2"
    folder.mkdir()
    model.save(folder / "model.keras")
    for f in ("labels.txt", "preprocess.json"):
        shutil.copy(outliers / f, folder / f)
    out = tmp_path / "mnv2-qat"
    args = ["--precision", "int8", "--qat", "--qat-epochs", "1", "--no-gate", "--out", str(out)]
    assert main(["convert", str(folder / "model.keras"), *args, *_common(outliers)]) == 0
    for fmt in FORMATS:
        path = out / f"{fmt}-int8" / ("model.xml" if fmt == "openvino" else f"model.{fmt}")
        kinds = kernel_dtypes(fmt, path)
        assert len(kinds) >= 50 and set(kinds.values()) <= {"int8", "i8"}, (fmt, kinds)
    assert tflite_ops(out / "tflite-int8" / "model.tflite").count("DEPTHWISE_CONV_2D") == 17
    accuracy = {fmt: _row(out, fmt)["parity"]["artifact_accuracy"] for fmt in FORMATS}
    assert max(accuracy.values()) - min(accuracy.values()) <= 0.05, accuracy  # one QAT model, three formats


# --- bad input, each refused clearly ---------------------------------------------------------------------------


def _refused(capsys, *argv) -> str:
    assert main(list(argv)) == 1
    return capsys.readouterr().err


def test_qat_needs_an_int8_artifact(lenet_run, tmp_path, capsys):
    err = _refused(
        capsys, "convert", str(lenet_run), "--device", "host", "--precision", "fp32", "--qat", "--out", str(tmp_path / "o")
    )
    assert "--qat makes int8 artifacts; this conversion makes fp32" in err and "--precision int8" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--qat-data", "x"], "--qat-data is the fine-tune's data: it needs --qat"),
        (["--qat", "--keep-float", "c1"], "--qat quantises every layer; it cannot keep c1 in float"),
        (["--qat", "--accuracy-control"], "--qat quantises them all: use one"),
        (["--qat", "--qat-epochs", "0"], "--qat-epochs must be at least 1; received 0"),
    ],
)
def test_conflicting_qat_options_are_refused(lenet_run, tmp_path, capsys, flags, message):
    err = _refused(
        capsys, "convert", str(lenet_run), "--device", "host", "--precision", "int8", *flags, "--out", str(tmp_path / "o")
    )
    assert message in err, err


def test_a_bare_keras_file_needs_qat_data(outliers, tmp_path, capsys):
    err = _refused(
        capsys,
        "convert",
        str(outliers / "model.keras"),
        "--device",
        "host",
        "--qat",
        "--precision",
        "tflite/int8",
        "--out",
        str(tmp_path / "o"),
    )
    assert "quantisation-aware training needs labelled training images" in err and "convert --qat-data DIR" in err


def test_qat_data_with_other_classes_is_refused(outliers, tmp_path, capsys):
    wrong = tmp_path / "wrong"
    for c in ("cat", "dog"):
        (wrong / c).mkdir(parents=True)
    err = _refused(capsys, "qat", str(outliers / "model.keras"), "--data", str(wrong), "--out", str(tmp_path / "o"))
    assert "its class folders ['cat', 'dog'] are not the model's labels" in err and not (tmp_path / "o").exists()


def _saved(tmp_path: Path, layer) -> Path:
    import keras

    inputs = keras.Input((16, 16, 1))
    x = layer(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    model.save(tmp_path / "m.keras")
    (tmp_path / "labels.txt").write_text("a\nb\n")
    from edgecnn.preprocess import PreprocessSpec

    PreprocessSpec.unit((16, 16), 1).save(tmp_path / "preprocess.json")
    return tmp_path / "m.keras"


@pytest.mark.parametrize(
    "make,named",
    [
        (lambda k: k.layers.SeparableConv2D(4, 3, name="sep"), "sep (SeparableConv2D)"),
        (lambda k: k.layers.DepthwiseConv2D(3, depth_multiplier=2, name="dw"), "dw (DepthwiseConv2D with depth_multiplier 2)"),
        (lambda k: k.layers.Conv2D(4, 3, activation="elu", name="c"), "c (activation 'elu')"),
    ],
)
def test_unsupported_layers_are_refused_by_name(tmp_path, capsys, make, named):
    import keras

    path = _saved(tmp_path, make(keras))
    err = _refused(capsys, "qat", str(path), "--data", str(tmp_path), "--out", str(tmp_path / "o"))
    assert "quantisation-aware training does not support 1 layer(s): " + named in err, err
    assert "supported: " in err


def test_qat_verb_writes_the_qat_model_and_refuses_an_existing_folder(lenet_run, tmp_path, capsys):
    import keras

    from edgecnn.host.convert.qat import layers  # noqa: F401 - registers the QAT layers for loading

    out = tmp_path / "qat"
    assert main(["qat", str(lenet_run), "--out", str(out), "--epochs", "1", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["epochs"] == 1 and record["validation_accuracy"]["qat_after"] > 0.9
    model = keras.saving.load_model(out / "model.keras")
    kinds = {type(layer).__name__ for layer in model._flatten_layers()}
    assert {"QuantConv2D", "QuantDense", "ActivationQuant"} <= kinds
    assert (out / "labels.txt").read_text().split() == [str(i) for i in range(10)]
    err = _refused(capsys, "qat", str(lenet_run), "--out", str(out))
    assert "output folder already exists" in err and "--force" in err


def test_benchmark_labels_a_qat_candidate_and_can_recommend_it():
    from edgecnn.host.convert.artifact import Row
    from edgecnn.host.convert.parity import ParityResult
    from edgecnn.host.lab.benchmark import _row, recommend

    def row(fmt, precision, acc, qat=False, keep=()):
        parity = ParityResult(n=100, data="d", agreement=0.9, max_abs_dp=0.1, keras_accuracy=0.93, artifact_accuracy=acc)
        return Row(fmt, precision, size_mb=1.0, parity=parity, qat=qat, keep_float=list(keep))

    rows = [_row(row("tflite", "fp32", 0.93)), _row(row("tflite", "int8", 0.80)), _row(row("tflite", "int8", 0.935, qat=True))]
    rows += [_row(row("tflite", "int8", 0.93, keep=["conv2", "conv3"]))]
    assert rows[2]["artifact"] == "tflite/int8 (QAT)" and rows[2]["qat"] and not rows[1]["qat"]
    for r, p50 in zip(rows, (1.0, 0.3, 0.31, 0.6)):
        r["p50_ms"] = p50
    best = recommend(rows, 1.0)
    assert best["artifact"] == "tflite/int8 (QAT)" and "gains 0.5 points" in best["why"], best
