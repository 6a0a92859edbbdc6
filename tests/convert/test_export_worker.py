"""The SavedModel the converters read (frozen inference graph, or model.export when that cannot be), and the
conversion worker's failures."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest

from edgecnn.errors import ConversionError, UnknownNameError
from edgecnn.host.convert.scheduler import Scheduler
from edgecnn.host.convert.source import SourceModel, load_source
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


def _job(name, worker, function, **params):
    from edgecnn.host.convert.scheduler import Job

    calibration = params.pop("needs_calibration", False)
    after = params.pop("after", ())
    return Job(name, worker, function, params, after=after, needs_calibration=calibration)


@pytest.mark.slow
def test_worker_failures_are_clear_errors(tmp_path):
    import edgecnn.host.convert.onnx  # noqa: F401 - registers the workers
    import edgecnn.host.convert.tflite  # noqa: F401

    scheduler = Scheduler()
    np.save(tmp_path / "c.npy", np.zeros((2, 8, 8, 1), np.float32))
    scheduler.calibration = tmp_path / "c.npy"
    int8 = _job(
        "tflite-int8-per-channel", "tensorflow", "edgecnn.host.convert.tflite:int8_job", needs_calibration=True,
        saved_model=str(tmp_path / "missing"), out=str(tmp_path / "o.tflite"), io="int8", weights="per-channel",
    )  # fmt: skip
    try:
        scheduler.add([int8])
        with pytest.raises(ConversionError, match=r"tflite/int8: TFLiteConverter failed: .*missing") as err:
            scheduler.result(int8.name)
        log = Path(err.value.hint.removeprefix("the conversion process's full log: "))
        assert "SavedModel file does not exist" in log.read_text()  # the traceback is there
        export = _job("tf2onnx", "tensorflow", "edgecnn.host.convert.onnx:export_job", argv=["--saved-model", str(tmp_path / "missing")],
                      out="x.onnx", labels=["a"], preprocess={})  # fmt: skip
        scheduler.add([export])
        os.kill(scheduler.worker("tensorflow")._child.pid, signal.SIGKILL)  # as the kernel's out-of-memory killer would
        with pytest.raises(ConversionError, match=r"^tf2onnx: the conversion process died \(exit -9, SIGKILL\): .*; its log: ") as died:
            scheduler.result("tf2onnx")
        assert Path(died.value.message.rpartition("; its log: ")[2]).is_file()  # named, and kept for the user
        assert not scheduler.busy("tf2onnx")
    finally:
        scheduler.close()
    assert log.is_file()  # kept for the user after a failure
    log.unlink()


@pytest.mark.slow
def test_a_job_whose_dependency_failed_is_never_run_and_says_why(tmp_path):
    import edgecnn.host.convert.onnx  # noqa: F401 - registers the workers

    scheduler = Scheduler()
    scheduler.calibration = tmp_path / "c.npy"
    export = _job("tf2onnx", "tensorflow", "edgecnn.host.convert.onnx:export_job", argv=["--saved-model", str(tmp_path / "missing")],
                  out=str(tmp_path / "x.onnx"), labels=["a"], preprocess={})  # fmt: skip
    int8 = _job("onnx-int8-choose", "onnx-quantizer", "edgecnn.host.convert.onnx:int8_job", after=("tf2onnx",),
                needs_calibration=True, fp32=str(tmp_path / "x.onnx"), out=str(tmp_path / "q.onnx"), int8_weights=None)  # fmt: skip
    try:
        scheduler.add([export, int8])
        assert scheduler.busy("onnx-int8-choose")  # waiting for tf2onnx
        with pytest.raises(ConversionError, match="SavedModel file does not exist") as err:
            scheduler.result("onnx-int8-choose")  # the failure of the job it waited for
        assert not scheduler.worker("onnx-quantizer").submitted("onnx-int8-choose")
    finally:
        scheduler.close()
    Path(err.value.hint.removeprefix("the conversion process's full log: ")).unlink()


@pytest.mark.slow
def test_onnx_and_openvino_worker_failures_name_the_format(tmp_path):
    import edgecnn.host.convert.onnx  # noqa: F401 - registers the workers
    import edgecnn.host.convert.openvino  # noqa: F401

    np.save(tmp_path / "c.npy", np.zeros((2, 8, 8, 1), np.float32))
    scheduler = Scheduler()
    scheduler.calibration = tmp_path / "c.npy"
    q = _job("q", "onnx-quantizer", "edgecnn.host.convert.onnx:int8_job", needs_calibration=True,
             fp32=str(tmp_path / "missing.onnx"), out=str(tmp_path / "q.onnx"), int8_weights=None)  # fmt: skip
    v = _job("v", "openvino-nncf", "edgecnn.host.convert.openvino:build_job", saved_model=str(tmp_path / "missing"), precision="fp32",
             out=str(tmp_path / "ov"), labels=["a"], preprocess={}, weights="per-channel")  # fmt: skip
    try:
        scheduler.add([q, v])
        with pytest.raises(ConversionError, match=r"^onnx/int8: "):
            scheduler.result("q")
        with pytest.raises(ConversionError, match=r"^openvino/fp32: "):
            scheduler.result("v")
        assert not scheduler.busy("v") and not scheduler.busy("q")
        logs = [scheduler.worker(k).log_path for k in ("onnx-quantizer", "openvino-nncf")]
    finally:
        scheduler.close()
    for log in logs:  # kept after a failure, with the traceback
        assert "Traceback" in log.read_text()
        log.unlink()
    with pytest.raises(UnknownNameError, match="unknown conversion worker 'torch'"):
        Scheduler().worker("torch")
