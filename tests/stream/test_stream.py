"""Streams with real components: video files, an MJPEG server on loopback, a silent server, synthetic timing."""

from __future__ import annotations

import json
import re
import sys
import threading
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgecnn.cli import main
from edgecnn.errors import StreamError, UnknownNameError
from edgecnn.stream.capture import Capture
from edgecnn.stream.frames import normalise_frame
from edgecnn.stream.loop import run_loop
from edgecnn.stream.sources import SourceOptions, frame_index, open_source

sys.path.insert(0, str(Path(__file__).parent))
from mjpeg_server import MJPEGServer, SilentServer  # noqa: E402
from waiting import until  # noqa: E402


@pytest.fixture(scope="module")
def digits_video(tmp_path_factory, digits_test_split):
    from edgecnn.host.data.video import write_video

    d = tmp_path_factory.mktemp("video")
    write_video(digits_test_split.images[:100], d / "digits.avi", size=(64, 64))
    return d / "digits.avi", digits_test_split.labels[:100]


def test_classify_video_file_jsonl(lenet_artifacts, digits_video, tmp_path, capsys):
    video, labels = digits_video
    out = tmp_path / "p.jsonl"
    rc = main(
        [
            "classify",
            str(lenet_artifacts),
            "--device",
            "rpi4",
            "--source",
            f"file:{video}",
            "--sink",
            f"jsonl:{out}",
            "--sink",
            str(tmp_path / "annotated.avi"),
            "--max-frames",
            "100",
        ]
    )
    assert rc == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 100 and [r["frame"] for r in rows] == list(range(1, 101))
    correct = sum(int(r["top"][0]["label"]) == int(y) for r, y in zip(rows, labels))
    assert correct >= 95, correct
    assert set(rows[0]["latency_ms"]) == {"capture_age", "preprocess", "inference", "postprocess"}
    err = capsys.readouterr().err
    assert "frames read 100, classified 100, dropped 0, corrupt 0, reconnects 0" in err
    cap = cv2.VideoCapture(str(tmp_path / "annotated.avi"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 100
    size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    assert size == (512, 512), size  # the 64x64 frames scaled up 8x for a readable overlay (issue #31)


@pytest.mark.parametrize(
    ("runtime", "threads"), [("onnxruntime", "intra_op_num_threads"), ("openvino", "INFERENCE_NUM_THREADS"), ("litert", None)]
)
def test_classify_json_report_names_how_each_runtime_ran(lenet_artifacts, digits_video, runtime, threads, capsys):
    """The --json report describes the runtime as it ran: read while it is open (onnxruntime's once raised
    AttributeError here, reading a closed session; OpenVINO's came back empty)."""
    video, _ = digits_video
    code = main(["classify", str(lenet_artifacts), "--runtime", runtime, "--threads", "2", "--source", f"file:{video}",
                 "--max-frames", "20", "--json"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    report = json.loads(out)
    assert report["runtime"]["runtime"] == runtime and report["classified"] == 20
    pinning = report["runtime"]["pinning"]
    assert pinning["threads"] == 2 and pinning["streams"] == 1
    if threads:
        assert str(pinning["how"][threads]) == "2"


def test_colour_order_survives_the_video_path(tmp_path):
    """A model that names the dominant RGB channel: red frames must come out 'red' (BGR/RGB never swapped)."""
    import keras

    from edgecnn.host.convert.api import convert
    from edgecnn.host.data.video import write_video

    inp = keras.Input((16, 16, 3))
    x = keras.layers.GlobalAveragePooling2D()(inp)
    dense = keras.layers.Dense(3, activation="softmax")
    model = keras.Model(inp, dense(x))
    dense.set_weights([np.eye(3, dtype=np.float32) * 20, np.zeros(3, np.float32)])
    model.save(tmp_path / "colour.keras")
    (tmp_path / "labels.txt").write_text("red\ngreen\nblue\n")
    from edgecnn.preprocess import PreprocessSpec

    PreprocessSpec.unit(16).save(tmp_path / "preprocess.json")
    s = convert(tmp_path / "colour.keras", "host", precisions=["tflite/fp32", "onnx/fp32"], out=tmp_path / "art")
    assert s.ok
    rgb_frames = [np.full((32, 32, 3), c, np.uint8) for c in ([220, 10, 10], [10, 220, 10], [10, 10, 220])]
    write_video(rgb_frames, tmp_path / "rgb.avi", size=(32, 32), source_order="RGB")
    from edgecnn.runtime import Classifier

    for art in ("tflite-fp32", "onnx-fp32"):
        clf = Classifier(tmp_path / "art" / art)
        with Capture(open_source(f"file:{tmp_path / 'rgb.avi'}")) as cap:
            got = []
            run_loop(clf, cap, [], on_prediction=lambda f, p: got.append(p.label))
        assert got == ["red", "green", "blue"], art


def test_frame_normalisation():
    assert normalise_frame(np.zeros((4, 4), np.uint8)).shape == (4, 4, 3)
    bgra = np.zeros((4, 4, 4), np.uint8)
    bgra[..., 0] = 255
    assert normalise_frame(bgra)[0, 0].tolist() == [255, 0, 0]
    assert normalise_frame(np.full((4, 4, 3), 65535, np.uint16)).max() == 255
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[..., 0] = 9
    assert normalise_frame(rgb, order="RGB")[0, 0].tolist() == [0, 0, 9]
    with pytest.raises(StreamError, match="unsupported frame dtype float32"):
        normalise_frame(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(StreamError, match="unsupported frame shape"):
        normalise_frame(np.zeros((4, 4, 2), np.uint8))


def test_source_uri_errors(tmp_path):
    with pytest.raises(UnknownNameError, match=r"unknown source scheme 'ftp:' \(supported: 0 \(camera index\)"):
        open_source("ftp:stuff")
    with pytest.raises(StreamError, match="video file not found"):
        open_source("file:/nonexistent.mp4")
    with pytest.raises(StreamError, match="camera device /dev/video99 does not exist"):
        open_source("v4l2:///dev/video99")
    with pytest.raises(StreamError, match="not a file, folder, camera index or URI"):
        open_source(str(tmp_path / "missing"))
    assert type(open_source("synthetic:?fps=5")).__name__ == "SyntheticSource"


def test_image_folder_with_corrupt_file(tmp_path):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((8, 8, 3), i * 50, np.uint8))
    (tmp_path / "1b.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    with Capture(open_source(str(tmp_path))) as cap:
        frames = []
        while True:
            try:
                frames.append(cap.get())
            except StopIteration:
                break
    assert len(frames) == 3 and cap.stats.corrupt == 1
    assert cap.stats.errors[0] == f"corrupt image {tmp_path / '1b.png'}: truncated PNG (no IEND chunk)"


@pytest.mark.serial
def test_silent_server_open_times_out():
    with SilentServer() as srv:
        t0 = time.monotonic()
        with pytest.raises(StreamError, match=r"no answer from 127.0.0.1:\d+ within 1 s \(--open-timeout\)"):
            open_source(srv.url, SourceOptions(open_timeout=1.0, read_timeout=1.0)).open()
        assert time.monotonic() - t0 <= 1.0 + 0.5


@pytest.mark.serial  # a real-time bound, like its RTSP twin: alone, or a loaded worker hands out a late frame
def test_mjpeg_stall_is_detected_and_stream_resumes():
    read_timeout = 1.0
    with MJPEGServer(fps=20, stall_after=15, stall=3.0) as srv:
        cap = Capture(open_source(srv.url, SourceOptions(1.0, read_timeout)), backoff=(0.3, 2.0)).start()
        got = []
        t_end = time.monotonic() + 6
        while time.monotonic() < t_end:
            f = cap.get(0.3)
            if f is not None:
                got.append((time.monotonic(), f))
        cap.stop()
    stall = srv.stall_started
    assert stall is not None and srv.resumed_at is not None
    detected = [t for t, msg in cap.stats.events if "read failed" in msg]
    assert detected and detected[0] - stall <= read_timeout + 0.5
    assert srv.resumed_at - detected[0] <= 0.3 + 2.0  # first backoff + 2 s
    indices = [f.index for _, f in got]
    assert indices == sorted(set(indices))  # no frame handed out twice
    during = [t for t, _ in got if stall + 0.1 < t < detected[0]]
    assert during == []  # nothing emitted during the gap
    after = [t for t, _ in got if t > srv.resumed_at]
    assert len(after) >= 20 and cap.stats.reconnects == 1


@pytest.mark.serial
@pytest.mark.slow
def test_stale_frame_bound_with_slow_model():
    """30 fps source, a model slowed to 5 Hz: every classified frame is at most 2 intervals + 1 inference old."""
    interval, infer = 1 / 30, 0.2

    class SlowClassifier:
        def classify(self, image, source_order="BGR"):
            from edgecnn.runtime.classifier import Prediction

            idx = frame_index(image)
            time.sleep(infer)
            return Prediction([("x", 1.0)], np.ones(1), {"inference": infer * 1e3, "index": idx})

    src = open_source("synthetic:?fps=30&size=32x24")
    ages, newest_seen = [], []
    with Capture(src) as cap:

        def check(frame, pred):
            ages.append(time.monotonic() - frame.t_capture)
            newest_seen.append(src.index - 1 - pred.timings_ms["index"])

        report = run_loop(SlowClassifier(), cap, [], duration=8, on_prediction=check)
    assert 32 <= report["classified"] <= 42  # 40 at 5 Hz
    assert max(ages) <= 2 * interval + infer + 0.05  # 50 ms for a garbage collection or a virtual machine's pause
    assert report["dropped"] >= report["frames_read"] - report["classified"] - 2
    assert report["frames_read"] >= 216  # 240 at 30 fps


def test_stop_event_ends_loop_cleanly(lenet_artifacts):
    from edgecnn.runtime import Classifier

    clf = Classifier(lenet_artifacts / "tflite-fp32")
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    with Capture(open_source("synthetic:?fps=50&size=32x32")) as cap:
        report = run_loop(clf, cap, [], stop=stop)
    assert 1 <= report["classified"] <= 40 and report["corrupt"] == 0  # 25 at 50 fps; a loaded worker gets fewer
    assert not [t for t in threading.enumerate() if t.name == "edgecnn-capture"]


def test_web_sink_serves_page_state_and_mjpeg(lenet_artifacts):
    import urllib.request

    from edgecnn.runtime import Classifier
    from edgecnn.stream.web import WebSink

    sink = WebSink("http://127.0.0.1:0")
    clf = Classifier(lenet_artifacts / "tflite-fp32")
    with Capture(open_source("synthetic:?fps=30&size=64x64&frames=30")) as cap:
        run_loop(clf, cap, [sink])
    base = f"http://127.0.0.1:{sink.port}"
    page = urllib.request.urlopen(base + "/", timeout=5).read().decode()
    assert "edgecnn live" in page and "/stream.mjpg" in page
    state = json.loads(urllib.request.urlopen(base + "/state.json", timeout=5).read())
    assert state["frame"] == 30 and state["top"][0]["label"] in [str(i) for i in range(10)]
    cap = cv2.VideoCapture(
        base + "/stream.mjpg", cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 10000, cv2.CAP_PROP_READ_TIMEOUT_MSEC, 10000]
    )
    ok, frame = cap.read()
    cap.release()
    sink.close()
    assert ok and frame.shape == (64, 64, 3)


def test_classify_cli_bad_inputs(lenet_artifacts, tmp_path, capsys):
    assert main(["classify", str(lenet_artifacts), "--source", "file:/nope.mp4", "--max-frames", "1"]) == 1
    assert "video file not found" in capsys.readouterr().err
    assert main(["classify", str(tmp_path), "--source", "synthetic:", "--max-frames", "1"]) == 1
    assert "holds no edgecnn artifact" in capsys.readouterr().err
    assert main(["classify", str(lenet_artifacts), "--source", "synthetic:", "--sink", "bogus:x", "--max-frames", "1"]) == 1
    assert "unknown sink scheme 'bogus:' (supported: jsonl:PATH" in capsys.readouterr().err


def test_sigterm_stops_classify_cleanly_with_final_line(lenet_artifacts):
    import signal
    import subprocess

    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edgecnn",
            "classify",
            str(lenet_artifacts / "tflite-fp32"),
            "--source",
            "synthetic:?fps=30&size=32x32",
            "--sink",
            "jsonl:-",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.extend(proc.stdout), daemon=True)
    reader.start()
    until(lambda: len(out) >= 10 or proc.poll() is not None, "ten predictions on stdout", timeout=60)
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=20)[1]
    reader.join(timeout=5)
    assert proc.returncode == 0, err
    assert len(out) >= 10 and all(json.loads(line)["top"] for line in out)
    final = err.strip().splitlines()[-1]
    assert final.startswith("frames read ") and "classified" in final and "dropped" in final and "inference p50" in final


@pytest.mark.serial  # the 0.9 s bound is about the program; on a shared core the interpreter's exit alone can pass it
@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_a_signal_ends_classify_at_once_and_it_names_what_it_runs(lenet_artifacts, digits_video, sig):
    """Issue #31: Ctrl-C and SIGTERM took 1.5-1.7 s to end classify on a slow source (the loop waited 0.5 s for a
    frame without looking at the stop event, then 1 s for the reader thread inside its read); now about 0.25 s here.
    The bound is generous for a loaded machine. Without -v, classify still says which artifact and runtime it runs."""
    import signal
    import subprocess

    video, _ = digits_video
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgecnn", "classify", str(lenet_artifacts), "--source", f"file:{video}?live=1&loop=1&fps=1"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    lines: list[tuple[float, str]] = []
    reader = threading.Thread(target=lambda: lines.extend((time.monotonic(), ln) for ln in proc.stderr), daemon=True)
    reader.start()
    deadline = time.monotonic() + 60
    while not any("artifact " in ln for _, ln in lines) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(2.2)  # classifying: the reader thread is waiting for the next frame most of the time
    t0 = time.monotonic()
    proc.send_signal(getattr(signal, sig))
    proc.wait(timeout=20)
    took = time.monotonic() - t0
    reader.join(timeout=5)
    err = [ln.rstrip() for _, ln in lines]
    assert proc.returncode == 0, err
    assert took < 0.9, f"{sig}: exit took {took:.2f} s"
    pattern = rf"\[classify\] artifact {lenet_artifacts.name}/(\w+)-(\w+) \(\1/\2\) with (litert|onnxruntime|openvino) \S+"
    assert re.fullmatch(pattern + r".* on CPU, \d+ threads.*", err[0]), err  # the host profile's choice, named
    assert err[-1].startswith("frames read ") and err[-1].endswith(f"stopped by {sig}"), err


def test_classify_health_log_lines(lenet_artifacts, tmp_path, capsys):
    health = tmp_path / "health.jsonl"
    src = "synthetic:?fps=50&size=32x32"
    args = ["classify", str(lenet_artifacts / "tflite-fp32"), "--source", src, "--duration", "2.6", "--device", "host"]
    assert main([*args, "--health", str(health), "--health-every", "0.5"]) == 0
    lines = [json.loads(ln) for ln in health.read_text().splitlines()]
    assert 4 <= len(lines) <= 7, lines  # one every 0.5 s (5), and the last one when the run ends, saying why
    assert lines[-1]["ended_by"] == "duration" and not any("ended_by" in ln for ln in lines[:-1])
    assert lines[-1]["classified"] >= lines[-2]["classified"]
    first, last = lines[0], lines[-2]
    assert 0.5 <= first["t_s"] <= 1.5 and last["classified"] > first["classified"] > 0  # due at 0.5 s, written by a frame
    assert last["rss_mb"] > 10 and last["threads"] >= 2 and last["fds"] >= 3
    assert 10 <= last["fps"] <= 55  # a 50 fps source: about 50 alone, less when a loaded worker drops frames
    assert set(last["latency_ms"]) == {"total", "inference", "capture_age"}
    lat = last["latency_ms"]["total"]
    assert 0 < lat["p50"] <= lat["p99"] and lat["n"] >= 5
    assert last["buffers"]["capture_pending"] in (0, 1) and last["buffers"]["stage_window"] == last["classified"]
    capsys.readouterr()
    assert main([*args, "--health", str(health), "--health-every", "0"]) == 2  # a usage error, before any work
    assert "argument --health-every: must be a number above 0 and at most 86,400; received '0'" in capsys.readouterr().err
    assert main([*args, "--health", str(tmp_path / "no" / "h.jsonl")]) == 1
    assert f"cannot write the health log {tmp_path / 'no' / 'h.jsonl'}: No such file or directory" in capsys.readouterr().err


def test_live_page_plays_a_file_at_its_rate_and_serves_until_ctrl_c(lenet_artifacts, tmp_path, digits_test_split):
    from live_page import LivePage

    from edgecnn.host.data.video import write_video

    video = write_video(digits_test_split.images[:20], tmp_path / "d.avi", size=(64, 64), fps=10)
    page = LivePage(lenet_artifacts / "tflite-fp32", f"file:{video}")
    try:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", page.url)
        html = urllib.request.urlopen(page.url, timeout=5).read().decode()
        assert "<title>edgecnn live</title>" in html and "/stream.mjpg" in html
        page.wait_for_line(r"the source ended after 20 frames; the live page stays up: Ctrl-C to stop", timeout=60)
        played = time.monotonic() - page.started
        assert played > 1.9, f"20 frames at 10 FPS took {played:.2f} s: not paced"  # 2 s of video, plus start-up
        time.sleep(1.5)  # nobody pressed Ctrl-C: still serving, the last frame and the end on the page
        state = page.state()
        assert state["frame"] == 20 and state["ended"] is True and (state["width"], state["height"]) == (64, 64)
        assert page.proc.poll() is None
    finally:
        rc, last = page.stop()
    assert rc == 0 and "classified 20," in last and last.endswith("stopped by SIGINT"), page.lines


def test_live_page_address_names_the_machine_when_serving_on_all_interfaces(lenet_artifacts):
    from edgecnn.stream.web import WebSink, machine_address

    sink = WebSink("http://:0")
    try:
        line = sink.announce()[0]
        address = machine_address()
        if address:  # a machine with a route out: its own address first, then this machine's loopback
            assert line == f"live page: http://{address}:{sink.port}/ (on this machine: http://localhost:{sink.port}/)"
            assert not address.startswith("127.")
        else:
            assert line == f"live page: http://localhost:{sink.port}/"
        assert urllib.request.urlopen(f"http://localhost:{sink.port}/state.json", timeout=5).read() == b"{}"
    finally:
        sink.close()


def test_rough_edges_a_new_user_met_each_get_their_own_line(lenet_run, lenet_artifacts, tmp_path, capsys):
    """Issue #31: a camera by its /dev path, a missing video, a run or a .keras where an artifact goes, a list of
    precisions."""
    cases = [
        (["classify", str(lenet_artifacts), "--source", "/dev/video9"], "camera device /dev/video9 does not exist"),
        (["classify", str(lenet_artifacts), "--source", str(tmp_path / "clip.mp4")], f"video file not found: {tmp_path / 'clip.mp4'}"),
        (["classify", str(lenet_run), "--source", "synthetic:"], "is a training run, not an artifact: convert it first"),
        (["classify", str(lenet_run / "model.keras"), "--source", "synthetic:"], "is a Keras model file, not an artifact: convert it first"),
        (["convert", str(lenet_run), "--device", "host", "--precision", "int8,fp32", "--out", str(tmp_path / "o")],
         "hint: repeat --precision for each: --precision int8 --precision fp32"),
    ]
    for argv, expected in cases:
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert expected in err and err.count("error: ") == 1, (argv, err)
    assert not (tmp_path / "o").exists()
