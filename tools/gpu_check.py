"""The desktop-GPU path measured on a machine with an NVIDIA GPU and onnxruntime-gpu: CUDA against the CPU.

    python tools/gpu_check.py ARTIFACT_SET [ARTIFACT_SET ...] [--video V] [--out gpu-out] [--rounds 2] [--seconds 3]

For every ONNX artifact in the sets given:
- parity of CUDA against onnxruntime on the CPU, on the artifact's stored self-check images and 63 random images:
  top-1 agreement and max |dp|, with CUDA's default TF32 convolutions and with them off (use_tf32=0);
- latency: `edgecnn profile --device desktop-gpu` (onnxruntime[CUDA]) against `--runtime onnxruntime --threads N`
  (CPU, every core by default), interleaved CUDA, CPU, CPU, CUDA per round; invoke p50 on an unchanged input and on a fresh
  input per run (as a camera gives), medians over the rounds;
and with --video, `edgecnn classify --device desktop-gpu` on it against the CPU: frames per second and whether
every frame's label is the same. Prints a table; writes OUT/gpu_check.json. Needs no TensorFlow."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _edgecnn(*args: str, timeout: float = 600) -> dict:
    r = subprocess.run([sys.executable, "-m", "edgecnn", *args, "--json"], capture_output=True, text=True,
                       timeout=timeout, cwd=REPO)  # fmt: skip
    if r.returncode != 0:
        raise SystemExit(f"edgecnn {' '.join(args)} failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return json.loads(r.stdout)


def _sessions(model: Path, ort) -> dict:
    """Plain onnxruntime sessions: CPU, CUDA as onnxruntime-gpu defaults it, CUDA with TF32 off."""
    cuda = "CUDAExecutionProvider"
    return {
        "cpu": ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]),
        "cuda": ort.InferenceSession(str(model), providers=[cuda, "CPUExecutionProvider"]),
        "cuda_no_tf32": ort.InferenceSession(str(model), providers=[(cuda, {"use_tf32": 0}), "CPUExecutionProvider"]),
    }


def parity(art: Path) -> dict:
    """CUDA against the CPU on the same preprocessed inputs (the Classifier's own preprocessing, once)."""
    import onnxruntime as ort

    from edgecnn.preprocess import preprocess
    from edgecnn.runtime import Classifier

    clf = Classifier(art, runtime="onnxruntime")
    stored = np.load(art / "selfcheck.npz")["pixels"]
    rng = np.random.default_rng(0)
    images = [*stored, *rng.integers(0, 256, (63, *stored.shape[1:]), dtype=np.uint8)]
    batch = np.stack([preprocess(im, clf.spec, source_order="RGB") for im in images])
    clf.close()
    sessions = _sessions(art / "model.onnx", ort)
    name = sessions["cpu"].get_inputs()[0].name
    dtype = np.float16 if "float16" in sessions["cpu"].get_inputs()[0].type else np.float32
    probs = {k: np.concatenate([s.run(None, {name: x[None].astype(dtype)})[0] for x in batch]).astype(np.float32)
             for k, s in sessions.items()}  # fmt: skip
    out = {"n": len(batch), "providers": sessions["cuda"].get_providers()}
    for k in ("cuda", "cuda_no_tf32"):
        out[k] = {
            "agreement": float((probs[k].argmax(1) == probs["cpu"].argmax(1)).mean()),
            "max_abs_dp": float(np.abs(probs[k] - probs["cpu"]).max()),
        }
    return out


def latency(art: Path, rounds: int, seconds: float, cpu_threads: int) -> dict:
    runs = {"cuda": ["--device", "desktop-gpu"], "cpu": ["--runtime", "onnxruntime", "--threads", str(cpu_threads)]}
    got: dict[str, dict[str, list[float]]] = {k: {"invoke": [], "fresh": []} for k in runs}
    last: dict[str, dict] = {}
    for _ in range(rounds):
        for k in ("cuda", "cpu", "cpu", "cuda"):
            prof = _edgecnn("profile", str(art), *runs[k], "--runs", "200", "--min-seconds", str(seconds / 2))
            got[k]["invoke"].append(prof["invoke"]["p50"])
            got[k]["fresh"].append(prof["fresh_input"]["p50"])
            last[k] = prof
    med = {k: {m: statistics.median(v) for m, v in d.items()} for k, d in got.items()}
    return {
        "p50_ms": med,
        "cpu_over_cuda": {m: med["cpu"][m] / med["cuda"][m] for m in ("invoke", "fresh")},
        "cuda_pinning": last["cuda"]["pinning"],
        "cpu_threads": last["cpu"]["threads"],
        "gpus": last["cuda"]["system"].get("gpus"),
        "self_check": {k: last[k]["self_check"].get("passed") for k in last},
    }


def classify(art: Path, video: Path, out: Path) -> dict:
    res = {}
    for k, how in {"cuda": ["--device", "desktop-gpu", "--no-fallback"], "cpu": ["--runtime", "onnxruntime"]}.items():
        sink = out / f"classify-{art.parent.name}-{art.name}-{k}.jsonl"
        sink.unlink(missing_ok=True)  # a jsonl sink appends
        rep = _edgecnn("classify", str(art), *how, "--source", f"file:{video}", "--sink", f"jsonl:{sink}")
        labels = [json.loads(ln)["top"][0]["label"] for ln in sink.read_text().splitlines()]
        res[k] = {"fps": rep["fps"], "classified": rep["classified"], "accelerator": rep["runtime"]["accelerator"],
                  "labels": labels}  # fmt: skip
    same = sum(a == b for a, b in zip(res["cuda"]["labels"], res["cpu"]["labels"]))
    for k in res:
        res[k].pop("labels")
    return res | {"same_label": f"{same}/{res['cpu']['classified']}"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sets", nargs="+", type=Path)
    ap.add_argument("--video", type=Path)
    ap.add_argument("--out", type=Path, default=Path("gpu-out"))
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--cpu-threads", type=int, default=os.cpu_count() or 1, help="onnxruntime on the CPU (all cores)")
    args = ap.parse_args()
    import onnxruntime as ort

    args.out.mkdir(parents=True, exist_ok=True)
    report: dict = {"onnxruntime": ort.__version__, "providers": ort.get_available_providers(), "artifacts": {}}
    print(f"onnxruntime {ort.__version__}: {', '.join(report['providers'])}", flush=True)
    for s in args.sets:
        for art in sorted(p.parent for p in s.glob("onnx-*/model.onnx")):
            key = f"{s.name}/{art.name}"
            report["artifacts"][key] = {"parity": parity(art), "latency": latency(art, args.rounds, args.seconds, args.cpu_threads)}
            if args.video:
                report["artifacts"][key]["classify"] = classify(art, args.video, args.out)
            print(json.dumps({key: report["artifacts"][key]}), flush=True)
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=1))
    print(f"\n{'artifact':28} {'CUDA p50 ms':>12} {'CPU p50 ms':>11} {'CPU/CUDA':>9} {'fresh CPU/CUDA':>15} "
          f"{'agree':>6} {'max|dp|':>8} {'no-TF32':>8}")  # fmt: skip
    for key, a in report["artifacts"].items():
        lat, par = a["latency"], a["parity"]
        print(f"{key:28} {lat['p50_ms']['cuda']['invoke']:12.3f} {lat['p50_ms']['cpu']['invoke']:11.3f} "
              f"{lat['cpu_over_cuda']['invoke']:9.2f} {lat['cpu_over_cuda']['fresh']:15.2f} "
              f"{par['cuda']['agreement']:6.2f} {par['cuda']['max_abs_dp']:8.1e} {par['cuda_no_tf32']['max_abs_dp']:8.1e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
