"""bf16 against f32 in OpenVINO (issue #28): the same IR, its inference precision the only difference.

    python tools/bench_inference_precision.py [--size 224] [--alpha 1.0] [--rounds 3] [--out bench-out/inference-precision]

MobileNetV2 (seeded random weights, 10 classes) converted to openvino/fp32 and openvino/bf16 with the parity gate
against Keras on 200 crops of scikit-image's photos (agreement and max |dp|; accuracy means nothing for random
weights). Latency: invoke() p50 at 1 thread, unchanged input, interleaved ABBA rounds (tools/bench_int8_recovery.py),
the median of the rounds. Prints the precision each compiled model really ran in: on a CPU without BF16 both are
f32 and the ratio is about 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).parent))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--alpha", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("bench-out/inference-precision"))
    args = ap.parse_args()
    import keras
    from bench_convert import photo_crops
    from bench_int8_recovery import _time_interleaved

    from edgecnn.devices import cpu_features, host_facts
    from edgecnn.host.convert.api import convert
    from edgecnn.host.models import create_model, get_spec
    from edgecnn.runtime import Classifier

    args.out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(0)
    m = create_model("mobilenet_v2", num_classes=10, input_size=args.size, alpha=args.alpha)
    src = args.out / "model"
    src.mkdir(exist_ok=True)
    m.save(src / "model.keras")
    get_spec("mobilenet_v2").preprocess_spec((args.size, args.size), 3).save(src / "preprocess.json")
    (src / "labels.txt").write_text("\n".join(f"c{i}" for i in range(10)) + "\n")
    crops = photo_crops(args.out / "crops", size=args.size)
    summary = convert(src / "model.keras", "host", out=args.out / "art", precisions=["openvino/fp32", "openvino/bf16"],
                      data=str(crops), gate=False, force=True)
    rows = {str(r.precision): r for r in summary.rows}
    paths = {p: args.out / "art" / f"openvino-{p}" for p in ("fp32", "bf16")}
    used = {}
    for p, path in paths.items():
        with Classifier(path, runtime="openvino", allow_fallback=False) as clf:
            used[p] = clf.describe()["inference_precision"]
    p50 = _time_interleaved(paths, args.rounds)
    bf16 = cpu_features(host_facts(query_gpu=False).flags)["bf16"]
    result = {
        "model": f"MobileNetV2 alpha {args.alpha} {args.size}px", "cpu_bf16": bf16, "ran_in": used,
        "p50_ms": p50, "bf16_over_f32": p50["bf16"] / p50["fp32"],
        "parity": {p: {"agreement": rows[p].parity.agreement, "max_abs_dp": rows[p].parity.max_abs_dp} for p in rows},
    }
    (args.out / "result.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    print(f"openvino bf16/f32 invoke p50: {result['bf16_over_f32']:.2f} ({p50['bf16']:.3f} / {p50['fp32']:.3f} ms, "
          f"ran in {used['bf16']} / {used['fp32']}); bf16 agreement {result['parity']['bf16']['agreement']:.2%}, "
          f"max |dp| {result['parity']['bf16']['max_abs_dp']:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
