"""Profiling fidelity (issue #6): edgecnn profile's `invoke` p50 against the reference tools, run side by side.

    python tools/bench_fidelity.py [--out bench-out/fidelity] [--threads 2] [--seconds 1.5] [--rounds 5]
                                   [--steady 0.05] [--models mobilenet_v2 ...] [--formats openvino ...]
                                   [--skip estimate]

Every side pinned alike: `--threads` threads, f32 arithmetic for float operations, one stream (one inference in
flight), the input set once and unchanged, 20 warm-up runs. TFLite: `litert-benchmark` (ships with ai-edge-litert:
the CompiledModel API on XNNPACK, `--num_threads N`; run unmodified except that its JSON's rounding to 0.01 ms is
switched off, which alone is a 20% step at LeNet-5's 0.025 ms), and a bare Interpreter loop, the API edgecnn's
backend uses, which splits the gap into edgecnn's own share and the two APIs' difference; OpenVINO: `benchmark_app -infer_precision f32
-hint none -nthreads N -nstreams 1` with a static batch of 1, as edgecnn's backend compiles it (its own
default API, one asynchronous request; the properties it reports are kept beside edgecnn's `pinning`); ONNX: a
bare onnxruntime loop in its own process. Each artifact is measured in bracketed rounds: edgecnn, the reference,
edgecnn again, then the reference, edgecnn, the reference again, and so on. A round is steady when its two
bracketing figures agree within `--steady` (5%): the machine did not change speed between them (a spell inside the
middle measurement alone is not caught; the median outvotes it). Rounds go on until `--rounds` are steady (at most 3x
as many tried); the ratio is the median over the steady rounds (over all of them, flagged in `ratio_over`, when none
was). Every round's figures, its order and its bracketing pair are kept in results.json.
Models: LeNet-5 (trained on digits), SqueezeNet 1.1 and MobileNetV2 1.0 at 224 px (seeded random weights,
10 classes), fp32 and int8.

Then the latency estimate: `edgecnn calibrate` on this host for all three runtimes, fp32 and int8, with those
models and MobileNet V1 and V3-Small (224 px) as held-out checks timed in the same passes: the estimate's error.
"""

from __future__ import annotations

import argparse
import json
import math
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
TARGETS = ["tflite/fp32", "tflite/int8", "onnx/fp32", "onnx/int8", "openvino/fp32", "openvino/int8"]
FIDELITY_MODELS = ("lenet5", "squeezenet1_1", "mobilenet_v2")
RUNTIME_OF = {"tflite": "litert", "onnx": "onnxruntime", "openvino": "openvino"}
FORMATS = tuple(RUNTIME_OF)
ORDERS = ("edgecnn, reference, edgecnn", "reference, edgecnn, reference")
ESTIMATE_ONLY = ("mobilenet_v1", "mobilenet_v3_small")


def _current(folder: Path) -> bool:
    """Converted by this edgecnn (per-layer kinds in the manifest), not by an older one."""
    from edgecnn.errors import EdgeCNNError
    from edgecnn.manifest import Manifest

    try:
        rows = Manifest.load(folder / "tflite-fp32", verify=False).extra["cost"]["layers"]
    except (EdgeCNNError, KeyError, IndexError, TypeError):
        return False
    return (folder / "summary.json").exists() and len(rows[0]) >= 7


def build(out: Path, photos: Path, names: tuple[str, ...] = (*FIDELITY_MODELS, *ESTIMATE_ONLY)) -> dict[str, Path]:
    import keras

    sys.path.insert(0, str(REPO / "tools"))
    from bench_convert import photo_crops

    from edgecnn.host.convert.api import convert
    from edgecnn.host.models import create_model, get_spec
    from edgecnn.host.train.recipe import load_recipe
    from edgecnn.host.train.trainer import train

    photo_crops(photos, n=100)
    arts = {}
    run = out / "lenet5-run"
    if "lenet5" in names:
        if not run.exists():
            train(load_recipe(REPO / "recipes/lenet5-digits.yaml"), run, quiet=True)
        arts["lenet5"] = out / "art-lenet5"
        if not _current(arts["lenet5"]):
            convert(run, "host", precisions=TARGETS, out=arts["lenet5"], force=True, gate=False)
    for name in (n for n in names if n != "lenet5"):
        arts[name] = out / f"art-{name}"
        if _current(arts[name]):
            continue
        keras.utils.set_random_seed(0)
        d = out / f"{name}-model"
        d.mkdir(parents=True, exist_ok=True)
        create_model(name, num_classes=10, input_size=224).save(d / "model.keras")
        get_spec(name).preprocess_spec((224, 224), 3).save(d / "preprocess.json")
        (d / "labels.txt").write_text("\n".join(f"c{i}" for i in range(10)) + "\n")
        convert(d / "model.keras", "host", precisions=TARGETS, calibration=str(photos), out=arts[name], force=True, gate=False)
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


