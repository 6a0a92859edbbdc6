"""The Pi-side paths of the AI Camera (picamera2-imx500: source, SensorClassifier, the classify loop, deploy's
imx500-package) against tests/stream/imx500_standin.py, a STAND-IN of Picamera2's IMX500 interface that replays
recorded tensors (the sensor cannot exist here)."""

from __future__ import annotations

import json
import os
import stat
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import imx500_standin as standin  # noqa: E402

from edgecnn.errors import ArtifactError, StreamError  # noqa: E402

LABELS = ["cat", "dog", "bird"]


def _artifact(folder: Path, *, softmax: bool = False) -> Path:
    """A minimal imx500-int8 artifact (manifest, packerOut.zip, intrinsics): what the Pi side reads of one."""
    from edgecnn.host.convert.imx500 import intrinsics
    from edgecnn.manifest import Manifest
    from edgecnn.preprocess import PreprocessSpec

    folder.mkdir(parents=True)
    with zipfile.ZipFile(folder / "packerOut.zip", "w") as z:
        z.writestr("packerOut/network.bin", b"recorded")
    spec = PreprocessSpec(height=32, width=32)
    (folder / "intrinsics.json").write_text(json.dumps(intrinsics(LABELS, spec.to_dict(), softmax)))
    io = {"name": "x", "shape": [1, 32, 32, 3], "dtype": "uint8", "layout": "NHWC", "quantization": None}
    Manifest(
        format="imx500", precision="int8", labels=LABELS, preprocess=spec, input=io, output=io | {"shape": [1, 3]},
        files={"model": {"path": "packerOut.zip"}, "intrinsics": {"path": "intrinsics.json"}},
    ).write(folder)  # fmt: skip
    return folder


@pytest.fixture()
def sensor(monkeypatch, tmp_path):
    from edgecnn.stream import imx500

    monkeypatch.setitem(imx500.INTERFACE, "module", "imx500_standin")
    monkeypatch.setitem(imx500.INTERFACE, "camera", "imx500_standin")
    art = _artifact(tmp_path / "imx500-int8")
    (art.parent / "network.rpk").write_bytes(b"rpk")
    frames = np.stack([np.full((48, 64, 3), i * 40, np.uint8) for i in range(4)])
    outputs = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.05, 0.15, 0.8], [0.6, 0.3, 0.1]], np.float32)
    standin.record(frames, outputs, [3.0, 3.5, 4.0, 3.25])
    return art, outputs


def test_source_reads_frames_with_the_sensor_tensors_into_the_classify_loop(sensor, tmp_path):
    from edgecnn.stream.capture import Capture
    from edgecnn.stream.imx500 import SensorClassifier, sensor_kpi
    from edgecnn.stream.loop import run_loop
    from edgecnn.stream.sinks import open_sink
    from edgecnn.stream.sources import open_source

    art, outputs = sensor
    source = open_source(f"picamera2-imx500:{art.parent / 'network.rpk'}?size=64x48")
    seen = []
    with SensorClassifier(art) as clf:
        capture = Capture(source)
        capture.start()
        try:
            sink = open_sink(f"jsonl:{tmp_path / 'out.jsonl'}")
            summary = run_loop(clf, capture, [sink], max_frames=4, on_prediction=lambda f, p: seen.append(p))
            sink.close()
        finally:
            capture.stop()
        kpi = sensor_kpi(clf.dnn_ms)
    assert summary["classified"] == 4
    assert standin.OPENED == [str(art.parent / "network.rpk")]
    # the newest frame wins, so which frames were classified varies; each prediction is its frame's recorded tensor
    for p in seen:
        row = next(o for o in outputs if np.allclose(o, p.probabilities))
        assert p.label == LABELS[int(row.argmax())]
        assert p.timings_ms["sensor_dnn"] in (3.0, 3.5, 4.0, 3.25)
    assert kpi["frames"] == 4 and 3.0 <= kpi["p50_ms"] <= 4.0
    lines = (tmp_path / "out.jsonl").read_text().splitlines()
    assert len(lines) == 4 and json.loads(lines[0])["top"][0]["label"] in LABELS


def test_softmax_from_the_intrinsics_turns_logits_into_probabilities(tmp_path):
    from edgecnn.stream.imx500 import SensorClassifier

    art = _artifact(tmp_path / "a", softmax=True)
    frame = np.zeros((4, 4, 3), np.uint8).view(__import__("edgecnn.stream.imx500", fromlist=["x"]).SensorFrame)
    frame.outputs = [np.array([[2.0, 0.0, -1.0]], np.float32)]
    p = SensorClassifier(art).classify(frame)
    e = np.exp([2.0, 0.0, -1.0])
    assert p.label == "cat" and p.confidence == pytest.approx(e[0] / e.sum(), rel=1e-6)


