"""One answer to "which runtime reads this file" (issue 31): formats.runtime_for, read by the runtime chain, the
profiler, the board's release check, verify, the fuzzing probe and the converters alike."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgecnn.errors import ModelError
from edgecnn.formats import FORMATS, Format, runtime_for
from edgecnn.runtime.base import RUNTIMES


def test_each_format_and_its_model_file_name_the_runtime_the_registry_says_reads_it():
    for fmt, info in FORMATS.items():
        runtime = runtime_for(fmt)
        assert fmt in RUNTIMES.get(runtime).formats  # the registry's own list agrees
        assert runtime_for(str(fmt)) == runtime
        model = Path("somewhere") / dict(info.files)["model"]
        assert runtime_for(model) == runtime_for(str(model)) == runtime_for(model.with_suffix(info.suffix.upper())) == runtime
    assert [runtime_for(f) for f in (Format.TFLITE, Format.ONNX, Format.OPENVINO)] == ["litert", "onnxruntime", "openvino"]


def test_a_keras_model_is_told_to_convert_first_and_an_unknown_file_is_named():
    with pytest.raises(ModelError, match=r"run/model\.keras is a Keras model: no device runtime reads it") as err:
        runtime_for(Path("run/model.keras"))
    assert err.value.hint == "convert it first: edgecnn convert run/model.keras --device NAME"
    with pytest.raises(ModelError, match=r"weights\.pt is not a model file a runtime reads \(expected \.tflite, \.onnx, \.xml"):
        runtime_for("weights.pt")
    with pytest.raises(ModelError, match=r"^tflite is not a model file"):  # not a format name by accident: a path
        runtime_for(Path("tflite"))


def test_the_profiler_and_the_probe_ask_the_same_function(tmp_path):
    from edgecnn.host.hardening.isolate import KERAS, runtime_for_file
    from edgecnn.profiling.measure import open_target

    assert runtime_for_file(Path("m.onnx")) == "onnxruntime" and runtime_for_file(Path("m.keras")) == KERAS
    assert runtime_for_file(Path("m.pt")) is None
    keras = tmp_path / "model.keras"
    import zipfile

    with zipfile.ZipFile(keras, "w") as z:
        z.writestr("config.json", "{}")
    with pytest.raises(ModelError, match="is a Keras model") as err:
        open_target(keras, None, runtime=None, threads=1, self_check=False)
    assert "convert it first" in err.value.hint
