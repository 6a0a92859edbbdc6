"""The desktop-GPU path for real: onnxruntime-gpu's CUDA provider on an NVIDIA GPU (skipped without one), and the
reasons edgecnn gives when CUDA does not come up (run everywhere).

The GPU tests run their checks in child processes with the caller's CUDA_VISIBLE_DEVICES: the conftest hides every
GPU from this process (CPU-only tests, no cuInit noise), and CUDA reads that variable once per process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

from edgecnn.runtime import onnxrt

REPO = Path(__file__).resolve().parents[2]


def _gpu_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    was = env.pop("EDGECNN_TEST_CUDA_VISIBLE_DEVICES", "<unset>")
    if was != "<unset>":
        env["CUDA_VISIBLE_DEVICES"] = was
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def _child(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], env=_gpu_env(), capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def cuda() -> str:
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("no CUDAExecutionProvider (needs an NVIDIA GPU and onnxruntime-gpu)")
    smi = shutil.which("nvidia-smi")
    if smi is None:
        pytest.skip("onnxruntime-gpu is installed but nvidia-smi is not: no NVIDIA driver here")
    out = subprocess.run([smi, "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=30)
    if out.returncode != 0 or not out.stdout.strip():
        pytest.skip(f"nvidia-smi lists no GPU: {out.stderr.strip()[:200]}")
    return out.stdout.strip().splitlines()[0]


_PARITY = """
import json, sys
import numpy as np
from edgecnn.host.data import load_dataset
from edgecnn.runtime import Classifier
art = sys.argv[1]
test = load_dataset("bundled:digits").split(validation=0.15, test=0.15, seed=0)[2]
gpu = Classifier(art, runtime="onnxruntime", accelerator="CUDA", allow_fallback=False)
cpu = Classifier(art, runtime="onnxruntime")
pg = np.stack([gpu.classify(im).probabilities for im in test.images])
pc = np.stack([cpu.classify(im).probabilities for im in test.images])
print(json.dumps({"providers": list(gpu.backend.providers), "accelerator": gpu.backend.accelerator,
                  "pinning": gpu.describe()["pinning"], "n": len(pg),
                  "agreement": float((pg.argmax(1) == pc.argmax(1)).mean()),
                  "max_abs_dp": float(np.abs(pg - pc).max()),
                  "accuracy": float((pg.argmax(1) == np.array([int(y) for y in test.labels])).mean())}))
"""


@pytest.mark.gpu
def test_cuda_provider_agrees_with_the_cpu(cuda, lenet_artifacts):
    """The onnx-fp32 artifact on CUDA, without fallback, gives the CPU's answers on the 270 held-out digits."""
    r = _child("-c", _PARITY, str(lenet_artifacts / "onnx-fp32"))
    assert r.returncode == 0, r.stderr[-2000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["providers"][0] == "CUDAExecutionProvider" and got["accelerator"] == "CUDA"
    assert got["n"] == 270 and got["agreement"] == 1.0 and got["accuracy"] > 0.95, got
    assert got["max_abs_dp"] < 1e-3, got  # TF32 convolutions round their inputs to 10 mantissa bits
    assert got["pinning"]["how"]["cuda"]["device_id"] == "0", got["pinning"]


@pytest.mark.gpu
def test_desktop_gpu_profile_runs_classify_and_profile_on_cuda(cuda, lenet_artifacts, tmp_path):
    """The desktop-gpu profile's chain puts onnxruntime[CUDA] first: classify and profile run there, the self-check
    replays the stored images through it, and the labels are the CPU's."""
    from edgecnn.host.data import load_dataset
    from edgecnn.host.data.video import write_video

    test = load_dataset("bundled:digits").split(validation=0.15, test=0.15, seed=0)[2]
    video = tmp_path / "digits.avi"
    write_video(test.images[:100], video, size=(64, 64))
    rows = {}
    for name, how in {"gpu": ["--device", "desktop-gpu", "--no-fallback"], "cpu": ["--runtime", "onnxruntime"]}.items():
        r = _child("-m", "edgecnn", "classify", str(lenet_artifacts / "onnx-fp32"), *how, "--source", f"file:{video}",
                   "--sink", f"jsonl:{tmp_path / name}.jsonl", "--json")  # fmt: skip
        assert r.returncode == 0, r.stderr[-2000:]
        report = json.loads(r.stdout)
        rows[name] = [json.loads(ln)["top"][0]["label"] for ln in (tmp_path / f"{name}.jsonl").read_text().splitlines()]
        assert report["classified"] == 100 and report["self_check"]["passed"] is True
        assert report["runtime"]["accelerator"] == ("CUDA" if name == "gpu" else "CPU"), report["runtime"]
    assert rows["gpu"] == rows["cpu"]
    r = _child("-m", "edgecnn", "profile", str(lenet_artifacts / "onnx-fp32"), "--device", "desktop-gpu", "--runs", "50",
               "--min-seconds", "0", "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    prof = json.loads(r.stdout)
    assert prof["runtime"]["providers"][0] == "CUDAExecutionProvider" and prof["self_check"]["passed"] is True
    assert prof["invoke"]["n"] >= 50 and prof["invoke"]["p50"] > 0
    assert cuda in json.dumps(prof["system"]), "the profile's system context names the GPU it ran on"


def test_why_cuda_did_not_come_up_names_the_cause(tmp_path, monkeypatch):
    """Each reason the CUDA provider stays off gets its own sentence: a hidden GPU, the provider library's missing
    dependency (as the loader names it), what preload_dlls printed."""
    capi = tmp_path / "onnxruntime" / "capi"
    capi.mkdir(parents=True)
    fake_ort = types.SimpleNamespace(__file__=str(tmp_path / "onnxruntime" / "__init__.py"))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert onnxrt._why_no_cuda(fake_ort, []) == "CUDA_VISIBLE_DEVICES='-1' hides every GPU from CUDA"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    (capi / "libonnxruntime_providers_cuda.so").write_bytes(b"not a shared library")
    why = onnxrt._why_no_cuda(fake_ort, [])
    assert why.startswith("its CUDA provider does not load: ") and "libonnxruntime_providers_cuda.so" in why, why
    (capi / "libonnxruntime_providers_cuda.so").unlink()
    notes = ["Failed to load libcudnn.so.9: cannot open shared object file", "Failed to load libcufft.so.12: x"]
    assert onnxrt._why_no_cuda(fake_ort, notes) == f"{notes[0]} (2 CUDA/cuDNN libraries not loaded)"
    assert onnxrt._why_no_cuda(fake_ort, []).startswith("the CUDA libraries load, so CUDA found no GPU")


def test_preload_printout_is_kept_not_printed(monkeypatch, capsys):
    """onnxruntime's preload_dlls() prints its failures in terminal colours on stdout, where a --json command's
    report goes: edgecnn keeps them, without the colour codes, for the error it may raise."""

    def preload():
        print("\033[33mWARNING: Failed to load libcudart.so.13: not found\033[0m")

    monkeypatch.setattr(onnxrt, "_PRELOADED", None)
    got = onnxrt._load_cuda_libraries(types.SimpleNamespace(preload_dlls=preload))
    assert got == ["WARNING: Failed to load libcudart.so.13: not found"] and capsys.readouterr().out == ""
    assert onnxrt._load_cuda_libraries(types.SimpleNamespace(preload_dlls=None)) is got  # once per process
    monkeypatch.setattr(onnxrt, "_PRELOADED", None)
    assert onnxrt._load_cuda_libraries(types.SimpleNamespace()) == []  # onnxruntime before 1.21: nothing to call
