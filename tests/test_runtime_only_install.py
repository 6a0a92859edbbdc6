"""The install on a board, proved: a fresh venv with only `pip install ".[litert,sign]"` (no TensorFlow, no
matplotlib) runs every device verb and option the README shows, and every host verb refuses in one `error:` line
naming the extra to install. The artifacts are made beforehand on the host, as a user's would be."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

pytestmark = pytest.mark.slow

HOST_VERBS = {
    "models": [],
    "inspect": ["lenet5"],
    "validate": ["{work}"],
    "train": ["{repo}/recipes/lenet5-digits.yaml", "--out", "{work}/run"],
    "convert": ["{run}", "--device", "host", "--out", "{work}/out"],
    "sensitivity": ["{run}", "--device", "host", "--out", "{work}/sens"],
    "qat": ["{run}", "--out", "{work}/qat"],
    "calibrate-check": ["{run}", "--calibration", "{work}"],
    "benchmark": ["{run}", "--device", "host", "--out", "{work}/bench"],
    "calibrate": ["--out", "{work}/cal.json"],
    "toolchain": ["list"],
    "demo": ["--out", "{work}/demo"],
}


@pytest.fixture(scope="module")
def signed(lenet_artifacts, tmp_path_factory):
    """A signed copy of the artifacts and the public key (signed on the host, as a fleet's would be)."""
    from test_signing import make_key_pair  # tests/ is on sys.path (no package)

    from edgecnn.cli import main

    work = tmp_path_factory.mktemp("signed")
    private, public = make_key_pair(work, "fleet")
    shutil.copytree(lenet_artifacts, work / "art")
    assert main(["sign", str(work / "art"), "--key", str(private)]) == 0
    return work / "art", public


def _start(venv_dir, *args, **kw):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "COLUMNS")}
    return subprocess.Popen(
        [str(venv_dir / "bin" / "edgecnn"), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=venv_dir,
        **kw,
    )


def _run(venv_dir, *args, timeout=300):
    proc = _start(venv_dir, *args)
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _no_traceback(r):
    assert "Traceback" not in r.stderr and "ModuleNotFoundError" not in r.stderr, r.stderr[-2000:]


def test_the_device_venv_has_no_host_toolchain_and_no_matplotlib(device_venv):
    py = str(device_venv / "bin" / "python")
    names = ("tensorflow", "keras", "onnxruntime", "openvino", "matplotlib", "sklearn", "cv2", "ai_edge_litert", "model_signing")
    out = subprocess.run(
        [py, "-c", f"import importlib.util as u; print([m for m in {names!r} if u.find_spec(m)])"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert json.loads(out.stdout.strip().replace("'", '"')) == ["cv2", "ai_edge_litert", "model_signing"]


def test_devices_verify_and_signatures_on_the_device(device_venv, signed, tmp_path):
    art, public = signed
    r = _run(device_venv, "devices", "rpi4", "--json")  # profiles shipped inside the wheel
    assert r.returncode == 0 and json.loads(r.stdout)["name"] == "rpi4"
    r = _run(device_venv, "devices")
    assert r.returncode == 0 and "rpi4" in r.stdout and "jetson-orin" in r.stdout
    r = _run(device_venv, "devices", "--detect")
    assert r.returncode == 0 and r.stdout.strip(), r.stderr
    r = _run(device_venv, "verify", art, "--run", "--trust-key", public)
    _no_traceback(r)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("signature verified") == 7  # 6 artifacts and the set
    # the self-check replays stored images through the runtimes this install has, and says which it could not
    assert r.stdout.count("self-check passed") == 2 and 'pip install "edgecnn[onnx]"' in r.stdout + r.stderr
    tampered = tmp_path / "tampered"
    shutil.copytree(art / "tflite-int8", tampered)
    (tampered / "labels.txt").write_text("\n".join(f"class {i}" for i in range(10)) + "\n")
    r = _run(device_venv, "verify", tampered, "--trust-key", public)
    assert r.returncode == 1 and r.stderr.startswith("error: ") and "labels.txt" in r.stderr, r.stderr
    _no_traceback(r)


def test_classify_into_every_sink_without_tensorflow(device_venv, signed, tmp_path, digits_test_split):
    from edgecnn.host.data.video import write_video

    art, public = signed
    video = write_video(digits_test_split.images[:40], tmp_path / "d.avi", size=(64, 64))
    r = _run(
        device_venv,
        "classify",
        art,
        "--device",
        "rpi4",
        "--source",
        f"file:{video}",
        "--sink",
        "jsonl:-",
        "--sink",
        f"jsonl:{tmp_path / 'p.jsonl'}",
        "--sink",
        tmp_path / "out.avi",
        "--max-frames",
        "40",
        "--top-k",
        "2",
        "--threads",
        "1",
        "--health",
        tmp_path / "health.jsonl",
        "--health-every",
        "0.2",
        "--trust-key",
        public,
        "-v",
    )
    _no_traceback(r)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == 40 and all(len(row["top"]) == 2 for row in rows)
    correct = sum(int(row["top"][0]["label"]) == int(y) for row, y in zip(rows, digits_test_split.labels[:40]))
    assert correct >= 37
    assert "with litert ai-edge-litert" in r.stderr and "classified 40" in r.stderr
    assert len((tmp_path / "p.jsonl").read_text().splitlines()) == 40
    assert (tmp_path / "out.avi").stat().st_size > 10_000
    health = [json.loads(line) for line in (tmp_path / "health.jsonl").read_text().splitlines()]
    assert health and all(h["rss_mb"] > 0 for h in health) and health[-1]["ended_by"] == "max_frames"
    assert health[-1]["classified"] == 40
    # an image folder as the source, the final report as JSON
    folder = tmp_path / "frames"
    folder.mkdir()
    import cv2

    for i, image in enumerate(digits_test_split.images[:5]):
        cv2.imwrite(str(folder / f"{i}.png"), image)
    r = _run(device_venv, "classify", art / "tflite-fp32", "--source", folder, "--json", "--duration", "30")
    _no_traceback(r)
    assert r.returncode == 0 and json.loads(r.stdout)["classified"] == 5, r.stderr
    # the host chain lists onnxruntime and openvino too: not installed here, so the artifact says what to install
    r = _run(device_venv, "classify", art / "onnx-fp32", "--source", f"file:{video}", "--max-frames", "1")
    assert r.returncode == 1 and 'pip install "edgecnn[onnx]"' in r.stderr
    _no_traceback(r)


def test_the_live_page_serves_until_stopped(device_venv, lenet_artifacts, tmp_path, digits_test_split):
    from edgecnn.host.data.video import write_video

    video = write_video(digits_test_split.images[:10], tmp_path / "d.avi", size=(64, 64), fps=20)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = _start(
        device_venv,
        "classify",
        lenet_artifacts / "tflite-int8",
        "--source",
        f"file:{video}",
        "--sink",
        f"http://127.0.0.1:{port}",
    )
    try:
        deadline = time.monotonic() + 60
        state = {}
        while time.monotonic() < deadline and not state.get("ended"):
            time.sleep(0.3)
            try:
                state = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/state.json", timeout=2).read())
            except OSError:
                assert proc.poll() is None, proc.communicate()[1]
        assert state.get("ended") and state["width"] == 64, state
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).read().decode()
        assert "<canvas" in page
        time.sleep(1.0)
        assert proc.poll() is None  # the file has ended; the page stays up
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert f"live page: http://127.0.0.1:{port}/" in err and "classified 10" in err, err
    assert "Traceback" not in err


def test_profile_and_report_write_their_files_and_say_how_to_get_plots(device_venv, lenet_artifacts, tmp_path):
    outs = []
    for name, extra in (("int8", ["--device", "rpi4"]), ("fp32", ["--threads", "1"])):
        out = tmp_path / name
        r = _run(
            device_venv,
            "profile",
            lenet_artifacts / f"tflite-{name}",
            "--runs",
            "30",
            "--min-seconds",
            "0",
            "--warmup",
            "3",
            "--out",
            out,
            *extra,
        )
        _no_traceback(r)
        assert r.returncode == 0, r.stderr
        assert {p.name for p in tmp_path.glob(f"{name}.*")} == {f"{name}.json", f"{name}.csv", f"{name}.md"}
        assert 'pip install "edgecnn[plots]"' in r.stdout + r.stderr
        prof = json.loads(out.with_suffix(".json").read_text())
        assert prof["runtime"]["runtime"] == "litert" and prof["invoke"]["n"] >= 30
        outs.append(out.with_suffix(".json"))
    assert "estimated_p50_ms" in json.loads(outs[0].read_text())["estimate"]
    r = _run(device_venv, "profile", lenet_artifacts / "tflite-int8", "--runs", "20", "--min-seconds", "0", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["model"]["precision"] == "int8"
    assert sys.executable not in r.stderr
    r = _run(device_venv, "report", *outs, "--out", tmp_path / "cmp.png")
    _no_traceback(r)
    assert r.returncode == 0, r.stderr
    assert "int8" in r.stdout and "fp32" in r.stdout and 'pip install "edgecnn[plots]"' in r.stdout + r.stderr
    assert not (tmp_path / "cmp.png").exists()


@pytest.mark.parametrize("verb", sorted(HOST_VERBS))
def test_host_verbs_refuse_in_one_line_naming_the_extra(device_venv, lenet_run, tmp_path, repo, verb):
    args = [a.format(work=tmp_path, repo=repo, run=lenet_run) for a in HOST_VERBS[verb]]
    t0 = time.monotonic()
    r = _run(device_venv, verb, *args, timeout=120)
    assert r.returncode == 1, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert lines[0].startswith(f"error: edgecnn {verb} needs the host toolchain"), r.stderr
    assert lines[1:] == ['  hint: pip install "edgecnn[train]"'], r.stderr
    assert time.monotonic() - t0 < 30
    assert not list(tmp_path.iterdir())  # refused before any work: nothing written
