"""The SavedModel the converters read (frozen inference graph, or model.export when that cannot be), and the
conversion worker's failures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgecnn.convert.source import SourceModel, load_source
from edgecnn.convert.worker import Worker
from edgecnn.errors import ConversionError
from edgecnn.manifest import Manifest
from edgecnn.preprocess import PreprocessSpec


def test_savedmodel_is_the_frozen_inference_graph(lenet_run, lenet_artifacts):
    import tensorflow as tf

    src = load_source(lenet_run)
    try:
        loaded = tf.saved_model.load(str(src.saved_model()))
        assert src.export_method == "frozen graph (tf.saved_model.save)"
        serve = loaded.signatures["serving_default"]
        assert not serve.variables and list(serve.structured_outputs) == ["output_0"]  # weights are constants
        x = np.random.default_rng(0).random((70, 32, 32, 1), dtype=np.float32)
        keras = src.model.predict(x, verbose=0)
        np.testing.assert_allclose(src.predict(x), keras, atol=1e-6)  # the reference: Keras' own inference graph
        np.testing.assert_allclose(serve(tf.constant(x))["output_0"].numpy(), keras, atol=1e-6)
    finally:
        src.cleanup()
    manifest = Manifest.load(lenet_artifacts / "tflite-fp32")
    assert manifest.extra["export"] == "frozen graph (tf.saved_model.save)"


def test_model_that_cannot_be_frozen_goes_through_keras_export(tmp_path):
    """A lookup table cannot become a constant: the SavedModel then comes from Keras' own model.export."""
    import keras
    import tensorflow as tf

    class Table(keras.layers.Layer):
        def __init__(self, **kw):
            super().__init__(**kw)
            self.table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer([0, 1], [1.0, 2.0]), 0.0)

        def call(self, x):
            return x * self.table.lookup(tf.constant(1))

    inp = keras.Input((8, 8, 1), name="input")
    out = keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(Table()(inp)))
    model = keras.Model(inp, out)
    src = SourceModel(tmp_path / "m.keras", model, ["a", "b", "c"], PreprocessSpec.unit(8, 1))
    try:
        path = src.saved_model()
        assert src.export_method == "keras model.export (the frozen graph failed: ValueError)"
        x = np.random.default_rng(1).random((5, 8, 8, 1), dtype=np.float32)
        serve = tf.saved_model.load(str(path)).signatures["serving_default"]
        (got,) = serve(tf.constant(x)).values()
        np.testing.assert_allclose(got.numpy(), model.predict(x, verbose=0), atol=1e-6)
        np.testing.assert_allclose(src.predict(x), model.predict(x, verbose=0), atol=1e-6)
    finally:
        src.cleanup()


@pytest.mark.slow
def test_worker_failures_are_clear_errors(tmp_path):
    worker = Worker()
    try:
        worker.submit(
            "tflite-int8-per-channel",
            "tflite-int8",
            saved_model=str(tmp_path / "missing"),
            calibration=str(tmp_path / "c.npy"),
            out=str(tmp_path / "o.tflite"),
            io="int8",
            weights="per-channel",
        )
        np.save(tmp_path / "c.npy", np.zeros((2, 8, 8, 1), np.float32))
        with pytest.raises(ConversionError, match=r"tflite/int8: TFLiteConverter failed: .*missing") as err:
            worker.result("tflite-int8-per-channel")
        log = Path(err.value.hint.removeprefix("the conversion process's full log: "))
        assert "SavedModel file does not exist" in log.read_text()  # the traceback is there
        worker.submit("tf2onnx", "tf2onnx", argv=["--saved-model", str(tmp_path / "missing"), "--output", "x.onnx"])
        worker._proc.kill()  # as the kernel's out-of-memory killer would
        with pytest.raises(ConversionError, match=r"^tf2onnx: the conversion process died \(exit -9\)"):
            worker.result("tf2onnx")
        assert not worker.running("tf2onnx")
    finally:
        worker.close()
    assert log.is_file()  # kept for the user after a failure
    log.unlink()


@pytest.mark.slow
def test_onnxruntime_and_openvino_worker_failures_name_the_format(tmp_path):
    np.save(tmp_path / "c.npy", np.zeros((2, 8, 8, 1), np.float32))
    ort_worker, ov_worker = Worker("onnxruntime"), Worker("openvino")
    try:
        ort_worker.submit(
            "q",
            "onnx-int8",
            fp32=str(tmp_path / "none.onnx"),
            calibration=str(tmp_path / "c.npy"),
            out="o.onnx",
            int8_weights=None,
        )
        with pytest.raises(ConversionError, match=r"^onnx/int8: .*none\.onnx"):
            ort_worker.result("q")
        ov_worker.submit(
            "v",
            "openvino",
            saved_model=str(tmp_path / "missing"),
            precision="fp32",
            out=str(tmp_path / "ov"),
            calibration=None,
            labels=["a"],
            preprocess={},
            weights="per-channel",
        )
        with pytest.raises(ConversionError, match=r"^openvino/fp32: "):
            ov_worker.result("v")
        assert not ov_worker.running("v") and not ort_worker.running("q")
    finally:
        logs = [w.log_path for w in (ort_worker, ov_worker)]
        ort_worker.close()
        ov_worker.close()
    for log in logs:  # kept after a failure, with the traceback
        assert "Traceback" in log.read_text()
        log.unlink()
    with pytest.raises(ValueError, match="unknown worker kind 'torch'"):
        Worker("torch")
