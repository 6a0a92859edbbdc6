"""Host side: ``edgecnn demo``: the whole path on the bundled digits, offline, into one folder with report.md."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgecnn.errors import EdgeCNNError


class StepFailed(EdgeCNNError):
    pass


def _contain(out: Path) -> None:
    """Keep every cache and temp file inside ``out`` (Keras config, matplotlib cache, SavedModel exports)."""
    cache = out / ".cache"
    for var, sub in (("KERAS_HOME", "keras"), ("MPLCONFIGDIR", "matplotlib"), ("XDG_CACHE_HOME", "xdg")):
        (cache / sub).mkdir(parents=True, exist_ok=True)
        os.environ[var] = str(cache / sub)
    tmp = cache / "tmp"
    tmp.mkdir(exist_ok=True)
    os.environ["TMPDIR"] = str(tmp)
    tempfile.tempdir = str(tmp)


def run_demo(
    out: str | Path,
    *,
    device: str = "rpi4",
    force: bool = False,
    say: Callable[[str], None] = print,
    profile_seconds: float = 1.0,
) -> dict[str, Any]:
    out = Path(out).resolve()
    if out.exists() and any(out.iterdir()):
        if not force:
            raise EdgeCNNError(f"output folder already exists: {out}", hint="use --force, or choose another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    _contain(out)
    results: dict[str, Any] = {"out": str(out), "device": device, "timings_s": {}}
    steps = [("train", _train), ("convert", _convert), ("profile", _profile), ("classify", _classify), ("report", _report)]
    t_all = time.time()
    for i, (name, fn) in enumerate(steps, 1):
        say(f"[demo {i}/{len(steps)}] {name} ...")
        t0 = time.time()
        try:
            fn(out, results, device=device, profile_seconds=profile_seconds)
        except EdgeCNNError as exc:
            raise StepFailed(f"demo step '{name}' failed: {exc.message}", hint=exc.hint) from exc
        except Exception as exc:
            raise StepFailed(f"demo step '{name}' failed: {type(exc).__name__}: {exc}") from exc
        results["timings_s"][name] = round(time.time() - t0, 1)
        say(f"[demo {i}/{len(steps)}] {name} done in {results['timings_s'][name]:.1f} s")
    results["timings_s"]["total"] = round(time.time() - t_all, 1)
    shutil.rmtree(out / ".cache", ignore_errors=True)
    (out / "demo.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    return results


def _train(out: Path, results: dict, **_: Any) -> None:
    from edgecnn.host.train.recipe import load_recipe
    from edgecnn.host.train.trainer import train
    from edgecnn.resources import resource_dir

    recipe = resource_dir("recipes") / "lenet5-digits.yaml"
    run = train(load_recipe(recipe), out / "run", quiet=True)
    m = json.loads((run / "metrics.json").read_text())
    results["train"] = {
        "run": str(run),
        "recipe": str(recipe),
        "accuracy": m["accuracy"],
        "n": m["n"],
        "seconds": m["train_seconds"],
    }


def _convert(out: Path, results: dict, *, device: str, **_: Any) -> None:
    from edgecnn.host.convert.api import convert, raise_if_failed

    results["convert"] = {}
    for dev in dict.fromkeys(["host", device]):
        s = convert(out / "run", dev, out=out / "artifacts" / f"lenet5-{dev}", keep_float="auto")
        raise_if_failed(s)
        results["convert"][dev] = {"out": str(s.out), "rows": [r.to_dict() for r in s.rows]}


def _profile(out: Path, results: dict, *, device: str, profile_seconds: float, **_: Any) -> None:
    """Profile each host artifact in its own process, as on a device: no TensorFlow in memory, honest RSS."""
    from edgecnn.formats import runtime_for
    from edgecnn.host.lab.benchmark import pareto, profile_in_child
    from edgecnn.manifest import Manifest
    from edgecnn.runtime.select import artifact_dirs

    rows = []
    (out / "profiles").mkdir(exist_ok=True)
    for art in artifact_dirs(out / "artifacts" / "lenet5-host"):
        m = Manifest.load(art, verify=False)
        r = profile_in_child(
            art,
            runtime_for(m.format),
            runs=200,
            seconds=profile_seconds,
            out=out / "profiles" / f"{art.name}.json",
            device=device,
        )
        rows.append(
            {
                "artifact": art.name,
                "format": m.format,
                "precision": m.precision,
                "runtime": r["runtime"]["runtime"],
                "invoke_p50_ms": r["invoke"]["p50"],
                "invoke_p90_ms": r["invoke"]["p90"],
                "fresh_p50_ms": r["fresh_input"]["p50"],
                "peak_rss_mb": r["memory"]["peak_rss_mb"],
                "accuracy": m.parity["artifact_accuracy"],
                "n": m.parity["n"],
                "size_mb": m.model_bytes() / 1e6,
                f"estimate_{device}_ms": r["estimate"]["estimated_p50_ms"],
                f"estimate_{device}_range_ms": r["estimate"].get("range_ms"),
            }
        )
    results["profile"] = rows
    pareto(rows, out / "accuracy_vs_latency.png", latency_key="invoke_p50_ms")


def _classify(out: Path, results: dict, **_: Any) -> None:
    from edgecnn.host.data import load_dataset
    from edgecnn.host.data.video import write_video
    from edgecnn.host.train.recipe import load_recipe
    from edgecnn.runtime import Classifier
    from edgecnn.stream.loop import classify_stream
    from edgecnn.stream.sources import open_source

    recipe = load_recipe(out / "run" / "recipe.resolved.yaml")
    test = load_dataset(recipe.data).split(validation=recipe.split.validation, test=recipe.split.test, seed=recipe.seed)[2]
    video = write_video(test.images, out / "heldout_digits.avi", fps=10, size=(64, 64))
    best = min(
        results["profile"],
        key=lambda r: r["invoke_p50_ms"] if r["accuracy"] >= max(x["accuracy"] for x in results["profile"]) - 0.01 else 1e9,
    )
    art = out / "artifacts" / "lenet5-host" / best["artifact"]
    labels = [str(int(v)) for v in test.labels]
    got: list[str] = []
    sinks = [f"jsonl:{out / 'classify.jsonl'}", str(out / "classify_annotated.avi")]
    with Classifier(art) as clf:
        report = classify_stream(clf, open_source(f"file:{video}"), sinks, on_prediction=lambda f, p: got.append(p.label))
    correct = sum(a == b for a, b in zip(got, labels))
    results["classify"] = {
        "artifact": best["artifact"],
        "video": str(video),
        "frames": len(labels),
        "classified": report["classified"],
        "correct": correct,
        "fps": report["fps"],
        "latency_ms": report["latency_ms"],
    }
    if report["classified"] != len(labels):
        raise StepFailed(f"classified {report['classified']} of {len(labels)} frames")


def _report(out: Path, results: dict, *, device: str, **_: Any) -> None:
    from edgecnn.host.demo_report import write_report

    shutil.copy(out / "run" / "learning_curves.png", out / "learning_curves.png")
    shutil.copy(out / "run" / "confusion_matrix.png", out / "confusion_matrix.png")
    write_report(out, results, device=device, argv=" ".join(sys.argv))
