"""The public API (issue 31): ``edgecnn.convert``, ``Classifier``, ``classify_stream`` and ``profile`` from Python,
on the session's LeNet-5 artifacts; ``import edgecnn`` stays light; the CLI verbs call these same functions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import edgecnn
from edgecnn.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _python(code: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_import_edgecnn_loads_no_toolchain_no_runtime_and_no_numpy():
    seen = _python(
        "import json, sys, edgecnn\n"
        "heavy = ('tensorflow', 'keras', 'tf2onnx', 'nncf', 'numpy', 'cv2', 'ai_edge_litert', 'onnxruntime', 'openvino')\n"
        "print(json.dumps({'heavy': sorted(m for m in sys.modules if m.split('.')[0] in heavy),\n"
        "                  'ours': sorted(m for m in sys.modules if m.startswith('edgecnn')), 'all': edgecnn.__all__}))"
    )
    assert seen["heavy"] == [] and seen["ours"] == ["edgecnn", "edgecnn.errors"]
    assert seen["all"] == ["Classifier", "EdgeCNNError", "__version__", "classify_stream", "convert", "profile"]


def test_the_public_functions_are_typed_and_documented():
    import inspect

    import edgecnn.host.convert.api  # noqa: F401 - the host wing's package no longer shadows the public function

    assert inspect.isfunction(edgecnn.convert) and edgecnn.convert.__module__ == "edgecnn"
    for name in ("convert", "classify_stream", "profile"):
        fn = getattr(edgecnn, name)
        doc = inspect.getdoc(fn)
        assert "Args:" in doc and "Returns:" in doc, name  # Google style
        hints = inspect.signature(fn)
        assert hints.return_annotation is not inspect.Signature.empty, name
        assert all(p.annotation is not inspect.Parameter.empty for p in hints.parameters.values()), name
    assert edgecnn.Classifier.__name__ == "Classifier" and "Args:" in edgecnn.Classifier.__doc__


def test_profile_and_classify_from_python_import_no_tensorflow(lenet_artifacts):
    art = lenet_artifacts / "tflite-int8"
    seen = _python(
        "import json, sys, numpy as np, edgecnn\n"
        f"r = edgecnn.profile({str(art)!r}, runs=12, min_seconds=0, warmup=1)\n"
        f"with edgecnn.Classifier({str(lenet_artifacts)!r}, runtime='litert') as clf:\n"
        "    p = clf.classify(np.full((28, 28, 3), 255, np.uint8))\n"
        "print(json.dumps({'n': r['invoke']['n'], 'runtime': r['runtime']['runtime'], 'schema': r['schema'],\n"
        "                  'label': p.label, 'labels': clf.labels, 'sum': float(p.probabilities.sum()),\n"
        "                  'tf': sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras'))}))"
    )
    assert seen["n"] >= 12 and seen["runtime"] == "litert" and seen["schema"] == "edgecnn.profile"
    assert seen["label"] in seen["labels"] and seen["sum"] == pytest.approx(1.0, abs=0.02)
    assert seen["tf"] == []


def test_classify_stream_from_python_writes_its_sinks_and_reports(lenet_artifacts, tmp_path):
    out = tmp_path / "frames.jsonl"
    report = edgecnn.classify_stream(
        lenet_artifacts, "synthetic:?fps=200&size=32x32&frames=40", [f"jsonl:{out}"], runtime="litert", max_frames=15
    )
    assert report["classified"] == 15 and report["runtime"]["runtime"] == "litert"
    assert report["self_check"]["passed"] is True
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 15 and all(line["top"][0]["label"] for line in lines)
    with edgecnn.Classifier(lenet_artifacts, runtime="onnxruntime") as clf:  # an open Classifier: its owner closes it
        again = edgecnn.classify_stream(clf, "synthetic:?fps=200&size=32x32", max_frames=5, self_check=False)
        assert again["classified"] == 5 and again["runtime"]["runtime"] == "onnxruntime"
        assert again["self_check"] == {"skipped": True, "why": "--skip-self-check"}
        assert clf.classify(np.zeros((28, 28, 3), np.uint8)).label  # still open
    with pytest.raises(edgecnn.EdgeCNNError, match="nosuch"):
        edgecnn.classify_stream(lenet_artifacts, "nosuch://x", max_frames=1)


@pytest.mark.slow
def test_convert_from_python_and_the_name_it_shares_with_the_package(lenet_run, tmp_path):
    import edgecnn.host.convert.api  # noqa: F401 - Python now sets the package as edgecnn.host.convert: it stays callable

    summary = edgecnn.convert(lenet_run, "host", precisions=["tflite/fp32"], out=tmp_path / "out")
    assert [(r.format, r.precision, r.status) for r in summary.rows] == [("tflite", "fp32", "ok")]
    assert (tmp_path / "out" / "tflite-fp32" / "model.tflite").is_file()
    with pytest.raises(edgecnn.EdgeCNNError, match="precision 'int4' is not supported"):
        edgecnn.convert(lenet_run, "host", precisions=["tflite/int4"], out=tmp_path / "bad")


def test_the_cli_verbs_call_the_public_functions(lenet_artifacts, monkeypatch, tmp_path, capsys):
    """classify, profile and convert are the API with flags: each verb's arguments reach the same function."""
    calls: dict[str, tuple] = {}

    def recorder(name, answer):
        def record(*args, **kwargs):
            calls[name] = (args, kwargs)
            return answer
        return record

    report = {"frames_read": 1, "classified": 1, "dropped": 0, "corrupt": 0, "reconnects": 0, "fps": 1.0, "latency_ms": {}}
    monkeypatch.setattr(edgecnn, "classify_stream", recorder("classify_stream", report))
    monkeypatch.setattr(edgecnn, "profile", recorder("profile", {"invoke": {}}))
    monkeypatch.setattr("edgecnn.cli.profile._print", lambda result, args: None)
    assert main(["classify", str(lenet_artifacts), "--source", "synthetic:", "--max-frames", "3", "--runtime", "litert"]) == 0
    args, kwargs = calls["classify_stream"]
    assert args[:2] == (str(lenet_artifacts), "synthetic:") and kwargs["max_frames"] == 3 and kwargs["runtime"] == "litert"
    assert main(["profile", str(lenet_artifacts), "--runs", "7", "--device", "rpi4", "--quiet"]) == 0
    args, kwargs = calls["profile"]
    assert args == (str(lenet_artifacts),) and kwargs["runs"] == 7 and kwargs["device"] == "rpi4"

    class Summary:
        out, model, device, rows, eval_source = tmp_path, "m", "host", [], "test split"

    import edgecnn.host.convert.api as api

    monkeypatch.setattr(api, "raise_if_failed", lambda summary: None)
    monkeypatch.setattr(edgecnn, "convert", recorder("convert", Summary()))
    assert main(["convert", "run-folder", "--device", "rpi4", "--precision", "tflite/int8", "--quiet"]) == 0
    args, kwargs = calls["convert"]
    assert args == ("run-folder", "rpi4") and kwargs["precisions"] == ["tflite/int8"]
