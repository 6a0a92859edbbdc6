"""Runtime-only install, proved: a fresh venv with only `pip install ".[litert]"` (no TensorFlow)
classifies a video and profiles an artifact made beforehand."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def litert_venv(tmp_path_factory, repo):
    d = tmp_path_factory.mktemp("litert-venv")
    venv.EnvBuilder(with_pip=True).create(d)
    py = d / "bin" / "python"
    proc = subprocess.run([str(py), "-m", "pip", "install", "-q", f"{repo}[litert]"], capture_output=True, text=True, timeout=900)
    if proc.returncode != 0 and ("Could not find a version" in proc.stderr or "Failed to establish" in proc.stderr):
        pytest.skip(f"package registry unreachable: {proc.stderr.strip().splitlines()[-1]}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return d


def _run(venv_dir, *args, timeout=300):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(
        [str(venv_dir / "bin" / "edgecnn"), *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=venv_dir
    )


def test_no_tensorflow_in_the_runtime_venv(litert_venv):
    py = str(litert_venv / "bin" / "python")
    out = subprocess.run(
        [
            py,
            "-c",
            "import importlib.util as u; print([m for m in ('tensorflow','keras','onnxruntime','openvino') if u.find_spec(m)])",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.stdout.strip() == "[]"
    r = _run(litert_venv, "devices", "rpi4", "--json")  # profiles shipped inside the wheel
    assert r.returncode == 0 and json.loads(r.stdout)["name"] == "rpi4"


def test_classify_and_profile_without_tensorflow(litert_venv, lenet_artifacts, tmp_path, digits_test_split):
    from edgecnn.data.video import write_video

    video = write_video(digits_test_split.images[:40], tmp_path / "d.avi", size=(64, 64))
    r = _run(
        litert_venv,
        "classify",
        str(lenet_artifacts),
        "--device",
        "rpi4",
        "--source",
        f"file:{video}",
        "--sink",
        "jsonl:-",
        "--max-frames",
        "40",
        "-v",
    )
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == 40
    correct = sum(int(row["top"][0]["label"]) == int(y) for row, y in zip(rows, digits_test_split.labels[:40]))
    assert correct >= 37
    assert "using litert (ai-edge-litert" in r.stderr and "classified 40" in r.stderr
    # the host chain lists onnxruntime and openvino too: not installed here, so they are skipped with the extra to install
    r = _run(litert_venv, "classify", str(lenet_artifacts / "onnx-fp32"), "--source", f"file:{video}", "--max-frames", "1")
    assert r.returncode == 1 and 'pip install "edgecnn[onnx]"' in r.stderr
    r = _run(litert_venv, "profile", str(lenet_artifacts / "tflite-int8"), "--runs", "50", "--min-seconds", "0", "--json")
    assert r.returncode == 0, r.stderr
    prof = json.loads(r.stdout)
    assert prof["runtime"]["runtime"] == "litert" and prof["invoke"]["n"] == 50 and prof["model"]["precision"] == "int8"
    r = _run(
        litert_venv,
        "profile",
        str(lenet_artifacts / "tflite-int8"),
        "--device",
        "rpi4",
        "--runs",
        "20",
        "--min-seconds",
        "0",
        "--json",
    )
    assert r.returncode == 0 and "estimated_p50_ms" in json.loads(r.stdout)["estimate"]
    assert sys.executable not in r.stderr
