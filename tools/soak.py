"""Soak test (issue #8, figure 7): `edgecnn classify` on a looping video for 30 minutes, a reconnect every 5.

    python tools/soak.py [--minutes 30] [--warmup 5] [--reconnect-every 5] [--out bench-out/soak] [--artifact DIR]

A loopback MJPEG server plays a video of held-out digits in a loop at 30 fps and drops the connection every
--reconnect-every minutes; `edgecnn classify` (a child process, as on a device) reads it with a JSONL sink and
the web sink (with a client attached), writing --health lines every 10 s; this tool also samples the child with
psutil. After the warm-up it checks: RSS growth < 1 MB per 10 min (least-squares slope), thread and descriptor
counts constant, p99 latency drift < 10 % (first vs last 5-minute block of per-frame latencies), every buffer
at or under its bound, one reconnect per drop. Writes soak.json, soak.md and soak.png; exits 1 on a miss.
Without --artifact it trains and converts LeNet-5 first (about 1 min).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "stream"))

BOUNDS = {"capture_pending": 1, "stage_window": 10_000, "error_log": 20, "event_log": 100}


def video_frames(out: Path, n: int = 300) -> tuple[Path, list[bytes]]:
    """A real video file of held-out digits, decoded back into JPEG frames for the server to loop."""
    import cv2

    from edgecnn.host.data import load_dataset
    from edgecnn.host.data.video import write_video

    test = load_dataset("bundled:digits").split(validation=0.15, test=0.15, seed=0)[2]
    video = write_video(test.images[:n], out / "digits_loop.avi", fps=30, size=(64, 64))
    cap = cv2.VideoCapture(str(video))
    frames = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        frames.append(cv2.imencode(".jpg", img)[1].tobytes())
    cap.release()
    return video, frames


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def web_client(url: str, stop: threading.Event, counts: dict[str, int]) -> None:
    """Keep one viewer on the web sink's MJPEG stream for the whole run (reconnecting if it drops)."""
    while not stop.is_set():
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                while not stop.is_set():
                    if not r.read(65536):
                        break
                    counts["bytes"] += 65536
        except OSError:
            stop.wait(1.0)


def block_p99(series: list[tuple[float, float]], t0: float, t1: float) -> float | None:
    """p99 of the (time, ms) values with t0 <= time < t1; None with fewer than 50."""
    v = [ms for t, ms in series if t0 <= t < t1]
    return round(float(np.percentile(v, 99)), 3) if len(v) >= 50 else None