# litert-benchmark's own code, unmodified, with only the rounding of its JSON to 0.01 ms switched off.
_LITERT = (
    "import sys, ai_edge_litert.tools.benchmark_litert_model as m; m.round = lambda v, n=None: v; "
    "sys.argv = ['litert-benchmark', *sys.argv[1:]]; m.main()"
)


def litert_p50(model: Path, threads: int, runs: int) -> tuple[float, dict]:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        res = Path(tmp) / "litert-benchmark.json"
        cmd = [sys.executable, "-c", _LITERT, "--model", str(model), "--num_runs", str(runs), "--warmup_runs", "20"]
        cmd += ["--num_threads", str(threads), "--result_json", str(res)]
        subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=900)
        data = json.loads(res.read_text())
        return data["latency"]["median_ms"], {"num_threads": data.get("num_threads", threads), "api": "CompiledModel.run_by_name"}


BENCHMARK_APP_PINNING = ["-infer_precision", "f32", "-hint", "none", "-nstreams", "1"]
_PROPERTY = re.compile(r"^\[ INFO \]\s+(NUM_STREAMS|INFERENCE_NUM_THREADS|INFERENCE_PRECISION_HINT|PERFORMANCE_HINT|"
                       r"ENABLE_CPU_PINNING|ENABLE_HYPER_THREADING):\s*(.+)$", re.M)  # fmt: skip


def benchmark_app_p50(model: Path, threads: int, seconds: float) -> tuple[float, dict]:
    """benchmark_app pinned like edgecnn's backend; (median ms, the compiled model's properties it printed)."""
    from edgecnn.manifest import Manifest

    shape = [1, *Manifest.load(model.parent, verify=False).input["shape"][1:]]  # the IR's batch is dynamic
    cmd = [str(BIN / "benchmark_app"), "-m", str(model), *BENCHMARK_APP_PINNING, "-nthreads", str(threads)]
    cmd += ["-t", str(math.ceil(max(seconds, 1))), "-shape", "[" + ",".join(map(str, shape)) + "]"]
    r = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=900)
    m = re.search(r"Median:\s*([\d.]+)\s*(ms|us)", r.stdout)
    props = {k: v.strip() for k, v in _PROPERTY.findall(r.stdout)}
    return float(m.group(1)) / (1000.0 if m.group(2) == "us" else 1.0), props


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


