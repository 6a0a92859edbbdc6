"""edgecnn's int8 against each toolchain's stock int8 (issue #28), for ``bench_convert.py --vs-stock``.

    python tools/bench_convert.py --vs-stock [--alpha 1.0 --size 224] [--rounds 3] [--threads 2] [--ort-variants]

One MobileNetV2 (10 classes, seeded random weights), one set of 200 calibration crops of scikit-image's photos and
100 other crops held out. edgecnn converts fp32 and int8 for TFLite, ONNX and OpenVINO; the stock int8 of each
toolchain is made from the same float model and the same preprocessed calibration samples, with the tool's
documented defaults:

- TFLite: ``TFLiteConverter`` full-integer (``Optimize.DEFAULT``, a representative dataset of the samples,
  ``TFLITE_BUILTINS_INT8``, int8 input and output), from the same SavedModel Keras exports;
- ONNX Runtime: ``quant_pre_process`` then ``quantize_static`` with every default (QDQ, int8 activations and
  weights, one weight scale per tensor, MinMax) on edgecnn's own fp32 ONNX export;
- OpenVINO: ``nncf.quantize(model, nncf.Dataset(samples))`` with every default, on edgecnn's fp32 IR.

Latency: every model file is profiled by ``edgecnn profile`` in its own process, pinned to ``--threads`` threads,
in ``--rounds`` rounds whose order alternates (ABBA); each ratio is the median of the per-round ratios. Two p50s
per run: ``invoke`` (the input set once and unchanged, as benchmark tools time) and ``fresh_input`` (a new input
written before every run, as a camera gives). Agreement: top-1 against Keras on the held-out crops, with the mean
and max |Δp| of the probabilities (accuracy means nothing with random weights).

``--reuse`` times the models the last run of this size built (no conversion). ``--ort-variants`` adds ONNX Runtime int8 variants that isolate one choice each (QDQ vs QOperator, activation
type, per-channel, reduce_range) with ONNX Runtime's own per-operator profile of each: where the time goes.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

RUNTIME = {"tflite": "litert", "onnx": "onnxruntime", "openvino": "openvino"}


def stock_tflite(keras_model: Any, calib: np.ndarray, out: Path) -> Path:
    """TFLite's documented full-integer recipe, nothing else."""
    import tensorflow as tf

    saved = out.with_suffix(".savedmodel")
    keras_model.export(str(saved), verbose=False)
    conv = tf.lite.TFLiteConverter.from_saved_model(str(saved))
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([calib[i : i + 1]] for i in range(len(calib)))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.int8
    out.write_bytes(conv.convert())
    return out


class _Reader:
    """A CalibrationDataReader: one sample a call, as onnxruntime's examples do."""

    def __init__(self, name: str, calib: np.ndarray) -> None:
        self.name, self.calib, self.at = name, calib, 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        self.at += 1
        return {self.name: self.calib[self.at - 1 : self.at]} if self.at <= len(self.calib) else None

    def rewind(self) -> None:
        self.at = 0


def ort_quantize(fp32: Path, calib: np.ndarray, out: Path, **options: Any) -> Path:
    """``quant_pre_process`` + ``quantize_static`` with ``options`` over its defaults (none: the stock int8)."""
    import onnx
    from onnxruntime.quantization import quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = out.with_name(out.stem + "-pre.onnx")
    if not pre.exists():
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
    name = onnx.load(str(pre)).graph.input[0].name
    quantize_static(str(pre), str(out), _Reader(name, calib), **options)
    return out


def stock_openvino(fp32_xml: Path, calib: np.ndarray, out: Path) -> Path:
    """NNCF's defaults on the fp32 IR; saved as ``ov.save_model`` saves by default."""
    import nncf
    import openvino as ov

    model = ov.Core().read_model(str(fp32_xml))
    model.reshape([1, *calib.shape[1:]])
    ov.save_model(nncf.quantize(model, nncf.Dataset([calib[i : i + 1] for i in range(len(calib))])), str(out))
    return out


