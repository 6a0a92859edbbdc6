"""Measure ``edgecnn serve`` as it runs: state-change latency to MQTT, CPU and RSS, and RSS over a soak.

    python tools/serve_bench.py ARTIFACT [--fps 15] [--seconds 60] [--hold 20] [--debounce 3] [--loop] [--json F]

Writes a 320x240 MJPG video of digits from the bundled set (each held ``--hold`` frames, with a one-frame flip in the
middle of every hold, the digit in a 240x240 region of interest), starts a mosquitto of its own on a loopback port,
runs ``edgecnn serve ARTIFACT --source VIDEO --roi 40,0,240,240 --mqtt ... --http ... --health ...`` as a process
(the video plays at ``--fps``, its recorded rate; ``--loop`` repeats it until ``--seconds``), subscribes to its
events, scrapes /metrics every 5 s, and samples the process's CPU and RSS every second (psutil). Prints one JSON:

- ``latency_ms.from_class_change``: from the capture of the first frame of a new class to the arrival of the MQTT
  event (includes the debounce: ``debounce - 1`` frame intervals); ``latency_ms.from_decision``: from the capture of
  the frame that completed the debounce to the event's arrival (the service's own delay). p50 and p90.
- ``changes``: state changes seen and expected (every class change, never a one-frame flip).
- ``cpu_percent`` (of one core) and ``rss_mb`` of the service process (mean, max; RSS at the start and the end).

A model that does not classify the digits surely (an untrained one, for CPU and memory only) gets a video of
whatever digits and no latency figures.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np

W, H, SIDE, X0 = 320, 240, 240, 40  # the frame, and the digit's square region at (X0, 0)


def frame_of(img: np.ndarray) -> np.ndarray:
    gray = img if img.ndim == 2 else img[:, :, 0]
    canvas = np.zeros((H, W, 3), np.uint8)
    canvas[:, X0 : X0 + SIDE] = cv2.cvtColor(cv2.resize(gray, (SIDE, SIDE), interpolation=cv2.INTER_NEAREST), cv2.COLOR_GRAY2BGR)
    return canvas


def digit_frames(artifact: str) -> tuple[dict[str, np.ndarray], bool]:
    """label -> a frame the model classifies right with p >= 0.9 after JPEG (and True), or any digit per label (False)."""
    from edgecnn.host.data import load_dataset
    from edgecnn.runtime import Classifier

    ds = load_dataset("bundled:digits")
    best: dict[str, tuple[float, np.ndarray]] = {}
    anyone: dict[str, np.ndarray] = {}
    with Classifier(artifact) as clf:
        for img, y in zip(ds.images[:600], ds.labels[:600]):
            label = clf.labels[int(y)] if int(y) < len(clf.labels) else str(int(y))
            frame = frame_of(img)
            anyone.setdefault(label, frame)
            jpg = cv2.imdecode(cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 95])[1], cv2.IMREAD_COLOR)
            pred = clf.classify(jpg[:, X0 : X0 + SIDE])
            if pred.label == label and pred.confidence >= 0.9 and pred.confidence > best.get(label, (0, None))[0]:
                best[label] = (pred.confidence, frame)
    sure = {k: v[1] for k, v in best.items()}
    return (sure, True) if len(sure) >= 3 else (anyone, False)


def plan_video(path: Path, frames: dict[str, np.ndarray], fps: float, hold: int, seconds: float) -> list[str]:
    """Write the video; returns the label of every frame (index 0 = capture index 1)."""
    labels = sorted(frames)
    order: list[str] = []
    i = 0
    while len(order) < fps * seconds:
        label, other = labels[i % len(labels)], labels[(i + 1) % len(labels)]
        run = [label] * hold
        run[hold // 2] = other if hold >= 6 else label  # a one-frame flip the debounce must hold
        order += run
        i += 1
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (W, H))
    for label in order:
        writer.write(frames[label])
    writer.release()
    return order


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_broker(folder: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    conf = folder / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("mosquitto did not start")


def subscribe(port: int, events: list) -> object:
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.on_connect = lambda c, *a: c.subscribe("edgecnn/bench/+/event", qos=1)
    client.on_message = lambda c, u, m: events.append((time.time(), json.loads(m.payload)))
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def sample(pid: int, stop: threading.Event, out: list, http: str) -> None:
    import psutil

    p = psutil.Process(pid)
    p.cpu_percent(None)
    n = 0
    while not stop.wait(1.0):
        try:
            with p.oneshot():
                out.append((time.monotonic(), p.cpu_percent(None), p.memory_info().rss / 1e6))
        except psutil.NoSuchProcess:
            return
        n += 1
        if n % 5 == 0:
            try:
                urllib.request.urlopen(f"{http}/metrics", timeout=2).read()
            except OSError:
                pass


def first_frame(order: list[str], frame: int, state: str) -> int:
    """The capture index where the run of ``state`` that ``frame`` belongs to began (the video may loop)."""
    i = frame
    while i > 1 and order[(i - 2) % len(order)] == state:
        i -= 1
    return i


def expected_changes(hold: int, debounce: int, frames: int) -> int:
    """Every hold is a new class (its one-frame flip never counts): the holds whose first ``debounce`` frames were
    classified."""
    return sum(1 for start in range(0, frames, hold) if start + debounce <= frames)


def pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


def summarise(args, order, events, samples, sure, report_err, health) -> dict:
    fps = args.fps
    change_ms = [(t - (e["captured"] - (e["frame"] - first_frame(order, e["frame"], e["state"])) / fps)) * 1e3 for t, e in events]
    decide_ms = [(t - e["captured"]) * 1e3 for t, e in events]
    warm = [s for s in samples if s[0] - samples[0][0] >= 3] if samples else []
    lines = [json.loads(x) for x in health.read_text().splitlines()] if health.exists() else []
    classified = lines[-1]["classified"] if lines else 0
    return {
        "artifact": args.artifact,
        "fps_target": fps,
        "seconds": args.seconds,
        "frames_classified": classified,
        "changes": {"seen": len(events), "expected": expected_changes(args.hold, args.debounce, classified) if sure else None},
        "latency_ms": {
            "from_class_change": {"p50": pct(change_ms, 50), "p90": pct(change_ms, 90)},
            "from_decision": {"p50": pct(decide_ms, 50), "p90": pct(decide_ms, 90)},
        }
        if sure
        else None,
        "cpu_percent": {"p50": pct([s[1] for s in warm], 50), "p90": pct([s[1] for s in warm], 90)},
        "rss_mb": {
            "start": round(warm[0][2], 1) if warm else None,
            "end": round(warm[-1][2], 1) if warm else None,
            "max": round(max(s[2] for s in warm), 1) if warm else None,
        },
        "health": [[ln["t_s"], ln["rss_mb"], ln["buffers"]["stage_window"]] for ln in lines],  # s, MB, latency window
        "exit": report_err,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("artifact")
    ap.add_argument("--fps", type=float, default=15.0)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--hold", type=int, default=20, help="frames per class (default 20)")
    ap.add_argument("--debounce", type=int, default=3)
    ap.add_argument("--loop", action="store_true", help="a short video repeated for --seconds (a soak)")
    ap.add_argument("--health-every", type=float, default=5.0)
    ap.add_argument("--json", help="also write the result here")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    frames, sure = digit_frames(args.artifact)
    order = plan_video(tmp / "video.avi", frames, args.fps, args.hold, 30 if args.loop else args.seconds)
    broker, port = start_broker(tmp)
    events: list = []
    sub = subscribe(port, events)
    http_port = free_port()
    health = tmp / "health.jsonl"
    cmd = [sys.executable, "-m", "edgecnn", "serve", args.artifact, "--source", str(tmp / "video.avi"), "--name", "bench"]
    cmd += ["--roi", f"{X0},0,{SIDE},{SIDE}", "--debounce", str(args.debounce), "--mqtt", f"mqtt://127.0.0.1:{port}"]
    cmd += ["--http", f"127.0.0.1:{http_port}", "--health", str(health), "--health-every", str(args.health_every)]
    cmd += ["--loop"] if args.loop else []
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    samples: list = []
    stop = threading.Event()
    sampler = threading.Thread(target=sample, args=(proc.pid, stop, samples, f"http://127.0.0.1:{http_port}"), daemon=True)
    sampler.start()
    try:
        proc.wait(timeout=args.seconds + 5) if not args.loop else time.sleep(args.seconds)
    except subprocess.TimeoutExpired:
        pass
    if proc.poll() is None:
        proc.terminate()
    err = proc.communicate(timeout=10)[1]
    stop.set()
    time.sleep(0.5)
    sub.disconnect()
    broker.terminate()
    result = summarise(args, order, events, samples, sure, f"{proc.returncode}: {err.strip().splitlines()[-1:]}", health)
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text)
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
