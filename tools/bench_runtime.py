"""Runtime figures (issue #5): Classifier overhead vs a bare runtime loop, and classify's pipelining.

    python tools/bench_runtime.py ARTIFACT_DIR [--seconds 5] [--video-size 1280x720]

ARTIFACT_DIR is a conversion output folder (e.g. bench-out/convert/art-10 from tools/bench_convert.py,
MobileNetV2 1.0 224). Overhead: `Classifier` inference p50 against the same backend session in a bare
loop doing the same work per run (write a fresh input, run, read the output). Pipelining: `classify`'s
threaded capture against a naive single-thread read -> classify loop on the same video and model.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np


def bare_loop(backend, xs, seconds: float, between=None) -> list[float]:
    name = backend.name
    times: list[float] = []
    t_end = time.perf_counter() + seconds
    i = 0
    if name == "litert":
        it, ii, oi = backend._interp, backend._in_idx, backend._out_idx

        def step(x):
            it.set_tensor(ii, x)
            it.invoke()
            return it.get_tensor(oi)
    elif name == "onnxruntime":
        sess, inn, outn = backend._sess, backend._in_name, backend._out_name

        def step(x):
            return sess.run([outn], {inn: x})[0]
    else:
        req = backend._request

        def step(x):
            return req.infer({0: x}, share_inputs=True)[0]

    while i < 200 or time.perf_counter() < t_end:
        x = xs[i % len(xs)]
        if between is not None:
            between(i)  # untimed: what a camera loop does between inferences (preprocessing the next frame)
        t0 = time.perf_counter()
        step(x)
        times.append((time.perf_counter() - t0) * 1e3)
        i += 1
    return times


def overhead(art: Path, seconds: float, threads: int) -> dict:
    from edgecnn.runtime import Classifier

    clf = Classifier(art, threads=threads)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8) for _ in range(8)]
    for f in frames[:5]:
        clf.classify(f)
    ours, t_end, i = [], time.perf_counter() + seconds, 0
    while i < 200 or time.perf_counter() < t_end:
        ours.append(clf.classify(frames[i % 8]).timings_ms["inference"])
        i += 1
    lo, hi = clf.spec.value_range()
    xs = [clf.backend.quantize_input(rng.uniform(lo, hi, (1, *clf.spec.input_shape)).astype(np.float32)) for _ in range(8)]
    from edgecnn.preprocess import preprocess

    buf = np.empty(clf.spec.input_shape, np.float32)

    def prep(i):
        buf[...] = preprocess(frames[i % 8], clf.spec)

    bare = bare_loop(clf.backend, xs, seconds)  # back to back: the runtime's best case (warm caches)
    bare_cam = bare_loop(clf.backend, xs, seconds, between=prep)  # like for like: a frame is preprocessed between runs
    clf.close()
    a, b, c = statistics.median(ours), statistics.median(bare), statistics.median(bare_cam)
    return {
        "artifact": art.name,
        "classifier_inference_p50_ms": a,
        "bare_loop_p50_ms": b,
        "bare_loop_with_preprocess_p50_ms": c,
        "ratio_like_for_like": a / c,
        "ratio_vs_back_to_back": a / b,
    }


def make_video(path: Path, size: tuple[int, int], n: int = 150) -> Path:
    import cv2
    from skimage import data

    from edgecnn.data.video import write_video

    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    imgs = [cv2.resize(photos[i % 4], size) for i in range(n)]
    return write_video(imgs, path, fps=30, size=size, source_order="RGB")


def pipelining(art: Path, video: Path, seconds: float, threads: int) -> dict:
    import cv2

    from edgecnn.runtime import Classifier
    from edgecnn.stream.capture import Capture
    from edgecnn.stream.loop import run_loop
    from edgecnn.stream.sources import open_source

    clf = Classifier(art, threads=threads)
    cap = cv2.VideoCapture(str(video))
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        ok, frame = cap.read()
        if not ok:
            cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            continue
        clf.classify(frame)
        n += 1
    naive_fps = n / (time.perf_counter() - t0)
    cap.release()
    with Capture(open_source(f"file:{video}?live=1&loop=1")) as c:
        rep = run_loop(clf, c, [], duration=seconds)
    infer_p50 = rep["latency_ms"]["inference"]["p50"]
    clf.close()
    return {
        "naive_fps": naive_fps,
        "classify_fps": rep["fps"],
        "speedup": rep["fps"] / naive_fps,
        "inference_p50_ms": infer_p50,
        "classify_vs_inference_bound": rep["fps"] / (1000 / infer_p50),
        "dropped": rep["dropped"],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("artifacts")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="bench-out/runtime")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    res = {"overhead": [], "pipelining": {}}
    for name in ("tflite-fp32", "onnx-fp32", "openvino-fp32", "tflite-int8", "onnx-int8", "openvino-int8"):
        art = Path(args.artifacts) / name
        if art.exists():
            r = overhead(art, args.seconds, args.threads)
            res["overhead"].append(r)
            print(
                f"overhead {name:14s}: Classifier {r['classifier_inference_p50_ms']:.3f} ms vs bare loop "
                f"{r['bare_loop_with_preprocess_p50_ms']:.3f} ms with the same preprocessing between runs -> "
                f"{r['ratio_like_for_like']:.3f}x (bare back-to-back {r['bare_loop_p50_ms']:.3f} ms -> {r['ratio_vs_back_to_back']:.3f}x)",
                flush=True,
            )
    for label, size, threads in (
        ("decode ~ inference (720p video, 1 inference thread)", (1280, 720), 1),
        ("inference-bound (320x240 video, 1 inference thread)", (320, 240), 1),
    ):
        video = make_video(out / f"video-{size[0]}x{size[1]}.avi", size)
        for name in ("tflite-fp32", "onnx-fp32", "openvino-fp32"):
            art = Path(args.artifacts) / name
            if not art.exists():
                continue
            r = pipelining(art, video, args.seconds, threads)
            res["pipelining"][f"{label} / {name}"] = r
            print(
                f"pipelining, {label}, {name}: classify {r['classify_fps']:.1f} FPS vs naive {r['naive_fps']:.1f} FPS = "
                f"{r['speedup']:.2f}x; {r['classify_vs_inference_bound']:.2f} of 1/inference p50 ({r['inference_p50_ms']:.2f} ms)",
                flush=True,
            )
    (out / "results.json").write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