def ort_variants(fp32: Path, calib: np.ndarray, folder: Path) -> dict[str, Path]:
    """One choice changed at a time against the stock QDQ int8 (s8 activations, s8 weights, per tensor)."""
    from onnxruntime.quantization import QuantFormat, QuantType

    u8 = {"activation_type": QuantType.QUInt8}
    variants = {
        "qdq-s8s8-per-channel": {"per_channel": True},
        "qdq-u8s8-per-tensor": u8,
        "qdq-u8s8-per-channel": u8 | {"per_channel": True},
        "qoperator-u8s8-per-channel": u8 | {"per_channel": True, "quant_format": QuantFormat.QOperator},
        "qdq-u8s8-per-channel-reduce-range": u8 | {"per_channel": True, "reduce_range": True},
    }
    return {k: ort_quantize(fp32, calib, folder / f"ort-{k}.onnx", **v) for k, v in variants.items()}


def ort_op_profile(model: Path, threads: int, runs: int = 30) -> dict[str, Any]:
    """ONNX Runtime's own view: the operators its optimiser leaves (what kernels run) and ms per run by operator
    type (its profiler; the median of each node over ``runs`` runs, summed by type)."""
    import onnx
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.enable_profiling = True
    so.profile_file_prefix = str(model.with_suffix(""))
    so.optimized_model_filepath = str(model.with_suffix(".optimized.onnx"))
    sess = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
    i = sess.get_inputs()[0]
    x = np.random.default_rng(0).uniform(-1, 1, [1, *i.shape[1:]]).astype(np.float32)
    for _ in range(runs):
        sess.run(None, {i.name: x})
    events = json.loads(Path(sess.end_profiling()).read_text())
    per_node: dict[tuple[str, str], list[float]] = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_node.setdefault((e["args"]["op_name"], e["name"]), []).append(e["dur"] / 1e3)
    by_op: dict[str, float] = {}
    for (op, _), durations in per_node.items():
        by_op[op] = by_op.get(op, 0.0) + statistics.median(durations)
    nodes: dict[str, int] = {}
    for n in onnx.load(so.optimized_model_filepath).graph.node:
        nodes[n.op_type] = nodes.get(n.op_type, 0) + 1
    ms = dict(sorted(((k, round(v, 3)) for k, v in by_op.items()), key=lambda kv: -kv[1]))
    return {"ms_by_operator": ms, "nodes_after_optimisation": dict(sorted(nodes.items(), key=lambda kv: -kv[1]))}


def agreement(fmt: str, model: Path, x: np.ndarray, ref: np.ndarray, threads: int) -> dict[str, float]:
    from edgecnn.runtime.base import open_backend

    with open_backend(RUNTIME[fmt], model, threads=threads) as b:
        p = np.concatenate([b.run(x[i : i + 1]) for i in range(len(x))])
    d = np.abs(p - ref)
    return {
        "agreement": float(np.mean(p.argmax(1) == ref.argmax(1))),
        "mean_abs_dp": float(d.mean()),
        "max_abs_dp": float(d.max()),
    }


