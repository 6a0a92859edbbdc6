"""Offline transfer demonstration (issue #3): pretrain on digits 0-4, transfer to 5-9 with 10 images per class,
against the same architecture from scratch on the same 50 images, over 3 seeds; and the cached-features speed-up.

    python tools/bench_transfer.py [--out bench-out/transfer] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]


def accuracy(run: Path) -> float:
    return json.loads((run / "metrics.json").read_text())["accuracy"]


def epoch_seconds(run: Path, stage: str) -> tuple[float, list[dict]]:
    import csv

    rows = [r for r in csv.DictReader(open(run / "history.csv")) if r["stage"] == stage]
    return statistics.median(float(r["epoch_seconds"]) for r in rows), rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench-out/transfer")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument(
        "--cache-size",
        type=int,
        nargs="+",
        default=[64, 96],
        help="input sizes for the cached-features comparison (the base is fully convolutional)",
    )
    ap.add_argument("--cache-only", action="store_true", help="skip the 3-seed comparison")
    args = ap.parse_args()
    from edgecnn.host.train.recipe import load_recipe
    from edgecnn.host.train.trainer import train

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pre = out / "digits04-pretrain"
    if not (pre / "model.keras").exists():
        train(load_recipe(REPO / "recipes/digits04-pretrain.yaml"), pre, quiet=True, force=True)
    results = {"pretrain_accuracy_0_4": accuracy(pre), "seeds": {}}
    print(f"pretrained on digits 0-4: test accuracy {results['pretrain_accuracy_0_4']:.4f}", flush=True)
    tr = load_recipe(REPO / "recipes/digits59-transfer.yaml")
    tr = dataclasses.replace(tr, transfer=dataclasses.replace(tr.transfer, base=str(pre / "model.keras")))
    sc = load_recipe(REPO / "recipes/digits59-scratch.yaml")
    for seed in [] if args.cache_only else args.seeds:
        a = accuracy(train(dataclasses.replace(tr, seed=seed), out / f"transfer-s{seed}", quiet=True, force=True))
        b = accuracy(train(dataclasses.replace(sc, seed=seed), out / f"scratch-s{seed}", quiet=True, force=True))
        results["seeds"][seed] = {"transfer": a, "scratch": b, "gain_points": (a - b) * 100}
        print(f"seed {seed}: transfer {a * 100:.1f}%  scratch {b * 100:.1f}%  gain {(a - b) * 100:+.1f} points", flush=True)
    if results["seeds"]:
        gains = [v["gain_points"] for v in results["seeds"].values()]
        results["mean_gain_points"] = statistics.mean(gains)
        print(f"mean gain over {len(gains)} seeds: {results['mean_gain_points']:+.1f} points (target >= +8)")

    # cached features: the same head stage with the frozen base run every epoch vs once
    from edgecnn.host.train.recipe import Augmentation

    results["cache_features"] = {}
    for size in args.cache_size:
        full = dataclasses.replace(
            tr,
            max_per_class=None,
            name=f"cache-off-{size}",
            augmentation=Augmentation(),
            model=dataclasses.replace(tr.model, input_size=size),
            transfer=dataclasses.replace(tr.transfer, head_epochs=15, fine_tune=None, cache_features=False),
        )
        full = dataclasses.replace(full, training=dataclasses.replace(full.training, batch_size=32, early_stopping=None))
        off = train(full, out / f"cache-off-{size}", quiet=True, force=True)
        on = train(
            dataclasses.replace(full, name=f"cache-on-{size}", transfer=dataclasses.replace(full.transfer, cache_features=True)),
            out / f"cache-on-{size}",
            quiet=True,
            force=True,
        )
        t_off, _ = epoch_seconds(off, "head")
        t_on, rows = epoch_seconds(on, "head_cached")
        c = {
            "input_size": size,
            "epoch_seconds_frozen_base": t_off,
            "epoch_seconds_cached": t_on,
            "speedup": t_off / t_on,
            "feature_extraction_seconds": float(rows[0]["feature_extraction_seconds"]),
            "accuracy_frozen_base": accuracy(off),
            "accuracy_cached": accuracy(on),
        }
        results["cache_features"][size] = c
        print(
            f"cached features at {size} px: {c['speedup']:.1f}x faster per epoch ({t_off:.2f} s -> {t_on:.3f} s, one-off extraction "
            f"{c['feature_extraction_seconds']:.2f} s); head accuracy {c['accuracy_frozen_base'] * 100:.1f}% vs {c['accuracy_cached'] * 100:.1f}%",
            flush=True,
        )
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