def interpreter_p50(model: Path, threads: int, seconds: float) -> float:
    """A bare LiteRT Interpreter loop (the API edgecnn's backend uses, where litert-benchmark uses CompiledModel):
    input set once, invoke() timed alone."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(model), num_threads=threads)
    interp.allocate_tensors()
    d = interp.get_input_details()[0]
    x = np.random.default_rng(0).uniform(-1, 1, d["shape"])
    interp.set_tensor(d["index"], x.astype(d["dtype"]) if d["dtype"] == np.float32 else (x * 100).astype(d["dtype"]))
    for _ in range(20):
        interp.invoke()
    times, t_end = [], time.perf_counter() + seconds
    while len(times) < 200 or time.perf_counter() < t_end:
        t0 = time.perf_counter()
        interp.invoke()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def _loop(flag: str, model: Path, threads: int, seconds: float) -> float:
    cmd = [sys.executable, __file__, flag, str(model), "--threads", str(threads), "--seconds", str(seconds)]
    r = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=900)
    return float(r.stdout.strip().splitlines()[-1])


def ours(art: Path, runtime: str, threads: int, seconds: float) -> dict:
    cmd = [str(BIN / "edgecnn"), "profile", str(art), "--runtime", runtime, "--threads", str(threads)]
    cmd += ["--runs", "200", "--min-seconds", str(seconds), "--warmup", "20", "--json", "--quiet"]
    r = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=900)
    data = json.loads(r.stdout)
    internal = data.get("invoke_runtime_reported")
    return {
        "p50": data["invoke"]["p50"],
        "runtime_reported_p50": internal["p50"] if internal else None,
        "pinning": data["pinning"],
    }


def reference(fmt: str, model: Path, threads: int, seconds: float, expected_ms: float) -> tuple[float, str, dict]:
    if fmt == "tflite":
        ms, pins = litert_p50(model, threads, max(200, int(seconds * 1000 / max(expected_ms, 0.005))))
        return ms, f"litert-benchmark --num_threads {threads} (median)", pins
    if fmt == "openvino":
        ms, pins = benchmark_app_p50(model, threads, seconds)
        return ms, f"benchmark_app {' '.join(BENCHMARK_APP_PINNING)} -nthreads {threads} (median)", pins
    return _loop("--ort-loop", model, threads, seconds), "bare onnxruntime loop (median)", {"intra_op_num_threads": threads}


def _bracketed(rnd: int, measure_ours, measure_ref, steady: float) -> dict:
    """One round: edgecnn, the reference, edgecnn again (even rounds) or the reference, edgecnn, the reference (odd).
    The side measured twice brackets the other; if its two figures differ by more than ``steady`` the machine changed
    speed during the round (this 2-core VM flips between two speeds, 1.45x apart, for seconds at a time: the same
    Interpreter in one process, same input, went 3.4 -> 5.0 -> 3.4 ms) and the round is not steady. A spell that
    starts and ends inside the middle measurement is not caught: the median over the steady rounds has to outvote it."""
    if rnd % 2 == 0:
        first, ref, second = measure_ours(), measure_ref(), measure_ours()
        mine = {"p50": (first["p50"] + second["p50"]) / 2, "pinning": second["pinning"]}
        internal = [o["runtime_reported_p50"] for o in (first, second) if o["runtime_reported_p50"] is not None]
        mine["runtime_reported_p50"] = sum(internal) / 2 if len(internal) == 2 else None
        outer, ref_ms, order = (first["p50"], second["p50"]), ref[0], ORDERS[0]
    else:
        ref1, mine, ref2 = measure_ref(), measure_ours(), measure_ref()
        ref = ref2
        outer, ref_ms, order = (ref1[0], ref2[0]), (ref1[0] + ref2[0]) / 2, ORDERS[1]
    spread = max(outer) / min(outer) - 1
    return {
        "order": order,
        "edgecnn_ms": mine["p50"],
        "reference_ms": ref_ms,
        "ratio": mine["p50"] / ref_ms,
        "runtime_reported_ratio": None if mine["runtime_reported_p50"] is None else mine["runtime_reported_p50"] / ref_ms,
        "outer_ms": list(outer),  # the bracketing pair, in order
        "bracket_spread": spread,
        "steady": spread <= steady,
        "_pinning": mine["pinning"],
        "_tool": ref[1],
        "_ref_pinning": ref[2],
    }


def bracketed_rounds(measure_ours, measure_ref, rounds: int, steady: float, side=None) -> list[dict]:
    """Bracketed rounds until ``rounds`` are steady, at most 3 x ``rounds`` tried; ``side()`` (a bare Interpreter
    loop for TFLite) runs after each round and its figures join the round's."""
    tried: list[dict] = []
    while sum(r["steady"] for r in tried) < rounds and len(tried) < 3 * rounds:
        r = _bracketed(len(tried), measure_ours, measure_ref, steady)
        tried.append(r | (side() if side else {}))
    return tried