def analyse(
    health: list[dict], samples: list[dict], preds: list[dict], warmup_s: float, block_s: float, drops: int, reconnects: int
) -> dict[str, Any]:
    after = [h for h in health if h["t_s"] >= warmup_s and "ended_by" not in h]  # the periodic records
    smp = [s for s in samples if s["t_s"] >= warmup_s]
    res: dict[str, Any] = {"records_after_warmup": len(after), "samples_after_warmup": len(smp)}
    if len(after) < 3:
        res["error"] = "too few health records after the warm-up"
        return res
    t = np.array([h["t_s"] for h in after])
    rss = np.array([h["rss_mb"] for h in after])
    slope = float(np.polyfit(t, rss, 1)[0]) * 600.0  # MB per 10 min
    res["rss_mb"] = {
        "start": rss[0],
        "end": rss[-1],
        "min": float(rss.min()),
        "max": float(rss.max()),
        "slope_mb_per_10min": round(slope, 3),
    }
    if len(smp) >= 3:
        st = np.array([s["t_s"] for s in smp])
        srss = np.array([s["rss_mb"] for s in smp])
        res["rss_mb"]["psutil_slope_mb_per_10min"] = round(float(np.polyfit(st, srss, 1)[0]) * 600.0, 3)
    for k in ("threads", "fds"):
        # counted from inside (health line; psutil's own /proc read holds one more fd) and from outside (this tool):
        # each must stay constant
        inside = sorted({h[k] for h in after if h[k] is not None})
        outside = sorted({s[k] for s in smp if s[k] is not None})
        res[k] = {"inside": inside, "outside": outside, "constant": len(inside) <= 1 and len(outside) <= 1}
    res["buffers_max"] = {k: max(h["buffers"][k] for h in health) for k in BOUNDS}
    t_start = after[0]["time"]
    t_end = health[-1]["time"]
    stages = ("preprocess", "inference", "postprocess")
    series = {k: [(p["time"], p["latency_ms"].get(k, 0.0)) for p in preds] for k in ("inference",)}
    series["total"] = [(p["time"], sum(p["latency_ms"].get(k, 0.0) for k in stages)) for p in preds]
    blocks = {"first_block": (t_start, t_start + block_s), "last_block": (t_end - block_s, t_end)}
    res["p99_ms"] = {name: {k: block_p99(v, *span) for k, v in series.items()} for name, span in blocks.items()}
    p99_first, p99_last = res["p99_ms"]["first_block"]["total"], res["p99_ms"]["last_block"]["total"]
    if p99_first and p99_last:
        res["p99_drift_pct"] = round(100.0 * (p99_last - p99_first) / p99_first, 1)
    res["reconnects"] = reconnects
    res["server_drops"] = drops
    res["classified"] = health[-1]["classified"]
    res["fps_median"] = float(np.median([h["fps"] for h in after]))
    res["checks"] = {
        "rss_slope_below_1mb_per_10min": abs(slope) < 1.0,
        "threads_constant": res["threads"]["constant"],
        "fds_constant": res["fds"]["constant"],
        "p99_drift_below_10pct": res.get("p99_drift_pct") is not None and abs(res["p99_drift_pct"]) < 10.0,
        "buffers_bounded": all(res["buffers_max"][k] <= b for k, b in BOUNDS.items()),
        "every_drop_reconnected": res["reconnects"] >= drops >= 1,
    }
    res["passed"] = all(res["checks"].values())
    return res