def test_a_frame_without_the_tensor_and_a_wrong_size_are_refused(tmp_path):
    from edgecnn.stream.imx500 import SensorClassifier, SensorFrame

    clf = SensorClassifier(_artifact(tmp_path / "a"))
    frame = np.zeros((4, 4, 3), np.uint8).view(SensorFrame)
    with pytest.raises(StreamError, match="without the IMX500's output tensor"):
        clf.classify(frame)
    frame.outputs = [np.zeros((1, 5), np.float32)]
    with pytest.raises(StreamError, match="5 values; the artifact has 3 labels"):
        clf.classify(frame)


def test_no_network_rpk_says_to_deploy(tmp_path):
    from edgecnn.stream.sources import open_source

    art = _artifact(tmp_path / "imx500-int8")
    with pytest.raises(StreamError, match="no network.rpk") as e:
        open_source(f"picamera2-imx500:{art}")
    assert "edgecnn deploy" in e.value.hint


def test_without_picamera2_the_error_names_the_apt_packages(monkeypatch, tmp_path):
    from edgecnn.stream import imx500
    from edgecnn.stream.sources import open_source

    monkeypatch.setitem(imx500.INTERFACE, "module", "picamera2_absent_here.devices.imx500")
    art = _artifact(tmp_path / "imx500-int8")
    (art / "network.rpk").write_bytes(b"rpk")
    src = open_source(f"picamera2-imx500:{art}")
    with pytest.raises(StreamError, match="picamera2 with IMX500 support is not installed") as e:
        src.open()
    assert "python3-picamera2 imx500-all" in e.value.hint


def _release(tmp_path: Path) -> Path:
    """TO/releases/NAME/imx500-int8, as deploy lays a release out on the board."""
    return _artifact(tmp_path / "to" / "releases" / "abc123" / "imx500-int8")


def test_deploy_packaging_refused_without_imx500_tools(tmp_path, monkeypatch):
    from edgecnn.remote.imx500 import package

    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(ArtifactError, match="imx500-package is not installed on this board") as e:
        package(_release(tmp_path))
    assert e.value.hint == "sudo apt install imx500-tools"


def test_deploy_packaging_makes_network_rpk_beside_the_releases(tmp_path, monkeypatch):
    """With a STAND-IN imx500-package on PATH (a script that copies the zip: the real one exists only on a Pi)."""
    from edgecnn.remote.imx500 import package, rpk_for
    from edgecnn.stream.imx500 import find_rpk

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "imx500-package"
    tool.write_text('#!/bin/sh\n# STAND-IN for imx500-package: -i ZIP -o DIR\ncp "$2" "$4/network.rpk"\n')
    tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    art = _release(tmp_path)
    done = package(art)
    rpk = Path(done["rpk"])
    assert rpk == rpk_for(art) and rpk.parent.parent == tmp_path / "to" / "imx500"
    assert rpk.read_bytes() == (art / "packerOut.zip").read_bytes()
    assert json.loads((rpk.parent / "intrinsics.json").read_text())["intrinsics"]["labels"] == LABELS
    assert find_rpk(str(art)) == rpk  # the source finds what deploy made
    assert package(art) == done  # once per digest
    assert sorted(p.name for p in art.iterdir()) == ["edgecnn.json", "intrinsics.json", "packerOut.zip"]  # signed set untouched


def test_classify_cli_reads_the_sensor_through_the_stand_in(sensor, tmp_path, capsys):
    """`edgecnn classify ARTIFACT picamera2-imx500:...`: the same verb, the sensor's tensors, its DNN time reported."""
    from edgecnn.cli import main

    art, outputs = sensor
    code = main(["classify", str(art), "--source", f"picamera2-imx500:{art.parent / 'network.rpk'}", "--max-frames", "3", "--json",
                 "--device", "rpi-aicam"])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report = json.loads(captured.out)
    assert report["classified"] == 3 and report["runtime"]["runtime"] == "imx500"
    assert report["sensor"]["frames"] == 3 and 3.0 <= report["sensor"]["p50_ms"] <= 4.0
    assert report["self_check"]["skipped"] and "no tensor injection" in report["self_check"]["why"]
    assert "sensor_dnn p50" in captured.err


def test_profile_sensor_reads_the_sensor_dnn_time(sensor, capsys):
    from edgecnn.cli import main

    art, _ = sensor
    assert main(["profile", str(art), "--sensor", f"picamera2-imx500:{art.parent / 'network.rpk'}", "--runs", "8", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["sensor"]["frames"] == 8
    assert result["sensor"]["p50_ms"] == pytest.approx(np.median([3.0, 3.5, 4.0, 3.25] * 2))
    assert result["dsp_p50_ms"] == 0.5
    assert main(["profile", str(art), "--sensor", "synthetic:?frames=2", "--runs", "2"]) == 1
    assert "--sensor reads a picamera2-imx500: source" in capsys.readouterr().err
