"""Quantisation-aware fine-tuning (issue #29) against post-training int8 and float layers, per model and format.

    python tools/bench_qat.py [--out bench-out/qat] [--rounds 8] [--models outliers,lenet5,mobilenet_v2]

Models: the outlier model (tools/outlier_model.py; fine-tuned on its 300 calibration digits, judged on its 360
held-out digits), the LeNet-5 run (recipes/lenet5-digits.yaml) and a MobileNetV2 alpha 0.35 transfer run at 32 px
(recipes/digits04-pretrain.yaml then digits59-transfer.yaml at 32 px and fewer epochs: 10 images per class of digits
5-9 on a base pretrained on 0-4). Each is converted three ways: plain int8 (gate off, to measure it), int8 with
--keep-float auto, and int8 with --qat; then the plain and QAT artifacts are timed in one process, interleaved
(tools/bench_int8_recovery.py's ABBA rounds of invoke() blocks on an unchanged input, 1 thread). It prints one table
per model: float, PTQ int8, keep-float and QAT int8 accuracy, the fine-tune's time, sizes and the QAT/PTQ latency
ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).parent))
REPO = Path(__file__).resolve().parents[1]


def _outliers(out: Path) -> tuple[str, dict]:
    from outlier_model import build

    d = out / "outliers-model"
    if not (d / "model.keras").is_file():
        build(d)
    cal = str(d / "calibration")
    return str(d / "model.keras"), {"data": str(d / "heldout"), "calibration": cal, "qat_data": cal}


def _train(recipe_text: str, out: Path) -> Path:
    from edgecnn.host.train.recipe import load_recipe
    from edgecnn.host.train.trainer import train

    if not (out / "model.keras").is_file():
        path = out.with_suffix(".yaml")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(recipe_text)
        train(load_recipe(path), out, quiet=True, force=True)
    return out


def _lenet(out: Path) -> tuple[str, dict]:
    return str(_train((REPO / "recipes" / "lenet5-digits.yaml").read_text(), out / "lenet5-run")), {}


def _mobilenet(out: Path) -> tuple[str, dict]:
    model = "model: {name: mobilenet_v2, input_size: 32, channels: 1, options: {alpha: 0.35, bn_momentum: 0.9, dropout: 0.2}}"
    base = _train(
        "name: digits04-pretrain-32\ndata: bundled:digits\nclasses: ['0', '1', '2', '3', '4']\n" + model + "\nseed: 0\n"
        "training: {optimizer: adam, learning_rate: 0.002, batch_size: 32, epochs: 12, early_stopping: {patience: 4}}\n"
        "augmentation: {translation: 0.08, rotation: 0.03}\n",
        out / "mnv2-pretrain",
    )
    run = _train(
        "name: digits59-transfer-32\ndata: bundled:digits\nclasses: ['5', '6', '7', '8', '9']\nmax_per_class: 10\n"
        + model + "\nseed: 0\ntraining: {optimizer: adam, batch_size: 10, early_stopping: {patience: 10}}\n"
        f"transfer:\n  base: {base / 'model.keras'}\n  head_epochs: 20\n  head_learning_rate: 0.003\n"
        "  fine_tune: {layers: 80, learning_rate: 0.0003, epochs: 20}\n",
        out / "mnv2-transfer",
    )  # fmt: skip
    return str(run), {}


MODELS = {"outliers": _outliers, "lenet5": _lenet, "mobilenet_v2": _mobilenet}


def _bench(name: str, out: Path, rounds: int) -> dict:
    from bench_int8_recovery import _time_interleaved

    from edgecnn.host.convert.api import convert

    model, extra = MODELS[name](out)
    common = {k: v for k, v in extra.items() if k != "qat_data"} | {"force": True}
    plain = convert(model, "host", precisions=["fp32", "int8"], out=out / f"{name}-plain", gate=False, **common)
    floats = convert(model, "host", precisions=["int8"], out=out / f"{name}-keep-float", keep_float="auto", **common)
    qat = convert(model, "host", precisions=["int8"], out=out / f"{name}-qat", qat=True, qat_data=extra.get("qat_data"), **common)
    rows = {(r.format, "ptq" if r.precision == "int8" else r.precision): r for r in plain.rows}
    rows |= {(r.format, "keep"): r for r in floats.rows} | {(r.format, "qat"): r for r in qat.rows}
    paths = {f"{f}/{k}": Path(r.path) for (f, k), r in rows.items() if r.path and k in ("ptq", "qat")}
    latency = _time_interleaved(paths, rounds)
    return {"rows": rows, "latency": latency, "qat": qat}


def _acc(row) -> str:
    return f"{row.parity.artifact_accuracy * 100:.2f}" if row is not None and row.parity else "-"


def _table(name: str, b: dict) -> list[str]:
    rows, lat = b["rows"], b["latency"]
    lines = [
        f"\n{name}: held-out {b['qat'].rows[0].parity.n if b['qat'].rows[0].parity else '?'} images\n",
        "| format | float | PTQ int8 | keep-float (layers) | QAT int8 | fine-tune | size fp32 / PTQ / QAT (MB) | p50 QAT / PTQ |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for fmt in ("tflite", "onnx", "openvino"):
        f, p, k, q = (rows.get((fmt, s)) for s in ("fp32", "ptq", "keep", "qat"))
        if q is None or p is None:
            continue
        keep = f"{_acc(k)} ({', '.join(k.keep_float) or 'none needed'})" if k and k.status == "ok" else "failed"
        info = json.loads((Path(q.path) / "edgecnn.json").read_text())["extra"]["qat"] if q.path else {}
        tune = f"{info.get('epochs')} ep, {info.get('seconds')} s" if info else "-"
        sizes = f"{f.size_mb:.3f} / {p.size_mb:.3f} / {q.size_mb:.3f}" if f and q.size_mb else "-"
        ratio = f"{lat[f'{fmt}/qat'] / lat[f'{fmt}/ptq']:.2f}x" if f"{fmt}/qat" in lat and f"{fmt}/ptq" in lat else "-"
        keras_acc = f"{p.parity.keras_accuracy * 100:.2f}" if p.parity else "-"
        lines.append(f"| {fmt} | {keras_acc} | {_acc(p)} | {keep} | {_acc(q)} | {tune} | {sizes} | {ratio} |")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench-out/qat")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--models", default=",".join(MODELS))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lines, result = [], {}
    for name in args.models.split(","):
        t0 = time.perf_counter()
        b = _bench(name, out, args.rounds)
        lines += _table(name, b) + [f"\n(all three conversions and the timing: {time.perf_counter() - t0:.0f} s)"]
        result[name] = {"latency_ms": b["latency"], "table": _table(name, b)}
        print("\n".join(_table(name, b)), flush=True)
    (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "result.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
