"""The self-check that travels with each artifact: replayed by verify --run, and before classify and profile."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from edgecnn.cli import main
from edgecnn.manifest import MANIFEST_NAME, Manifest, seal, sha256_file
from edgecnn.preprocess import PreprocessSpec, preprocess
from edgecnn.runtime import Classifier, selfcheck


def test_every_artifact_carries_a_small_self_check_that_passes_here(lenet_artifacts, capsys):
    for d in sorted(p for p in lenet_artifacts.iterdir() if p.is_dir()):
        m = Manifest.load(d)
        with np.load(m.file_path("self_check")) as data:
            pixels, probs = data["pixels"], data["probabilities"]
        assert pixels.dtype == np.uint8 and pixels.shape == (8, 32, 32, 1) and probs.shape == (8, 10)
        assert m.files["self_check"]["bytes"] < 64 * 1024
        assert m.self_check["n"] == 8 and m.self_check["min_top1_margin"] > 2 * m.self_check["tolerance"]
    assert main(["verify", str(lenet_artifacts), "--run"]) == 0
    out = capsys.readouterr().out
    lines = re.findall(r"self-check passed: top-1 8/8, max \|dp\| (\S+) \(tolerance (\S+)\) with (\w+)", out)
    assert len(lines) == 6 and {r for _, _, r in lines} == {"litert", "onnxruntime", "openvino"}
    assert all(float(dp) <= float(tol) for dp, tol, _ in lines)


def test_pixels_invert_the_preprocessing_exactly():
    rng = np.random.default_rng(0)
    for spec in (
        PreprocessSpec.unit(8, 1),
        PreprocessSpec.symmetric(8),
        PreprocessSpec(height=8, width=8, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)),
    ):
        pixels = rng.integers(0, 256, (4, 8, 8, spec.channels), dtype=np.uint8)
        x = np.stack([preprocess(p, spec, source_order=str(spec.color_order)) for p in pixels])
        assert np.array_equal(selfcheck.pixels_from_inputs(x, spec), pixels)


def _record_other_outputs(artifact, change):
    """The recorded outputs as if the host had computed other answers (what a device that computes wrong answers
    looks like from here): the file is re-hashed and the manifest re-sealed, so only the self-check can object."""
    m = Manifest.load(artifact)
    path = m.file_path("self_check")
    with np.load(path) as data:
        pixels, probs = data["pixels"], change(data["probabilities"].copy())
    np.savez_compressed(path, pixels=pixels, probabilities=probs)
    raw = json.loads((artifact / MANIFEST_NAME).read_text())
    raw["files"]["self_check"] |= {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    (artifact / MANIFEST_NAME).write_text(json.dumps(seal(raw)))


def test_a_self_check_that_disagrees_stops_classify_and_profile_unless_skipped(artifact_copy, capsys):
    art = artifact_copy / "tflite-int8"
    _record_other_outputs(art, lambda p: np.roll(p, 1, axis=1))  # every top-1 label moved to the next class
    source = ["--source", "synthetic:?frames=3&size=32x32", "--max-frames", "3"]
    assert main(["classify", str(art), *source]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("error: the artifact's self-check failed here: litert ai-edge-litert ")
    assert "gave top-1 0/8" in err[0] and "(tolerance 5e-02 for int8): this runtime or CPU computes other answers" in err[0]
    assert "--skip-self-check" in err[1]
    assert main(["classify", str(art), *source, "--skip-self-check", "--json"]) == 0
    captured = capsys.readouterr()
    assert "warning: the artifact's self-check was skipped (--skip-self-check)" in captured.err
    assert json.loads(captured.out[captured.out.index("{") :])["self_check"] == {"skipped": True, "why": "--skip-self-check"}
    assert main(["profile", str(art), "--runs", "5", "--min-seconds", "0", "--quiet"]) == 1
    assert "self-check failed here" in capsys.readouterr().err
    assert main(["verify", str(art), "--run"]) == 1
    assert "self-check FAILED: top-1 0/8" in capsys.readouterr().err


def test_a_small_drift_within_the_tolerance_passes_and_beyond_it_fails(artifact_copy):
    art = artifact_copy / "onnx-fp32"
    _record_other_outputs(art, lambda p: p + 5e-5)  # within fp32's 1e-4
    with Classifier(art) as clf:
        assert selfcheck.run(clf).passed
    _record_other_outputs(art, lambda p: p + 5e-4)  # 5.5e-4 from the true outputs now
    with Classifier(art) as clf:
        result = selfcheck.run(clf)
    assert not result.passed and result.agreement == result.n and result.max_abs_dp == pytest.approx(5.5e-4, rel=0.05)
