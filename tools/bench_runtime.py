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


def bare_step(backend):
    """The same backend session driven directly: write a fresh input, run, read the output."""
    if backend.name == "litert":
        it, ii, oi = backend._interp, backend._in_idx, backend._out_idx

        def step(x):
            it.set_tensor(ii, x)
            it.invoke()
            return it.get_tensor(oi)
    elif backend.name == "onnxruntime":
        sess, inn, outn = backend._sess, backend._in_name, backend._out_name

        def step(x):
            return sess.run([outn], {inn: x})[0]
    else:
        req = backend._request

        def step(x):
            return req.infer({0: x}, share_inputs=True)[0]

    return step


def overhead(art: Path, seconds: float, threads: int) -> dict:
    """Classifier vs bare loop, interleaved in blocks of 25 runs so that clock and cache drift hit all three alike."""
    from edgecnn.preprocess import preprocess
    from edgecnn.runtime import Classifier

    clf = Classifier(art, threads=threads)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8) for _ in range(8)]
    lo, hi = clf.spec.value_range()
    xs = [clf.backend.quantize_input(rng.uniform(lo, hi, (1, *clf.spec.input_shape)).astype(np.float32)) for _ in range(8)]
    step = bare_step(clf.backend)
    buf = np.empty(clf.spec.input_shape, np.float32)
    ours: list[float] = []
    bare: list[float] = []
    bare_cam: list[float] = []
    for f in frames[:5]:
        clf.classify(f)
    i, t_end = 0, time.perf_counter() + 3 * seconds
    while len(ours) < 300 or time.perf_counter() < t_end:
        for _ in range(25):
            ours.append(clf.classify(frames[i % 8]).timings_ms["inference"])
            i += 1
        for _ in range(25):  # like for like: a frame is preprocessed between runs, untimed, as in a camera loop
            buf[...] = preprocess(frames[i % 8], clf.spec)
            t0 = time.perf_counter()
            step(xs[i % 8])
            bare_cam.append((time.perf_counter() - t0) * 1e3)
            i += 1
        for _ in range(25):  # back to back: the runtime's best case (warm caches)
            t0 = time.perf_counter()
            step(xs[i % 8])
            bare.append((time.perf_counter() - t0) * 1e3)
            i += 1
    clf.close()
    a, b, c = statistics.median(ours), statistics.median(bare), statistics.median(bare_cam)
    return {
        "artifact": art.name,
        "runs_each": len(ours),
        "classifier_inference_p50_ms": a,
        "bare_loop_p50_ms": b,
        "bare_loop_with_preprocess_p50_ms": c,
        "ratio_like_for_like": a / c,
        "ratio_vs_back_to_back": a / b,
    }


def make_video(path: Path, size: tuple[int, int], n: int = 150) -> Path:
    import cv2
    from skimage import data

    from edgecnn.host.data.video import write_video

    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    imgs = [cv2.resize(photos[i % 4], size) for i in range(n)]
    return write_video(imgs, path, fps=30, size=size, source_order="RGB")


def decode_ms(video: Path) -> float:
    import cv2

    cap = cv2.VideoCapture(str(video))
    times = []
    while True:
        t0 = time.perf_counter()
        ok, _ = cap.read()
        if not ok:
            break
        times.append((time.perf_counter() - t0) * 1e3)
    cap.release()
    return statistics.median(times[5:])


def inference_ms(art: Path) -> float:
    from edgecnn.runtime import Classifier

    with Classifier(art, threads=1) as clf:
        x = np.zeros((1, *clf.spec.input_shape), np.float32)
        for _ in range(10):
            clf.backend.run(x)
        times = []
        for _ in range(60):
            t0 = time.perf_counter()
            clf.backend.run(x)
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def pipelining(art: Path, video: Path, seconds: float, threads: int, camera_fps: float = 0) -> dict:
    import cv2

    from edgecnn.runtime import Classifier
    from edgecnn.stream.loop import classify_stream
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
    pace = f"&fps={camera_fps:g}" if camera_fps else ""  # a camera delivers at most its frame rate
    rep = classify_stream(clf, open_source(f"file:{video}?live=1&loop=1{pace}"), [], duration=seconds)
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
    # the balanced case: the video size whose decode time is closest to one inference (1 thread)
    infer_ms = inference_ms(Path(args.artifacts) / "tflite-fp32")
    sizes = [(1280, 720), (1920, 1080), (2560, 1440), (3840, 2160)]
    decode = {size: decode_ms(make_video(out / f"video-{size[0]}x{size[1]}.avi", size, n=60)) for size in sizes}
    balanced = min(sizes, key=lambda sz: abs(decode[sz] - infer_ms))
    res["decode_ms"] = {f"{w}x{h}": round(v, 2) for (w, h), v in decode.items()}
    res["inference_ms_1_thread"] = round(infer_ms, 2)
    print(f"decode ms per frame: {res['decode_ms']}; inference (tflite-fp32, 1 thread) {infer_ms:.2f} ms", flush=True)
    cases = (
        (
            f"decode ~ inference ({balanced[0]}x{balanced[1]} video, decode {decode[balanced]:.1f} ms, 1 inference thread)",
            balanced,
            0,
        ),
        ("inference-bound (320x240 video read as fast as it decodes, 1 inference thread)", (320, 240), 0),
        ("inference-bound (320x240 video as a 240 fps camera, 1 inference thread)", (320, 240), 240),
    )
    for label, size, camera_fps in cases:
        video = make_video(out / f"video-{size[0]}x{size[1]}.avi", size, n=60 if size in decode else 150)
        for name in ("tflite-fp32", "onnx-fp32", "openvino-fp32"):
            art = Path(args.artifacts) / name
            if not art.exists():
                continue
            r = pipelining(art, video, args.seconds, 1, camera_fps)
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