def p50s(fmt: str, model: Path, threads: int, seconds: float) -> dict[str, float]:
    """``edgecnn profile`` of a bare model file in its own process: invoke and fresh-input p50 (ms)."""
    cmd = [sys.executable, "-m", "edgecnn", "profile", str(model), "--runtime", RUNTIME[fmt], "--threads", str(threads)]
    cmd += ["--runs", "50", "--min-seconds", str(seconds), "--warmup", "20", "--json", "--quiet"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if r.returncode:
        raise RuntimeError(f"profiling {model} failed: {r.stderr.strip()[-400:]}")
    data = json.loads(r.stdout)
    return {"invoke": data["invoke"]["p50"], "fresh_input": data["fresh_input"]["p50"]}


def timed_rounds(models: dict[str, tuple[str, Path]], rounds: int, threads: int, seconds: float) -> dict[str, list[dict]]:
    """Every model once per round; the order reverses every other round (ABBA)."""
    order = list(models)
    times: dict[str, list[dict]] = {k: [] for k in order}
    for rnd in range(rounds):
        for key in order if rnd % 2 == 0 else order[::-1]:
            fmt, path = models[key]
            times[key].append(p50s(fmt, path, threads, seconds))
            print(f"round {rnd + 1} {key}: {times[key][-1]}", flush=True)
    return times


def ratio(times: dict[str, list[dict]], a: str, b: str, mode: str) -> float:
    """The median over rounds of a's p50 / b's p50 in the same round."""
    return round(statistics.median(x[mode] / y[mode] for x, y in zip(times[a], times[b])), 3)


def build(args: Any, out: Path) -> tuple[dict[str, tuple[str, Path]], np.ndarray, np.ndarray, Any]:
    """edgecnn's six artifacts and the three stock int8 models; (models, calibration samples, held-out, keras)."""
    import keras
    from bench_convert import make_model, photo_crops

    from edgecnn.host.convert.api import convert
    from edgecnn.host.data.calibration import CalibrationSet
    from edgecnn.preprocess import PreprocessSpec

    calib_dir, held_dir = photo_crops(out / "calibration", 200, args.size), photo_crops(out / "held-out", 100, args.size, seed=1)
    src = make_model(out / "model", 10, args.size, args.alpha)
    targets = [f"{f}/{p}" for f in RUNTIME for p in ("fp32", "int8")]
    s = convert(
        src, "host", precisions=targets, calibration=str(calib_dir), data=str(held_dir), out=out / "art", gate=False, force=True
    )
    files = {"tflite": "model.tflite", "onnx": "model.onnx", "openvino": "model.xml"}
    models = {f"{r.format}/{r.precision}": (str(r.format), Path(r.path) / files[str(r.format)]) for r in s.rows if r.path}
    spec = PreprocessSpec.load(src.parent / "preprocess.json")
    calib = CalibrationSet.from_path(calib_dir, spec).samples
    held = CalibrationSet.from_path(held_dir, spec).samples
    k = keras.models.load_model(src)
    (out / "stock").mkdir(exist_ok=True)
    models["tflite/stock-int8"] = ("tflite", stock_tflite(k, calib, out / "stock" / "model.tflite"))
    models["onnx/stock-int8"] = ("onnx", ort_quantize(models["onnx/fp32"][1], calib, out / "stock" / "model.onnx"))
    models["openvino/stock-int8"] = ("openvino", stock_openvino(models["openvino/fp32"][1], calib, out / "stock" / "model.xml"))
    if args.ort_variants:
        for name, path in ort_variants(models["onnx/fp32"][1], calib, out / "stock").items():
            models[f"onnx/{name}"] = ("onnx", path)
    return models, calib, held, k


def _grouped(models: dict[str, tuple[str, Path]]) -> dict[str, tuple[str, Path]]:
    """Each runtime's fp32, edgecnn int8 and stock int8 side by side (the pairs compared are measured back to back)."""
    first = [f"{fmt}/{p}" for fmt in RUNTIME for p in ("fp32", "int8", "stock-int8")]
    return {k: models[k] for k in first if k in models} | {k: v for k, v in models.items() if k not in first}


def _built(args: Any, out: Path) -> tuple[dict[str, tuple[str, Path]], dict[str, dict[str, float]]]:
    """The models and their agreement: built now, or (``--reuse``) as the last run of this size left them."""
    saved = out / "models.json"
    if args.reuse and saved.exists():
        data = json.loads(saved.read_text())
        return {k: (f, Path(p)) for k, (f, p) in data["models"].items()}, data["quality"]
    models, _, held, k = build(args, out)
    ref = np.asarray(k.predict(held, batch_size=20, verbose=0), np.float32)
    quality = {key: agreement(fmt, path, held, ref, args.threads) for key, (fmt, path) in models.items()}
    saved.write_text(json.dumps({"models": {k: [f, str(p)] for k, (f, p) in models.items()}, "quality": quality}))
    return models, quality


def vs_stock(args: Any) -> int:
    from edgecnn.profiling.system import cpu_context

    out = Path(args.out) / f"vs-stock-{args.alpha}-{args.size}"
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    models, quality = _built(args, out)
    models = _grouped(models)
    times = timed_rounds(models, args.rounds, args.threads, args.seconds)
    result: dict[str, Any] = {"model": f"mobilenet_v2 alpha {args.alpha} {args.size} px, 10 classes", "threads": args.threads}
    result |= {"rounds": args.rounds, "system": cpu_context(), "runtimes": {}, "variants": {}}
    result["load_average"] = {"before": load_before, "after": Path("/proc/loadavg").read_text().split()[:3]}
    for fmt in RUNTIME:
        row: dict[str, Any] = {}
        for mode in ("invoke", "fresh_input"):
            row[mode] = {
                "edgecnn_int8_vs_stock_int8": ratio(times, f"{fmt}/int8", f"{fmt}/stock-int8", mode),
                "edgecnn_int8_vs_fp32": ratio(times, f"{fmt}/int8", f"{fmt}/fp32", mode),
                "stock_int8_vs_fp32": ratio(times, f"{fmt}/stock-int8", f"{fmt}/fp32", mode),
            }
        row["p50_ms"] = {k2: statistics.median(t["invoke"] for t in times[k2]) for k2 in times if k2.startswith(fmt + "/")}
        row["quality"] = {k2: quality[k2] for k2 in quality if k2.startswith(fmt + "/")}
        result["runtimes"][fmt] = row
    for key in models:
        if key.startswith("onnx/") and key not in ("onnx/fp32",):
            result["variants"][key] = (
                {
                    "int8_vs_fp32": ratio(times, key, "onnx/fp32", "invoke"),
                }
                | ort_op_profile(models[key][1], args.threads)
                | quality[key]
            )
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    report(result)
    return 0


def report(result: dict[str, Any]) -> None:
    print(f"\n{result['model']}, {result['threads']} threads, {result['rounds']} interleaved rounds (medians)")
    la = result["load_average"]
    print(f"load average (1, 5, 15 min) before {' '.join(la['before'])}, after {' '.join(la['after'])}")
    print("p50 ratios below 1 are faster; invoke: input unchanged between runs; fresh: a new input before each run")
    for fmt, row in result["runtimes"].items():
        inv, fr = row["invoke"], row["fresh_input"]
        q = row["quality"]
        print(
            f"{fmt:9s} edgecnn int8/stock int8 {inv['edgecnn_int8_vs_stock_int8']:.2f} (fresh {fr['edgecnn_int8_vs_stock_int8']:.2f})"
            f"  speed-up over fp32: edgecnn {1 / inv['edgecnn_int8_vs_fp32']:.2f}x (fresh {1 / fr['edgecnn_int8_vs_fp32']:.2f}x),"
            f" stock {1 / inv['stock_int8_vs_fp32']:.2f}x (fresh {1 / fr['stock_int8_vs_fp32']:.2f}x)"
        )
        for k, v in q.items():
            print(
                f"          {k:22s} agreement {v['agreement']:.2f}  mean|dp| {v['mean_abs_dp']:.4f}  max|dp| {v['max_abs_dp']:.4f}"
            )
    for k, v in result["variants"].items():
        top = ", ".join(f"{op} {ms:.2f}" for op, ms in list(v["ms_by_operator"].items())[:4])
        nodes = ", ".join(f"{op} {n}" for op, n in list(v["nodes_after_optimisation"].items())[:5])
        print(f"{k:38s} speed-up {1 / v['int8_vs_fp32']:.2f}x  agreement {v['agreement']:.2f}  mean|dp| {v['mean_abs_dp']:.4f}")
        print(f"{'':38s} ms/run by operator: {top}; nodes run: {nodes}")
