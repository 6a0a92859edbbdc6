"""Host side: report.md for ``edgecnn demo``: every section filled from the measurements of that run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgecnn import markdown as md


def write_report(out: Path, r: dict[str, Any], *, device: str, argv: str) -> None:
    """report.md: training, conversion and parity, latency here and the estimate there, the stream, and the commands
    that repeat each step by hand."""
    lines = [
        "# edgecnn demo report",
        "",
        f"LeNet-5 trained on scikit-learn's handwritten digits, converted for `host` and `{device}`, profiled here, "
        f"and run on a video of held-out digits. Total time {r['timings_s'].get('total', sum(r['timings_s'].values())):.0f} s "
        f"(steps: {', '.join(f'{k} {v:.0f} s' for k, v in r['timings_s'].items())}).",
        "",
        *_training(r["train"]),
        *_conversion(r["convert"]),
        *_latency(r["profile"], device),
        *_stream(r["classify"]),
        *_repeat(out, r["classify"], device),
        f"(this report was written by `{argv}`)",
        "",
    ]
    (out / "report.md").write_text("\n".join(lines), encoding="utf-8")


def _training(t: dict[str, Any]) -> list[str]:
    return [
        "## 1. Training",
        "",
        f"- recipe `{Path(t['recipe']).name}`, held-out test accuracy **{t['accuracy'] * 100:.2f}%** on {t['n']} images, "
        f"trained in {t['seconds']:.0f} s",
        "",
        "![learning curves](learning_curves.png)",
        "",
        "![confusion matrix](confusion_matrix.png)",
        "",
    ]


def _conversion(convert: dict[str, Any]) -> list[str]:
    lines = ["## 2. Conversion and parity gate", ""]
    for dev, conv in convert.items():
        rows = [
            [
                a["format"],
                a["precision"],
                f"{a['size_mb']:.3f}",
                f"{a['size_ratio']:.2f}x",
                f"{a['parity']['keras_accuracy'] * 100:.2f}%",
                f"{a['parity']['artifact_accuracy'] * 100:.2f}%",
                f"{a['parity']['agreement'] * 100:.2f}%",
                f"{a['parity']['max_abs_dp']:.1e}",
                ", ".join(a.get("keep_float") or []) or "-",
                a["status"],
            ]
            for a in conv["rows"]
        ]
        headers = ["format", "precision", "MB", "vs fp32", "Keras acc", "artifact acc", "agreement", "max abs dp"]
        lines += [f"### {dev}", "", *md.table([*headers, "float layers", "status"], rows), ""]
        lines += _recovery(conv["rows"])
    return lines


def _recovery(rows: list[dict[str, Any]]) -> list[str]:
    """What --keep-float auto did: each recovered artifact beside plain int8, or that none was needed."""
    recovered = [a for a in rows if a.get("recovery")]
    if not recovered:
        return [
            "Every int8 artifact is within the accuracy budget as it is: no layer had to stay in float "
            "(`--keep-float auto` would leave the most sensitive ones in float, one at a time, if one were not).",
            "",
        ]
    lines = []
    for a in recovered:
        steps = [[", ".join(s["float_layers"]) or "none (plain int8)", f"{s['drop_points']:.2f}" if s["drop_points"] is not None else "-",
                  f"{s['size_mb']:.3f}" if s["size_mb"] else "-", f"{s['p50_ms']:.3f}" if s["p50_ms"] else "-",
                  "yes" if s["passed"] else "no"] for s in a["recovery"]]  # fmt: skip
        lines += [f"{a['format']}/{a['precision']} with `--keep-float auto`:", ""]
        lines += [*md.table(["float layers", "drop (points)", "MB", "p50 ms (gate)", "passes"], steps), ""]
    return lines


def _latency(profiles: list[dict[str, Any]], device: str) -> list[str]:
    rows = [
        [
            p["artifact"],
            p["runtime"],
            f"{p['invoke_p50_ms']:.3f}",
            f"{p['invoke_p90_ms']:.3f}",
            f"{p['fresh_p50_ms']:.3f}",
            f"{p['peak_rss_mb']:.0f}",
            f"{p['accuracy'] * 100:.2f}%",
            _estimate_cell(p, device),
        ]
        for p in profiles
    ]
    headers = ["artifact", "runtime", "invoke p50 ms", "invoke p90 ms", "fresh-input p50 ms", "peak RSS MB", "accuracy"]
    return [
        f"## 3. Latency on this host (and an estimate for {device})",
        "",
        "`invoke` leaves the input unchanged between runs (what benchmark_model and benchmark_app measure); "
        "`fresh-input` writes a new input every run, as a camera does. The estimate for the other device is a "
        "per-layer roofline scaled by this host's measured efficiency, with a likely range of at least +-30% (wider when "
        "the medians of this run's slices moved: a busy host): an estimate, not a measurement. The plots below are "
        "titled with their artifact and clip their axis at p99.5, counting the slower runs.",
        "",
        *md.table([*headers, f"{device} estimate ms"], rows),
        "",
        "![accuracy vs latency](accuracy_vs_latency.png)",
        "",
        *[f"![latency {p['artifact']}](profiles/{p['artifact']}.png)" for p in profiles],
    ]


def _estimate_cell(p: dict[str, Any], device: str) -> str:
    low, high = p.get(f"estimate_{device}_range_ms") or (None, None)
    value = p[f"estimate_{device}_ms"]
    return f"{value:.3f} ({low:.3f}-{high:.3f})" if low is not None else f"{value:.3f}"


def _stream(c: dict[str, Any]) -> list[str]:
    lat = c["latency_ms"]
    return [
        "",
        "## 4. Stream",
        "",
        f"`{Path(c['video']).name}` ({c['frames']} held-out digits, MJPG video) classified with `{c['artifact']}` through the same "
        f"capture -> classify loop a camera uses: **{c['correct']}/{c['frames']} correct** ({c['correct'] / c['frames'] * 100:.1f}%), "
        f"{c['fps']:.0f} FPS; inference p50 {lat['inference']['p50']:.3f} ms, preprocess p50 {lat['preprocess']['p50']:.3f} ms. "
        "Predictions: `classify.jsonl`; annotated video: `classify_annotated.avi`.",
        "",
    ]


def _repeat(out: Path, c: dict[str, Any], device: str) -> list[str]:
    """Commands that repeat each step by hand, into fresh folders (under again/) so that they can be pasted as they are."""
    again = out / "again"
    return [
        "## 5. Repeat each step by hand",
        "",
        "```sh",
        f"edgecnn train lenet5-digits --out {again}/run",
        f"edgecnn convert {again}/run --device host --out {again}/lenet5-host",
        f"edgecnn convert {again}/run --device {device} --out {again}/lenet5-{device}",
        f"edgecnn profile {again}/lenet5-host/{c['artifact']} --out {again}/{c['artifact']}.json",
        f"edgecnn profile {again}/lenet5-{device} --device {device}",
        f"edgecnn classify {again}/lenet5-host/{c['artifact']} --source file:{c['video']} --sink jsonl:- --max-frames 100",
        f"edgecnn verify {again}/lenet5-host --run",
        "```",
        "",
    ]
