"""``edgecnn benchmark``: every (format, precision) a profile allows -> size, accuracy, agreement, latency, memory,
and a recommendation. Host side (it converts); each artifact is profiled in its own process, as on the device
(no TensorFlow in memory)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from edgecnn import markdown as md
from edgecnn.atomic import write_atomic, write_json_atomic
from edgecnn.errors import EdgeCNNError

HEADERS = ["artifact", "status", "size MB", "accuracy", "agreement", "p50 ms", "p90 ms", "peak RSS MB", "load ms", "note"]


def profile_in_child(
    path: str | Path, runtime: str, *, runs: int, seconds: float, out: Path, device: str | None = None
) -> dict[str, Any]:
    """``edgecnn profile`` in a fresh process (as on a device: no TensorFlow in memory, honest RSS); returns its JSON."""
    from edgecnn.errors import RuntimeBackendError

    cmd = [
        sys.executable,
        "-m",
        "edgecnn",
        "profile",
        str(path),
        "--runtime",
        runtime,
        "--runs",
        str(runs),
        "--min-seconds",
        str(seconds),
        "--out",
        str(out),
        "--quiet",
        *(["--device", device] if device else []),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        reason = next((ln.removeprefix("error: ") for ln in lines if ln.startswith("error:")), lines[-1] if lines else "crashed")
        raise RuntimeBackendError(f"profiling {path} failed: {reason}")
    return json.loads(out.read_text())


def run_benchmark(
    model: str,
    device: str,
    *,
    data: str | None,
    out: Path,
    max_drop: float = 1.0,
    runs: int = 100,
    seconds: float = 3.0,
    force: bool = False,
    say=lambda m: None,
) -> dict[str, Any]:
    from edgecnn.convert.api import convert
    from edgecnn.devices import detect
    from edgecnn.runtime.base import runtime_for

    elsewhere = device not in ("host", detect()[0])  # measured here, estimated there
    say(f"converting {model} for {device} (every format and precision the profile allows)")
    summary = convert(model, device, data=data, out=out / "artifacts", gate=False, force=force, max_drop=max_drop, progress=say)
    rows = []
    (out / "profiles").mkdir(parents=True, exist_ok=True)
    for r in summary.rows:
        row: dict[str, Any] = {
            "artifact": f"{r.format}/{r.precision}",
            "format": r.format,
            "precision": r.precision,
            "status": r.status.lower() if r.status != "ERROR" else "error",
            "size_mb": r.size_mb,
        }
        if r.parity:
            row |= {
                "accuracy": r.parity.artifact_accuracy,
                "keras_accuracy": r.parity.keras_accuracy,
                "agreement": r.parity.agreement,
                "drop_points": r.parity.accuracy_drop_points,
            }
        if r.error:
            row["note"] = r.error
        if r.path:
            say(f"profiling {r.format}/{r.precision}")
            try:
                p = profile_in_child(
                    r.path,
                    runtime_for(r.format),
                    runs=runs,
                    seconds=seconds,
                    out=out / "profiles" / f"{r.format}-{r.precision}.json",
                    device=device if elsewhere else None,
                )
                row |= {
                    "p50_ms": p["invoke"]["p50"],
                    "p90_ms": p["invoke"]["p90"],
                    "fresh_p50_ms": p["fresh_input"]["p50"],
                    "peak_rss_mb": p["memory"]["peak_rss_mb"],
                    "load_ms": p["load_ms"],
                    "runtime": p["runtime"]["runtime"],
                }
                est = p.get("estimate") or {}
                if est.get("estimated_p50_ms"):
                    row["estimate_p50_ms"] = est["estimated_p50_ms"]
                    row["estimate_method"] = est["method"]
            except EdgeCNNError as exc:  # one failing runtime is a row with its reason, not a crash
                row["status"], row["note"] = "error", exc.message
        rows.append(row)
    result = {
        "model": summary.model,
        "device": device,
        "max_drop": max_drop,
        "eval_data": summary.eval_source,
        "rows": rows,
        "estimated_for": device if any(r.get("estimate_p50_ms") for r in rows) else None,
        "recommendation": recommend(rows, max_drop, device=device if elsewhere else None),
    }
    write_json_atomic(out / "benchmark.json", result)
    write_atomic(out / "benchmark.md", markdown(result))
    pareto(rows, out / "pareto.png")
    return result


def recommend(rows: list[dict[str, Any]], max_drop: float, *, device: str | None = None) -> dict[str, Any]:
    """The fastest artifact within the accuracy budget: by the estimate for ``device`` when every candidate has
    one (the device is not this host), else by the latency measured here."""
    usable = [r for r in rows if r.get("p50_ms") and r["status"] in ("ok", "failed")]
    within = [r for r in usable if (r.get("drop_points") is None or r["drop_points"] <= max_drop)]
    if not within:
        return {"artifact": None, "why": f"no artifact stays within {max_drop} accuracy points of the Keras model"}
    by_estimate = device is not None and all(r.get("estimate_p50_ms") for r in usable)
    key = "estimate_p50_ms" if by_estimate else "p50_ms"
    where = f"on {device} (estimated)" if by_estimate else "here"
    best = min(within, key=lambda r: r[key])
    fp32 = [r for r in usable if r["precision"] == "fp32"]
    ref = min(fp32, key=lambda r: r[key]) if fp32 else None
    if ref is None or ref is best:
        why = (
            f"{best['artifact']} is the fastest {where} ({best[key]:.3f} ms p50) within the accuracy budget of {max_drop} points"
        )
    else:
        drop = best.get("drop_points") or 0.0
        why = (
            f"{best['artifact']} is {ref[key] / best[key]:.1f}x faster than {ref['artifact']} {where} "
            f"and {'loses' if drop > 0 else 'gains'} {abs(drop):.1f} points"
        )
    return {"artifact": best["artifact"], "why": why, "ranked_by": key}


def headers(result: dict[str, Any]) -> list[str]:
    if not result.get("estimated_for"):
        return HEADERS
    return [*HEADERS[:7], f"{result['estimated_for']} p50 ms (estimate)", *HEADERS[7:]]


def table_rows(result: dict[str, Any]) -> list[list[str]]:
    def f(v, fmt):
        return "-" if v is None else format(v, fmt)

    estimated = bool(result.get("estimated_for"))
    return [
        [
            r["artifact"],
            r["status"],
            f(r.get("size_mb"), ".3f"),
            "-" if r.get("accuracy") is None else f"{r['accuracy'] * 100:.2f}%",
            "-" if r.get("agreement") is None else f"{r['agreement'] * 100:.2f}%",
            f(r.get("p50_ms"), ".3f"),
            f(r.get("p90_ms"), ".3f"),
            *([f(r.get("estimate_p50_ms"), ".3f")] if estimated else []),
            f(r.get("peak_rss_mb"), ".0f"),
            f(r.get("load_ms"), ".1f"),
            r.get("note", ""),
        ]
        for r in result["rows"]
    ]


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"# Benchmark: {result['model']} on {result['device']}",
        "",
        f"Held-out data: {result['eval_data']}.",
        "",
        *md.table(headers(result), table_rows(result)),
    ]
    rec = result["recommendation"]
    lines += ["", f"**Recommendation:** {rec['artifact'] or 'none'}: {rec['why']}.", "", "![pareto](pareto.png)", ""]
    return "\n".join(lines)


def pareto(rows: list[dict[str, Any]], path: Path, *, latency_key: str = "p50_ms") -> None:
    """Latency vs accuracy scatter, marker size = model size (benchmark and demo)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [r for r in rows if r.get(latency_key) and r.get("accuracy") is not None]
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in pts:
        ax.scatter(r[latency_key], r["accuracy"] * 100, s=40 + 300 * (r.get("size_mb") or 0), alpha=0.6)
        ax.annotate(r["artifact"], (r[latency_key], r["accuracy"] * 100), fontsize=7)
    ax.set_xlabel("invoke p50 latency (ms)")
    ax.set_ylabel("held-out accuracy (%)")
    ax.set_title("latency vs accuracy (marker size = model size)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