def summarize(tried: list[dict], rounds: int) -> dict:
    """A row's figures from its rounds: medians over the steady rounds, or over all of them when none was steady
    (``ratio_over`` says which; ``complete`` whether ``rounds`` steady ones were reached). ``edgecnn_p50_ms`` and
    ``reference_p50_ms`` are medians of their own, so their quotient need not be ``ratio`` (the median of the
    per-round ratios). TFLite's bare Interpreter loop ran after each round, outside its bracket."""
    used = [r for r in tried if r["steady"]] or tried
    med = lambda key: statistics.median(r[key] for r in used)  # noqa: E731
    steady = sum(r["steady"] for r in tried)
    row = {
        "edgecnn_p50_ms": med("edgecnn_ms"),
        "reference_p50_ms": med("reference_ms"),
        "ratio": med("ratio"),
        "ratio_over": "steady rounds" if steady else "all rounds (none was steady)",
        "complete": steady >= rounds,
        "steady_rounds": steady,
        "steady_by_order": {o: sum(r["steady"] for r in tried if r["order"] == o) for o in ORDERS},
        "rounds_tried": len(tried),
        "rounds": [{k: v for k, v in r.items() if not k.startswith("_")} for r in tried],
        "reference": used[-1]["_tool"],
        "edgecnn_pinning": used[-1]["_pinning"],  # the last used round's; every round pins alike
        "reference_pinning": used[-1]["_ref_pinning"],
    }
    if all(r["runtime_reported_ratio"] is not None for r in used):  # OpenVINO's own timing of the same runs
        row["runtime_reported_ratio"] = med("runtime_reported_ratio")
    if all("bare_interpreter_ms" in r for r in used):  # unbracketed: edgecnn vs the Interpreter, it vs CompiledModel
        row["bare_interpreter_p50_ms"] = med("bare_interpreter_ms")
        row["vs_bare_interpreter"] = statistics.median(r["edgecnn_ms"] / r["bare_interpreter_ms"] for r in used)
        row["interpreter_vs_compiled_model"] = statistics.median(r["bare_interpreter_ms"] / r["reference_ms"] for r in used)
    return row


def fidelity(
    arts: dict[str, Path],
    threads: int,
    seconds: float,
    rounds: int,
    models: list[str],
    steady: float = 0.05,
    formats: tuple[str, ...] = FORMATS,
) -> list[dict]:
    """Per artifact, bracketed rounds until ``rounds`` of them are steady (at most 3 x ``rounds`` tries); the ratio
    is the median over the steady rounds (over all of them, flagged, when none was)."""
    rows = []
    for model in models:
        for prec in ("fp32", "int8"):
            for fmt, runtime in ((f, r) for f, r in RUNTIME_OF.items() if f in formats):
                art = arts[model] / f"{fmt}-{prec}"
                mfile = art / {"tflite": "model.tflite", "onnx": "model.onnx", "openvino": "model.xml"}[fmt]
                expected = [1.0]  # edgecnn's last p50: sizes litert-benchmark's run count to `seconds`

                def measure_ours() -> dict:
                    o = ours(art, runtime, threads, seconds)
                    expected[0] = o["p50"]
                    return o

                def measure_ref() -> tuple[float, str, dict]:
                    return reference(fmt, mfile, threads, seconds, expected[0])

                side = (
                    (lambda: {"bare_interpreter_ms": _loop("--interp-loop", mfile, threads, seconds)})
                    if fmt == "tflite"
                    else None
                )
                tried = bracketed_rounds(measure_ours, measure_ref, rounds, steady, side)
                row = {"model": model, "format": fmt, "precision": prec, **summarize(tried, rounds)}
                rows.append(row)
                ratios = [r["ratio"] for r in tried if r["steady"] or row["ratio_over"] != "steady rounds"]
                extra = f"  (OpenVINO-timed {row['runtime_reported_ratio']:.2f})" if "runtime_reported_ratio" in row else ""
                if fmt == "tflite":
                    extra = (f"  (unbracketed: vs a bare Interpreter loop {row['vs_bare_interpreter']:.2f}; Interpreter / "
                             f"CompiledModel {row['interpreter_vs_compiled_model']:.2f})")  # fmt: skip
                steadiness = f"{row['steady_rounds']} of {len(tried)} rounds steady"
                steadiness += "" if row["complete"] else f" (FEWER than {rounds}; {row['ratio_over']})"
                print(
                    f"{model:14s} {fmt:8s} {prec}: edgecnn {row['edgecnn_p50_ms']:.3f} ms  reference "
                    f"{row['reference_p50_ms']:.3f} ms  ratio {row['ratio']:.2f} [{min(ratios):.2f}-{max(ratios):.2f}], "
                    f"{steadiness}{extra}  ({row['reference']})",
                    flush=True,
                )
                p = row["edgecnn_pinning"]
                print(
                    f"{'':14s} pinned: edgecnn {p['threads']} threads, {p['precision']}, {p['streams']} stream; "
                    f"reference {row['reference_pinning']}"
                )
    return rows