def plot(health: list[dict], samples: list[dict], drops_t: list[float], warmup_s: float, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0 = health[0]["time"] - health[0]["t_s"]
    tm = [h["t_s"] / 60 for h in health]
    fig, ax = plt.subplots(2, 2, figsize=(12, 7), sharex=True)
    ax[0, 0].plot(tm, [h["rss_mb"] for h in health], label="RSS (health line)")
    ax[0, 0].plot([s["t_s"] / 60 for s in samples], [s["rss_mb"] for s in samples], ".", ms=3, label="RSS (psutil, outside)")
    ax[0, 0].set_ylabel("MB")
    ax[0, 1].step(tm, [h["threads"] for h in health], where="post", label="threads")
    ax[0, 1].step(tm, [h["fds"] for h in health], where="post", label="file descriptors")
    ax[1, 0].plot(tm, [h["latency_ms"].get("total", {}).get("p50", np.nan) for h in health], label="p50 (10 s window)")
    ax[1, 0].plot(tm, [h["latency_ms"].get("total", {}).get("p99", np.nan) for h in health], label="p99 (10 s window)")
    ax[1, 0].set_ylabel("preprocess + inference + postprocess, ms")
    ax[1, 1].plot(tm, [h["fps"] for h in health], label="classified FPS")
    for a in ax.flat:
        a.axvspan(0, warmup_s / 60, color="0.9", label="warm-up")
        for d in drops_t:
            a.axvline((d - t0) / 60, color="r", lw=0.8, ls=":")
        a.legend(fontsize=8, loc="best")
        a.grid(alpha=0.3)
    for a in ax[1]:
        a.set_xlabel("minutes (red: server dropped the connection)")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def ensure_artifact(out: Path) -> Path:
    from edgecnn.host.convert.api import convert
    from edgecnn.host.train.recipe import load_recipe
    from edgecnn.host.train.trainer import train

    run = out / "lenet5-run"
    if not (run / "model.keras").is_file():
        train(load_recipe(REPO / "recipes/lenet5-digits.yaml"), run, quiet=True)
    art = out / "lenet5-host"
    if not (art / "summary.json").is_file():
        convert(run, "host", precisions=["tflite/fp32"], out=art, force=True)
    return art / "tflite-fp32"


def run_soak(artifact: Path, out: Path, *, minutes: float, warmup: float, reconnect_every: float, every: float = 10.0) -> dict:
    from mjpeg_server import MJPEGServer

    out.mkdir(parents=True, exist_ok=True)
    video, frames = video_frames(out)
    duration = minutes * 60
    web_port = free_port()
    health_path, preds_path = out / "health.jsonl", out / "predictions.jsonl"
    samples: list[dict] = []
    with MJPEGServer(fps=30, frames=frames, drop_every=reconnect_every * 60) as srv:
        cmd = [
            sys.executable, "-m", "edgecnn", "classify", str(artifact), "--device", "host", "--source", srv.url,
            "--duration", str(duration), "--health", str(health_path), "--health-every", str(every),
            "--sink", f"jsonl:{preds_path}", "--sink", f"http://127.0.0.1:{web_port}", "--read-timeout", "2", "--json",
        ]  # fmt: skip
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        import psutil

        ps = psutil.Process(proc.pid)
        stop, counts = threading.Event(), {"bytes": 0}
        time.sleep(3)
        viewer = threading.Thread(target=web_client, args=(f"http://127.0.0.1:{web_port}/stream.mjpg", stop, counts), daemon=True)
        viewer.start()
        while proc.poll() is None:
            try:
                with ps.oneshot():
                    samples.append(
                        {
                            "time": time.time(),
                            "rss_mb": ps.memory_info().rss / 1e6,
                            "threads": ps.num_threads(),
                            "fds": ps.num_fds(),
                        }
                    )
            except psutil.Error:
                break
            time.sleep(every)
        stdout, stderr = proc.communicate()
        stop.set()
        drops_t = list(srv.drops)
    if proc.returncode != 0:
        raise SystemExit(f"classify failed ({proc.returncode}): {stderr.strip()[-2000:]}")
    report = json.loads(stdout[stdout.index("{") : stdout.rindex("}") + 1])
    health = [json.loads(ln) for ln in health_path.read_text().splitlines()]
    preds = [json.loads(ln) for ln in preds_path.read_text().splitlines()]
    # on the child's clock (its health lines say when it started); only while it classified, not while it shut down
    start, end = health[0]["time"] - health[0]["t_s"], health[-1]["time"]
    samples = [s | {"t_s": s["time"] - start} for s in samples if s["time"] <= end]
    drops_t = [d for d in drops_t if d < end - 2.0]  # a drop in the last seconds cannot be reconnected before the end
    res = analyse(
        health,
        samples,
        preds,
        warmup * 60,
        5 * 60 if minutes >= 15 else minutes * 60 / 4,
        len(drops_t),
        report["reconnects"],
    )
    res["samples"] = [{k: round(v, 3) for k, v in s.items()} for s in samples]
    res["server_drop_times"] = drops_t
    res |= {
        "minutes": minutes,
        "warmup_minutes": warmup,
        "reconnect_every_minutes": reconnect_every,
        "video": str(video),
        "video_frames": len(frames),
        "web_viewer_bytes": counts["bytes"],
        "classify_report": {k: report[k] for k in ("frames_read", "classified", "dropped", "corrupt", "reconnects", "fps")},
        "runtime": report["runtime"].get("runtime"),
    }
    plot(
        health,
        samples,
        drops_t,
        warmup * 60,
        out / "soak.png",
        f"edgecnn classify soak: {minutes:g} min, a reconnect every {reconnect_every:g} min",
    )
    (out / "soak.json").write_text(json.dumps(res, indent=2, default=float))
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--warmup", type=float, default=5)
    ap.add_argument("--reconnect-every", type=float, default=5)
    ap.add_argument("--artifact", type=Path, help="an artifact folder (default: LeNet-5 TFLite fp32, trained and converted here)")
    ap.add_argument("--out", type=Path, default=REPO / "bench-out" / "soak")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    artifact = args.artifact or ensure_artifact(args.out)
    res = run_soak(artifact, args.out, minutes=args.minutes, warmup=args.warmup, reconnect_every=args.reconnect_every)
    print(json.dumps(res, indent=2, default=float))
    print(f"\nplot: {args.out / 'soak.png'}")
    return 0 if res.get("passed") else 1


if __name__ == "__main__":
    sys.exit(main())
