"""The bad-model zoo: every broken file gets one `error:` line naming the file, what it looks like, what to do."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from edgecnn.cli import main

LFS = b"version https://git-lfs.github.com/spec/v1\noid sha256:4d7a2146\nsize 12345\n"
HTML = b"<!DOCTYPE html><html><head><title>404 Not Found</title></head></html>"


def _variants(good: bytes, other: bytes) -> dict[str, bytes]:
    return {
        "empty": b"",
        "html": HTML,
        "lfs": LFS,
        "truncated": good[: len(good) // 3],
        "random": np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        "other_format": other,
    }


@pytest.fixture(scope="module")
def zoo(lenet_artifacts, tmp_path_factory, lenet_run):
    d = tmp_path_factory.mktemp("badzoo")
    files = {
        "tflite": lenet_artifacts / "tflite-fp32" / "model.tflite",
        "onnx": lenet_artifacts / "onnx-fp32" / "model.onnx",
        "xml": lenet_artifacts / "openvino-fp32" / "model.xml",
        "keras": lenet_run / "model.keras",
    }
    out = []
    for fmt, good in files.items():
        other = files["onnx" if fmt != "onnx" else "tflite"].read_bytes()
        for kind, data in _variants(good.read_bytes(), other).items():
            p = d / f"{kind}.{fmt}"
            p.write_bytes(data)
            if fmt == "xml":
                shutil.copy(lenet_artifacts / "openvino-fp32" / "model.bin", p.with_suffix(".bin"))
            out.append(p)
    return out


def test_profile_refuses_each_bad_model_with_one_clear_line(zoo, capsys):
    for p in zoo:
        if p.suffix == ".keras":
            continue
        assert main(["profile", str(p), "--runs", "2", "--min-seconds", "0", "--warmup", "0"]) == 1, p
        err = capsys.readouterr().err.strip().splitlines()
        assert err[0].startswith("error: ") and str(p) in err[0], err
        assert "Traceback" not in "\n".join(err)
        kind = p.stem
        if kind in ("empty", "html", "lfs"):
            expected = {"empty": "an empty file (0 bytes)", "html": "an HTML page", "lfs": "a Git LFS pointer"}[kind]
            assert expected in err[0], err


def test_classify_refuses_each_bad_model_file(zoo, capsys):
    for p in zoo:
        assert main(["classify", str(p), "--source", "synthetic:?frames=1", "--max-frames", "1"]) == 1, p
        err = capsys.readouterr().err.strip().splitlines()
        assert err[0].startswith("error: ") and str(p) in err[0] and "Traceback" not in "\n".join(err), err
        if p.stem in ("html", "lfs", "empty"):
            assert {"html": "an HTML page", "lfs": "a Git LFS pointer", "empty": "an empty file"}[p.stem] in err[0], err


def test_classify_of_a_good_bare_model_file_says_what_to_give_instead(lenet_artifacts, capsys):
    model = lenet_artifacts / "tflite-fp32" / "model.tflite"
    assert main(["classify", str(model), "--source", "synthetic:?frames=1"]) == 1
    err = capsys.readouterr().err
    assert f"error: {model} is a bare model file (a TFLite flatbuffer)" in err and "edgecnn.json" in err, err


def test_convert_refuses_each_bad_keras_file(zoo, capsys):
    for p in zoo:
        if p.suffix != ".keras":
            continue
        assert main(["convert", str(p), "--device", "host", "--quiet"]) == 1, p
        err = capsys.readouterr().err.strip().splitlines()
        assert err[0].startswith("error: ") and str(p) in err[0] and "Traceback" not in "\n".join(err), err
        if p.stem in ("html", "lfs", "empty"):
            assert {"html": "an HTML page", "lfs": "a Git LFS pointer", "empty": "an empty file"}[p.stem] in err[0], err


def test_tampered_artifacts_refused_before_parsing(artifact_copy, capsys):
    """Deployed artifacts whose model bytes were mutated are refused by the hash check, for every format."""
    rng = np.random.default_rng(1)
    for art in sorted(os.listdir(artifact_copy)):
        d = artifact_copy / art
        if not d.is_dir():
            continue
        model = next(p for p in d.iterdir() if p.suffix in (".tflite", ".onnx", ".bin"))
        original = model.read_bytes()
        for _ in range(5):
            data = bytearray(original)
            for i in rng.integers(0, len(data), 3):
                data[i] ^= int(rng.integers(1, 256))
            model.write_bytes(bytes(data))
            assert main(["classify", str(d), "--source", "synthetic:?frames=1", "--max-frames", "1"]) == 1
            assert "does not match the manifest" in capsys.readouterr().err
        model.write_bytes(original)