def estimate_error(arts: dict[str, Path], out: Path, threads: int) -> list[dict]:
    from edgecnn.devices import load_profile
    from edgecnn.host.lab.latency_calibration import calibrate, checks_from_artifacts

    cals = calibrate(
        load_profile("host"),
        runtimes=["litert", "onnxruntime", "openvino"],
        precisions=["fp32", "int8"],
        threads=threads,
        out_dir=out / "calibration",
        checks=checks_from_artifacts(list(arts.values())),
        say=lambda s: print(s, flush=True),
    )
    rows = []
    for cal in cals:
        print(
            f"calibration {cal['runtime']}/{cal['precision']}: fit |error| median {cal['fit_error_median_abs'] * 100:.1f}% "
            f"max {cal['fit_error_max_abs'] * 100:.1f}% over {len(cal['networks'])} networks"
        )
        for c in cal["checks"]:
            rows.append({"runtime": cal["runtime"], "precision": cal["precision"], **c})
            print(
                f"estimate {cal['runtime']:11s} {cal['precision']} {c['name']:18s}: predicted {c['predicted_ms']:.3f} ms "
                f"vs measured {c['measured_ms']:.3f} ms ({c['error'] * 100:+.0f}%)",
                flush=True,
            )
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench-out/fidelity")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=1.5)
    ap.add_argument("--rounds", type=int, default=5, help="steady rounds wanted per artifact (at most 3x as many tried)")
    ap.add_argument(
        "--steady",
        type=float,
        default=0.05,
        help="a round counts if its bracketing measurements agree within this fraction (default 0.05)",
    )
    ap.add_argument("--models", nargs="+", choices=FIDELITY_MODELS, default=list(FIDELITY_MODELS))
    ap.add_argument("--formats", nargs="+", choices=FORMATS, default=list(FORMATS), help="the formats to compare")
    ap.add_argument("--skip", choices=["fidelity", "estimate"], help="leave one half out")
    ap.add_argument("--ort-loop", help=argparse.SUPPRESS)
    ap.add_argument("--interp-loop", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rounds < 1 or args.steady < 0 or args.seconds <= 0:
        ap.error("--rounds must be at least 1, --steady at least 0 and --seconds above 0")
    if args.ort_loop:
        print(ort_p50(Path(args.ort_loop), args.threads, args.seconds))
        return 0
    if args.interp_loop:
        print(interpreter_p50(Path(args.interp_loop), args.threads, args.seconds))
        return 0
    out = Path(args.out)
    t0 = time.time()
    arts = build(out, out / "photos", (*args.models, *(ESTIMATE_ONLY if args.skip != "estimate" else ())))
    print(f"artifacts ready ({time.time() - t0:.0f} s)", flush=True)
    result = {"threads": args.threads, "seconds": args.seconds, "rounds": args.rounds, "steady": args.steady}
    result |= {"models": args.models, "formats": args.formats}
    if args.skip != "fidelity":
        uptime = Path("/proc/loadavg").read_text().split()[:3]
        result["load_before"] = uptime
        result["fidelity"] = fidelity(
            arts, args.threads, args.seconds, args.rounds, args.models, args.steady, tuple(args.formats)
        )
        result["load_after"] = Path("/proc/loadavg").read_text().split()[:3]
        print(
            f"load average (1, 5, 15 min) before {' '.join(uptime)}, after {' '.join(result['load_after'])} on {os.cpu_count()} CPUs"
        )
    if args.skip != "estimate":
        result["estimate_error"] = estimate_error(arts, out, args.threads)
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"done in {time.time() - t0:.0f} s; {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
