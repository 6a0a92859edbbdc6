"""report.md for ``edgecnn demo``: every section filled from the measurements of that run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgecnn import markdown as md


def write_report(out: Path, r: dict[str, Any], *, device: str, argv: str) -> None:
    t = r["train"]
    lines = [
        "# edgecnn demo report",
        "",
        f"LeNet-5 trained on scikit-learn's handwritten digits, converted for `host` and `{device}`, profiled here, "
        f"and run on a video of held-out digits. Total time {r['timings_s'].get('total', sum(r['timings_s'].values())):.0f} s "
        f"(steps: {', '.join(f'{k} {v:.0f} s' for k, v in r['timings_s'].items())}).",
        "",
        "## 1. Training",
        "",
        f"- recipe `{Path(t['recipe']).name}`, held-out test accuracy **{t['accuracy'] * 100:.2f}%** on {t['n']} images, "
        f"trained in {t['seconds']:.0f} s",
        "",
        "![learning curves](learning_curves.png)",
        "",
        "![confusion matrix](confusion_matrix.png)",
        "",
        "## 2. Conversion and parity gate",
        "",
    ]
    for dev, conv in r["convert"].items():
        lines += [f"### {dev}", ""]
        rows = []
        for a in conv["rows"]:
            p = a["parity"]
            rows.append(
                [
                    a["format"],
                    a["precision"],
                    f"{a['size_mb']:.3f}",
                    f"{a['size_ratio']:.2f}x",
                    f"{p['keras_accuracy'] * 100:.2f}%",
                    f"{p['artifact_accuracy'] * 100:.2f}%",
                    f"{p['agreement'] * 100:.2f}%",
                    f"{p['max_abs_dp']:.1e}",
                    a["status"],
                ]
            )
        lines += md.table(
            ["format", "precision", "MB", "vs fp32", "Keras acc", "artifact acc", "agreement", "max abs dp", "status"], rows
        ) + [""]
    lines += [
        "## 3. Latency on this host (and an estimate for " + device + ")",
        "",
        "`invoke` leaves the input unchanged between runs (what benchmark_model and benchmark_app measure); "
        "`fresh-input` writes a new input every run, as a camera does. The estimate is a roofline scaled by this host's "
        "measured efficiency: an estimate, not a measurement.",
        "",
    ]
    rows = [
        [
            p["artifact"],
            p["runtime"],
            f"{p['invoke_p50_ms']:.3f}",
            f"{p['invoke_p90_ms']:.3f}",
            f"{p['fresh_p50_ms']:.3f}",
            f"{p['peak_rss_mb']:.0f}",
            f"{p['accuracy'] * 100:.2f}%",
            f"{p[f'estimate_{device}_ms']:.3f}",
        ]
        for p in r["profile"]
    ]
    lines += md.table(
        [
            "artifact",
            "runtime",
            "invoke p50 ms",
            "invoke p90 ms",
            "fresh-input p50 ms",
            "peak RSS MB",
            "accuracy",
            f"{device} estimate ms",
        ],
        rows,
    )
    lines += ["", "![accuracy vs latency](accuracy_vs_latency.png)", ""]
    lines += [f"![latency {p['artifact']}](profiles/{p['artifact']}.png)" for p in r["profile"]]
    c = r["classify"]
    lat = c["latency_ms"]
    lines += [
        "",
        "## 4. Stream",
        "",
        f"`{Path(c['video']).name}` ({c['frames']} held-out digits, MJPG video) classified with `{c['artifact']}` through the same "
        f"capture -> classify loop a camera uses: **{c['correct']}/{c['frames']} correct** ({c['correct'] / c['frames'] * 100:.1f}%), "
        f"{c['fps']:.0f} FPS; inference p50 {lat['inference']['p50']:.3f} ms, preprocess p50 {lat['preprocess']['p50']:.3f} ms. "
        "Predictions: `classify.jsonl`; annotated video: `classify_annotated.avi`.",
        "",
        "## 5. Repeat each step by hand",
        "",
        "```sh",
        f"edgecnn train lenet5-digits --out {out}/run",
        f"edgecnn convert {out}/run --device host --out {out}/artifacts/lenet5-host",
        f"edgecnn convert {out}/run --device {device} --out {out}/artifacts/lenet5-{device}",
        f"edgecnn profile {out}/artifacts/lenet5-host/{c['artifact']} --out {out}/profiles/{c['artifact']}.json",
        f"edgecnn profile {out}/artifacts/lenet5-{device} --device {device}",
        f"edgecnn classify {out}/artifacts/lenet5-host/{c['artifact']} --source file:{c['video']} --sink jsonl:- --max-frames 100",
        f"edgecnn verify {out}/artifacts/lenet5-host",
        "```",
        "",
        f"(this report was written by `{argv}`)",
        "",
    ]
    (out / "report.md").write_text("\n".join(lines), encoding="utf-8")
