"""One contract for every runtime: same top-1 as the parity baseline, same output shape, clean close."""

from __future__ import annotations

import numpy as np
import pytest

from edgecnn.devices import load_profile
from edgecnn.errors import ArtifactError, MissingDependencyError, RuntimeBackendError
from edgecnn.manifest import Manifest
from edgecnn.runtime import Classifier
from edgecnn.runtime.select import select_runtime

ARTIFACTS = ["tflite-fp32", "tflite-int8", "onnx-fp32", "onnx-int8", "openvino-fp32", "openvino-int8"]


@pytest.fixture(scope="module")
def keras_reference(lenet_run, digits_test_split):
    from edgecnn.host.models.io import load_keras_model
    from edgecnn.preprocess import PreprocessSpec, preprocess_batch

    spec = PreprocessSpec.load(lenet_run / "preprocess.json")
    imgs = digits_test_split.images[:40]
    x = preprocess_batch(imgs, spec, source_order="GRAY")
    return imgs, load_keras_model(lenet_run / "model.keras").predict(x, verbose=0)


@pytest.mark.parametrize("name", ARTIFACTS)
def test_contract(lenet_artifacts, keras_reference, name):
    imgs, ref = keras_reference
    clf = Classifier(lenet_artifacts / name)
    preds = [clf.classify(img, source_order="GRAY") for img in imgs]
    top1 = np.array([int(p.label) for p in preds])
    agreement = (top1 == ref.argmax(1)).mean()
    assert agreement >= (0.999 if name.endswith("fp32") else 0.95), agreement
    assert all(p.probabilities.shape == (10,) for p in preds)
    assert all(len(p.top) == 3 and p.top[0][1] >= p.top[1][1] for p in preds)
    if name.endswith("fp32"):
        assert np.abs(np.stack([p.probabilities for p in preds]) - ref).max() < 1e-4
    assert set(preds[0].timings_ms) == {"preprocess", "inference", "postprocess"}
    clf.close()


def test_selection_walks_the_chain_and_records_skips(lenet_artifacts):
    sel = select_runtime(lenet_artifacts, load_profile("desktop-gpu"))
    # no CUDA here: onnxruntime[CUDA] is skipped with the reason, openvino is next in the chain
    assert sel.backend.name == "openvino"
    assert sel.skipped[0]["candidate"] == "onnxruntime[CUDA]" and "CUDAExecutionProvider" in sel.skipped[0]["reason"]
    assert "skipped onnxruntime[CUDA]" in sel.explain()[0]
    rpi = select_runtime(lenet_artifacts, load_profile("rpi4"))
    assert rpi.backend.name == "litert" and rpi.manifest.precision == "int8" and rpi.skipped == []


def test_accelerator_missing_is_an_error_without_fallback(lenet_artifacts):
    with pytest.raises(RuntimeBackendError, match="onnxruntime has no CUDAExecutionProvider here"):
        Classifier(lenet_artifacts / "onnx-fp32", runtime="onnxruntime", accelerator="CUDA", allow_fallback=False)


def test_missing_runtime_package_says_which_extra(lenet_artifacts, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_ort(name, *a, **kw):
        if name == "onnxruntime":
            raise ImportError("No module named 'onnxruntime'", name="onnxruntime")
        return real_import(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_ort)
    with pytest.raises(MissingDependencyError) as exc:
        Classifier(lenet_artifacts / "onnx-fp32", runtime="onnxruntime", allow_fallback=False)
    assert exc.value.hint == 'pip install "edgecnn[onnx]"'


def test_tampered_truncated_and_mislabelled_artifacts_are_refused(artifact_copy):
    model = artifact_copy / "tflite-fp32" / "model.tflite"
    model.write_bytes(model.read_bytes()[:1000])
    with pytest.raises(ArtifactError, match="truncated or replaced"):
        Classifier(artifact_copy / "tflite-fp32")
    import json

    from edgecnn.manifest import seal

    mf = artifact_copy / "onnx-fp32" / "edgecnn.json"
    data = json.loads(mf.read_text())
    data["labels"] = data["labels"][:9]
    mf.write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match="'labels' changed after conversion"):
        Classifier(artifact_copy / "onnx-fp32")
    mf.write_text(json.dumps(seal(data)))  # as a faulty writer would have sealed it: the structure is checked too
    with pytest.raises(ArtifactError, match="outputs 10 classes but the manifest lists 9 labels"):
        Classifier(artifact_copy / "onnx-fp32")
    with pytest.raises(ArtifactError, match="artifact folder not found"):
        Classifier(artifact_copy / "nope")
    (artifact_copy / "openvino-fp32" / "edgecnn.json").unlink()
    with pytest.raises(ArtifactError, match="not an edgecnn artifact"):
        Manifest.load(artifact_copy / "openvino-fp32")


def test_litert_normal_path_never_imports_tensorflow(lenet_artifacts):
    """With ai-edge-litert installed, opening and running a .tflite artifact leaves TensorFlow unimported
    (tensorflow.lite is only the last fallback when no LiteRT package exists)."""
    import json
    import subprocess
    import sys

    code = (
        "import sys, json, numpy as np\n"
        "from edgecnn.runtime import Classifier\n"
        f"c = Classifier({str(lenet_artifacts / 'tflite-int8')!r})\n"
        "p = c.classify(np.zeros((32, 32), np.uint8))\n"
        "print(json.dumps({'version': c.describe()['version'], 'tf': 'tensorflow' in sys.modules}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["version"].startswith("ai-edge-litert") and result["tf"] is False


def test_without_a_litert_package_the_runtime_never_imports_tensorflow(lenet_artifacts):
    """No ai-edge-litert and no tflite-runtime: a clear 'install edgecnn[litert]' and TensorFlow stays unimported;
    only where TensorFlow is already loaded (the host during conversion) is its interpreter the fallback."""
    import json
    import subprocess
    import sys

    art = str(lenet_artifacts / "tflite-fp32")
    code = (
        "import sys, json\n"
        "sys.modules['ai_edge_litert'] = None; sys.modules['tflite_runtime'] = None  # not installed\n"
        "from edgecnn.errors import MissingDependencyError\n"
        "from edgecnn.runtime import Classifier\n"
        "if sys.argv[1] == 'host':\n"
        "    import tensorflow\n"
        "try:\n"
        f"    out = Classifier({art!r}, runtime='litert', allow_fallback=False).describe()['version']\n"
        "except MissingDependencyError as exc:\n"
        "    out = f'{exc.message} | {exc.hint}'\n"
        "print(json.dumps({'out': out, 'tf': 'tensorflow' in sys.modules}))\n"
    )
    results = {}
    for mode in ("device", "host"):
        proc = subprocess.run([sys.executable, "-c", code, mode], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        results[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert results["device"]["tf"] is False, results
    assert "ai-edge-litert" in results["device"]["out"] and 'pip install "edgecnn[litert]"' in results["device"]["out"]
    assert results["host"]["out"].startswith("tensorflow.lite"), results


def test_int8_input_by_table_lookup_equals_the_float_path(lenet_artifacts):
    """A TFLite int8 model gets its input by lookup from the resized pixels; the outputs equal preprocess + quantise."""
    from edgecnn.preprocess import preprocess
    from edgecnn.runtime import Classifier

    with Classifier(lenet_artifacts / "tflite-int8") as clf:
        assert clf._table is not None and clf._table.shape == (1, 256)
        rng = np.random.default_rng(0)
        for _ in range(5):
            img = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
            pred = clf.classify(img)
            np.testing.assert_array_equal(pred.probabilities, clf.backend.run(preprocess(img, clf.spec)[None])[0])
