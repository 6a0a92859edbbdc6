"""Conversion figures (issue #4): MobileNetV2 int8 size ratio, 6-artifact conversion time, int8 speed-up.

    python tools/bench_convert.py [--out bench-out/convert] [--classes 1000 10] [--seconds 3]

MobileNetV2 alpha 1.0 at 224 px is built with seeded random weights (sizes do not depend on the
values); calibration and parity use 200 crops of scikit-image's real sample photos. The int8 conversions are
repeated with --int8-weights per-tensor for their sizes. Parity is
reported as agreement with Keras (accuracy is meaningless for random weights, so the gate is off).
Latency is edgecnn's own `invoke` p50 on this host.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def photo_crops(folder: Path, n: int = 200, size: int = 224, seed: int = 0) -> Path:
    import cv2
    import numpy as np
    from skimage import data

    photos = [
        data.astronaut(),
        data.coffee(),
        data.chelsea(),
        data.rocket(),
        data.immunohistochemistry(),
        data.hubble_deep_field(),
    ]
    rng = np.random.default_rng(seed)
    for i in range(n):
        img = photos[i % len(photos)]
        h, w = img.shape[:2]
        s = int(rng.integers(min(h, w) // 3, min(h, w)))
        y, x = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
        crop = cv2.resize(img[y : y + s, x : x + s], (size, size))
        d = folder / f"c{i % 5}"
        d.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(d / f"{i}.png"), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
    return folder


def make_model(out: Path, classes: int, size: int = 224, alpha: float = 1.0) -> Path:
    import keras

    from edgecnn.host.models import create_model, get_spec

    keras.utils.set_random_seed(0)
    m = create_model("mobilenet_v2", num_classes=classes, input_size=size, **({"alpha": alpha} if alpha != 1.0 else {}))
    out.mkdir(parents=True, exist_ok=True)
    m.save(out / "model.keras")
    get_spec("mobilenet_v2").preprocess_spec((size, size), 3).save(out / "preprocess.json")
    (out / "labels.txt").write_text("\n".join(f"c{i}" for i in range(classes)) + "\n")
    return out / "model.keras"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench-out/convert")
    ap.add_argument("--classes", type=int, nargs="+", default=[1000, 10])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--vs-stock", action="store_true", help="only: edgecnn int8 against each toolchain's stock int8")
    ap.add_argument("--alpha", type=float, default=1.0, help="--vs-stock: MobileNetV2 width (1.0; 0.35 for a quick run)")
    ap.add_argument("--size", type=int, default=224, help="--vs-stock: input size (224; 96 for a quick run)")
    ap.add_argument("--rounds", type=int, default=3, help="--vs-stock: interleaved timing rounds")
    ap.add_argument("--threads", type=int, default=2, help="--vs-stock: threads in every runtime")
    ap.add_argument("--ort-variants", action="store_true", help="--vs-stock: also ONNX Runtime int8 variants (why)")
    ap.add_argument("--reuse", action="store_true", help="--vs-stock: time the models the last run built")
    args = ap.parse_args()
    if args.vs_stock:
        sys.path.insert(0, str(Path(__file__).parent))
        from stock_int8 import vs_stock

        return vs_stock(args)
    from edgecnn.formats import runtime_for
    from edgecnn.host.convert.api import convert
    from edgecnn.host.lab.benchmark import profile_in_child

    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    photos = photo_crops(out / "photos")
    results = {}
    for classes in args.classes:
        model = make_model(out / f"mnv2-{classes}", classes)
        t0 = time.time()
        s = convert(model, "host", data=str(photos), out=out / f"art-{classes}", gate=False, force=True)
        seconds = time.time() - t0
        rows = {f"{r.format}/{r.precision}": r for r in s.rows}
        res = {"convert_seconds_6_artifacts_with_parity_on_200": round(seconds, 1), "artifacts": {}}
        for key, r in rows.items():
            lat = check_ms = None
            if r.path:  # in a child process, as on a device: no TensorFlow threads beside the runtime
                (out / "profiles").mkdir(exist_ok=True)
                target = out / "profiles" / f"{classes}-{r.format}-{r.precision}.json"
                prof = profile_in_child(r.path, runtime_for(r.format), runs=50, seconds=args.seconds, out=target)
                lat = prof["invoke"]["p50"]
                check_ms = round(prof["self_check"]["seconds"] * 1e3, 1)  # what classify and profile spend before starting
            res["artifacts"][key] = {
                "status": r.status,
                "seconds": r.seconds,
                "size_mb": r.size_mb,
                "size_vs_fp32": r.size_ratio,
                "agreement": r.parity.agreement if r.parity else None,
                "invoke_p50_ms": lat,
                "self_check_ms": check_ms,
                "self_check_kb": round(Path(r.path, "selfcheck.npz").stat().st_size / 1024, 1) if r.path else None,
            }
        # the same int8 conversions with one weight scale per tensor (--int8-weights per-tensor), sizes only
        pt = convert(
            model,
            "host",
            precisions=["tflite/int8", "onnx/int8", "openvino/int8"],
            data=str(photos),
            out=out / f"art-{classes}-per-tensor",
            gate=False,
            force=True,
            int8_weights="per-tensor",
        )
        for r in pt.rows:
            fp32 = res["artifacts"].get(f"{r.format}/fp32", {}).get("size_mb")
            if r.size_mb and fp32:
                res[f"{r.format}_int8_per_tensor_size_vs_fp32"] = r.size_mb / fp32
        for fmt in ("tflite", "onnx", "openvino"):
            a, b = res["artifacts"].get(f"{fmt}/fp32"), res["artifacts"].get(f"{fmt}/int8")
            if a and b and a["invoke_p50_ms"] and b["invoke_p50_ms"]:
                res[f"{fmt}_int8_speedup_vs_fp32"] = round(a["invoke_p50_ms"] / b["invoke_p50_ms"], 2)
        results[f"mobilenet_v2_1.0_224_{classes}_classes"] = res
        print(json.dumps({f"{classes} classes": res}, indent=2), flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    for k, r in results.items():
        if k.endswith("_1000_classes"):
            pc, pt = r["artifacts"]["tflite/int8"]["size_vs_fp32"], r.get("tflite_int8_per_tensor_size_vs_fp32")
            print(f"tflite int8 size vs fp32 at 1000 classes: {pc:.3f} per channel (default), {pt:.3f} per tensor; target 0.27")
            print(f"6 artifacts with parity on 200 images: {r['convert_seconds_6_artifacts_with_parity_on_200']} s; target 60")
            checks = {k: (a["self_check_ms"], a["self_check_kb"]) for k, a in r["artifacts"].items() if a["self_check_ms"]}
            print("self-check at start (ms, KB stored): " + ", ".join(f"{k} {ms} ms {kb} KB" for k, (ms, kb) in checks.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
