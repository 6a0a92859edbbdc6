"""Profiling fidelity (issue #6): edgecnn profile's `invoke` p50 against the reference tools, run side by side.

    python tools/bench_fidelity.py [--out bench-out/fidelity] [--threads 2] [--seconds 5]

TFLite: `litert-benchmark` (ships with ai-edge-litert); OpenVINO: `benchmark_app -hint latency -api sync`;
ONNX: a bare onnxruntime loop on the same session options. Models: LeNet-5 (trained on digits),
SqueezeNet 1.1 and MobileNetV2 1.0 at 224 px (seeded random weights, 10 classes), fp32 and int8.
Also the roofline estimate's error on this host, leave-one-out: each model is predicted with the
efficiency factor calibrated on the other models.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def build(out: Path, photos: Path) -> dict[str, Path]:
    import keras

    sys.path.insert(0, str(REPO / "tools"))
    from bench_convert import photo_crops

    from edgecnn.convert.api import convert
    from edgecnn.models import create_model, get_spec
    from edgecnn.train.recipe import load_recipe
    from edgecnn.train.trainer import train

    photo_crops(photos, n=100)
    arts = {}
    run = out / "lenet5-run"
    if not run.exists():
        train(load_recipe(REPO / "recipes/lenet5-digits.yaml"), run, quiet=True)
    targets = ["tflite/fp32", "tflite/int8", "onnx/fp32", "onnx/int8", "openvino/fp32", "openvino/int8"]
    arts["lenet5"] = out / "art-lenet5"
    if not (arts["lenet5"] / "summary.json").exists():
        convert(run, "host", precisions=targets, out=out / "art-lenet5", force=True, gate=False)
    for name in ("squeezenet1_1", "mobilenet_v2"):
        arts[name] = out / f"art-{name}"
        if (arts[name] / "summary.json").exists():
            continue
        keras.utils.set_random_seed(0)
        d = out / f"{name}-model"
        d.mkdir(parents=True, exist_ok=True)
        create_model(name, num_classes=10, input_size=224).save(d / "model.keras")
        get_spec(name).preprocess_spec((224, 224), 3).save(d / "preprocess.json")
        (d / "labels.txt").write_text("\n".join(f"c{i}" for i in range(10)) + "\n")
        s = convert(
            d / "model.keras",
            "host",
            precisions=targets,
            calibration=str(photos),
            out=out / f"art-{name}",
            force=True,
            gate=False,
        )
        arts[name] = s.out
    return arts


def edgecnn_p50(path: Path, runtime: str, threads: int, seconds: float) -> float:
    cmd = [
        str(BIN / "edgecnn"),
        "profile",
        str(path),
        "--runtime",
        runtime,
        "--threads",
        str(threads),
        "--runs",
        "200",
        "--min-seconds",
        str(seconds),
        "--warmup",
        "20",
        "--json",
        "--quiet",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=900)
    return json.loads(r.stdout)["invoke"]["p50"]


def litert_p50(model: Path, threads: int, runs: int) -> float:
    res = model.parent / "litert-benchmark.json"
    subprocess.run(
        [
            str(BIN / "litert-benchmark"),
            "--model",
            str(model),
            "--num_runs",
            str(runs),
            "--warmup_runs",
            "20",
            "--num_threads",
            str(threads),
            "--result_json",
            str(res),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=900,
    )
    return json.loads(res.read_text())["latency"]["median_ms"]


def benchmark_app_p50(model: Path, seconds: float) -> float:
    from edgecnn.manifest import Manifest

    shape = [1, *Manifest.load(model.parent, verify=False).input["shape"][1:]]  # the IR's batch is dynamic
    cmd = [
        str(BIN / "benchmark_app"),
        "-m",
        str(model),
        "-hint",
        "latency",
        "-api",
        "sync",
        "-t",
        str(int(max(seconds, 1))),
        "-shape",
        "[" + ",".join(map(str, shape)) + "]",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=900)
    m = re.search(r"Median:\s*([\d.]+)\s*(ms|us)", r.stdout)
    return float(m.group(1)) / (1000.0 if m.group(2) == "us" else 1.0)


def ort_p50(model: Path, threads: int, seconds: float) -> float:
    import numpy as np
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
    i = sess.get_inputs()[0]
    x = np.random.default_rng(0).uniform(-1, 1, [1, *i.shape[1:]]).astype(np.float32)
    feed = {i.name: x}
    for _ in range(20):
        sess.run(None, feed)
    times, t_end = [], time.perf_counter() + seconds
    while len(times) < 200 or time.perf_counter() < t_end:
        t0 = time.perf_counter()
        sess.run(None, feed)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench-out/fidelity")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    out = Path(args.out)
    arts = build(out, out / "photos")
    rows = []
    for model, folder in arts.items():
        for prec in ("fp32", "int8"):
            for fmt, runtime in (("tflite", "litert"), ("onnx", "onnxruntime"), ("openvino", "openvino")):
                art = folder / f"{fmt}-{prec}"
                if not art.exists():
                    continue
                ours = edgecnn_p50(art, runtime, args.threads, args.seconds)
                mfile = art / {"tflite": "model.tflite", "onnx": "model.onnx", "openvino": "model.xml"}[fmt]
                if fmt == "tflite":
                    ref, tool = (
                        litert_p50(mfile, args.threads, max(200, int(args.seconds * 1000 / max(ours, 0.01)))),
                        "litert-benchmark (median)",
                    )
                elif fmt == "openvino":
                    ref, tool = benchmark_app_p50(mfile, args.seconds), "benchmark_app -hint latency -api sync (median)"
                else:
                    ref, tool = ort_p50(mfile, args.threads, args.seconds), "bare onnxruntime loop (median)"
                rows.append(
                    {
                        "model": model,
                        "format": fmt,
                        "precision": prec,
                        "edgecnn_p50_ms": ours,
                        "reference_p50_ms": ref,
                        "ratio": ours / ref if ref else None,
                        "reference": tool,
                    }
                )
                print(
                    f"{model:14s} {fmt:8s} {prec}: edgecnn {ours:.3f} ms  reference {ref:.3f} ms  ratio {ours / ref:.2f}  ({tool})",
                    flush=True,
                )
    estimate_rows = estimate_error(arts, rows)
    (out / "results.json").write_text(json.dumps({"fidelity": rows, "estimate_error": estimate_rows}, indent=2) + "\n")
    return 0


def estimate_error(arts: dict[str, Path], rows: list[dict]) -> list[dict]:
    from edgecnn.devices import load_profile
    from edgecnn.manifest import Manifest
    from edgecnn.profiling.estimate import roofline_ms

    host = load_profile("host")
    data = {}
    for model, folder in arts.items():
        for prec in ("fp32", "int8"):
            m = Manifest.load(folder / f"tflite-{prec}", verify=False)
            measured = next(
                r["edgecnn_p50_ms"] for r in rows if r["model"] == model and r["format"] == "tflite" and r["precision"] == prec
            )
            data[(model, prec)] = (roofline_ms(m.extra["cost"]["layers"], prec, host), measured)
    out = []
    for (model, prec), (roof, measured) in data.items():
        others = [meas / r for (mo, p), (r, meas) in data.items() if p == prec and mo != model]
        eff = statistics.median(others)
        predicted = roof * eff
        out.append(
            {
                "model": model,
                "precision": prec,
                "measured_ms": measured,
                "predicted_ms": predicted,
                "error": predicted / measured - 1,
            }
        )
        print(
            f"estimate {model:14s} {prec}: predicted {predicted:.3f} ms vs measured {measured:.3f} ms ({(predicted / measured - 1) * 100:+.0f}%)"
        )
    return out


if __name__ == "__main__":
    sys.exit(main())
