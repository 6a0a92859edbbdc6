"""int8 recovery (issue #18): plain int8 vs --keep-float auto vs int16x8, per format, on the outlier model.

    python tools/bench_int8_recovery.py [--out bench-out/int8-recovery] [--rounds 8]

tools/outlier_model.py trains a digit CNN whose conv2 has two activation channels 256x wider than the rest (a
function-preserving rescaling; the float model is unchanged). Every format's plain int8 collapses on it. This
converts fp32, plain int8 (gate off, to measure it), int8 with --keep-float auto, and int16x8 (TFLite, ONNX),
then times them in one process, interleaved (ABC...CBA rounds, each a block of invoke() calls on an unchanged
input: p50 per block, the median of blocks), so that the machine's drift hits every artifact alike. It prints,
per format: the accuracy drop of plain int8 and of the recovered artifact, the float layers kept, and the size and
latency of the recovered (and int16x8) artifact as ratios to plain int8 and to fp32.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).parent))


def _time_interleaved(paths: dict[str, Path], rounds: int, block: int = 200) -> dict[str, float]:
    """invoke() p50 (ms) per artifact, interleaved ABC..CBA, the median of each round's block p50."""
    import numpy as np

    from edgecnn.formats import runtime_for
    from edgecnn.manifest import Manifest
    from edgecnn.runtime.base import open_backend

    backends = {}
    for name, path in paths.items():
        m = Manifest.load(path)
        b = open_backend(runtime_for(m.format), m.file_path("model"), threads=1)
        b.__enter__()
        b.set_input(np.random.default_rng(0).uniform(0, 1, [1, *b.input.shape[1:]]).astype(np.float32))
        for _ in range(20):
            b.invoke()
        backends[name] = b
    blocks: dict[str, list[float]] = {name: [] for name in paths}
    order = list(paths)
    for r in range(rounds):
        for name in order if r % 2 == 0 else order[::-1]:
            b, times = backends[name], []
            for _ in range(block):
                t0 = time.perf_counter()
                b.invoke()
                times.append((time.perf_counter() - t0) * 1e3)
            blocks[name].append(statistics.median(times))
    for b in backends.values():
        b.close()
    return {name: statistics.median(v) for name, v in blocks.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench-out/int8-recovery")
    ap.add_argument("--rounds", type=int, default=8)
    args = ap.parse_args()
    from outlier_model import build

    from edgecnn.host.convert.api import convert

    out = Path(args.out)
    model_dir = out / "model"
    if not (model_dir / "model.keras").is_file():
        print(json.dumps(build(model_dir)), file=sys.stderr)
    common = {"data": str(model_dir / "heldout"), "calibration": str(model_dir / "calibration"), "force": True}
    keras = str(model_dir / "model.keras")
    t0 = time.perf_counter()
    plain = convert(keras, "host", precisions=["fp32", "int8"], out=out / "plain", gate=False, **common)
    recovered = convert(keras, "host", precisions=["int8"], out=out / "recovered", keep_float="auto", **common)
    wide = convert(keras, "host", precisions=["tflite/int16x8", "onnx/int16x8"], out=out / "int16x8", **common)
    convert_s = time.perf_counter() - t0
    rows = {(r.format, "plain" if r.precision == "int8" else r.precision): r for r in plain.rows}
    rows |= {(r.format, "recovered"): r for r in recovered.rows}
    rows |= {(r.format, "int16x8"): r for r in wide.rows}
    paths = {f"{f}/{k}": Path(r.path) for (f, k), r in rows.items() if r.path}
    latency = _time_interleaved(paths, args.rounds)
    print(f"outlier model, {plain.rows[0].parity.n} held-out digits; conversions {convert_s:.0f} s; latency: invoke p50, "
          f"1 thread, unchanged input, {args.rounds} interleaved rounds")  # fmt: skip
    head = (
        "| format | plain int8 drop | recovered drop | float layers | size vs int8 | size vs fp32 | p50 vs int8 | p50 vs fp32 |"
    )
    print(head)
    print("|---|---|---|---|---|---|---|---|")
    result = {}
    for fmt in ("tflite", "onnx", "openvino"):
        p, r, f = rows.get((fmt, "plain")), rows.get((fmt, "recovered")), rows.get((fmt, "fp32"))
        if not (p and r and f and r.path):
            print(f"| {fmt} | not recovered: {r.notes if r else '-'} |")
            continue
        lp, lr, lf = latency[f"{fmt}/plain"], latency[f"{fmt}/recovered"], latency[f"{fmt}/fp32"]
        line = {
            "plain_drop": p.parity.accuracy_drop_points,
            "recovered_drop": r.parity.accuracy_drop_points,
            "float_layers": r.keep_float,
            "size_vs_int8": r.size_mb / p.size_mb,
            "size_vs_fp32": r.size_mb / f.size_mb,
            "p50_vs_int8": lr / lp,
            "p50_vs_fp32": lr / lf,
            "p50_ms": {"fp32": lf, "int8": lp, "recovered": lr},
        }
        result[fmt] = line
        print(
            f"| {fmt} | {line['plain_drop']:.2f} | {line['recovered_drop']:.2f} | {', '.join(r.keep_float)} | "
            f"{line['size_vs_int8']:.2f}x | {line['size_vs_fp32']:.2f}x | {line['p50_vs_int8']:.2f}x | {line['p50_vs_fp32']:.2f}x |"
        )
    print("\nint16x8 (int16 activations, int8 weights):\n")
    print("| format | drop | size vs int8 | p50 ms | p50 vs int8 | p50 vs fp32 |")
    print("|---|---|---|---|---|---|")
    for fmt in ("tflite", "onnx"):
        w, p = rows.get((fmt, "int16x8")), rows.get((fmt, "plain"))
        if not (w and w.path and p):
            continue
        lw = latency[f"{fmt}/int16x8"]
        result[f"{fmt}/int16x8"] = {
            "drop": w.parity.accuracy_drop_points,
            "p50_ms": lw,
            "p50_vs_int8": lw / latency[f"{fmt}/plain"],
        }
        print(
            f"| {fmt} | {w.parity.accuracy_drop_points:.2f} | {w.size_mb / p.size_mb:.2f}x | {lw:.3f} | "
            f"{lw / latency[f'{fmt}/plain']:.1f}x | {lw / latency[f'{fmt}/fp32']:.1f}x |"
        )
    (out / "result.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
