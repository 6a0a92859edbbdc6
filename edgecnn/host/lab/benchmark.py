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
from edgecnn.host.convert.candidates import candidates

HEADERS = ["artifact", "status", "size MB", "accuracy", "agreement", "p50 ms", "p90 ms", "peak RSS MB", "load ms", "note"]


def profile_in_child(
    path: str | Path, runtime: str, *, runs: int, seconds: float, out: Path, device: str | None = None
) -> dict[str, Any]:
    """``edgecnn profile`` in a fresh process (as on a device: no TensorFlow in memory, honest RSS), with the argv a
    board's profile gets (``remote.verbs``); returns its JSON."""
    from edgecnn.errors import RuntimeBackendError
    from edgecnn.profiling.measure import ProfileOptions
    from edgecnn.remote.verbs import board_argv, json_error, profile_argv

    argv = profile_argv(str(path), ProfileOptions(runs=runs, min_seconds=seconds), runtime=runtime, device=device)
    proc = subprocess.run([sys.executable, "-m", "edgecnn", *board_argv("profile", *argv), "--out", str(out)],
                          capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        error = json_error(proc.stderr)
        lines = proc.stderr.strip().splitlines()
        reason = error["message"] if error else (lines[-1] if lines else f"crashed (exit {proc.returncode})")
        raise RuntimeBackendError(f"profiling {path} failed: {reason}", hint=error["hint"] if error else None)
    return json.loads(out.read_text())


def _row(r: Any) -> dict[str, Any]:
    """A benchmark row from a conversion row: size, accuracy, agreement, status; a recovered int8 says which layers
    it leaves in float."""
    label = f"{r.format}/{r.precision}" + (f" ({len(r.keep_float)} float: {', '.join(r.keep_float)})" if r.keep_float else "")
    label += " (QAT)" if r.qat else ""
    row: dict[str, Any] = {
        "artifact": label,
        "keep_float": list(r.keep_float),
        "qat": r.qat,
        "format": r.format,
        "precision": r.precision,
        "status": r.status.lower() if r.status != "ERROR" else "error",
        "size_mb": r.size_mb,
    }
    if r.parity:
        p = r.parity
        row |= {"accuracy": p.artifact_accuracy, "keras_accuracy": p.keras_accuracy, "agreement": p.agreement, "n": p.n}
        row["drop_points"] = p.accuracy_drop_points
    if r.error:
        row["note"] = r.error
    return row


def _measured(p: dict[str, Any]) -> dict[str, Any]:
    """What a benchmark row takes from a profile: latencies, memory, load time, and the estimate where there is one."""
    row = {
        "p50_ms": p["invoke"]["p50"],
        "p90_ms": p["invoke"]["p90"],
        "fresh_p50_ms": p["fresh_input"]["p50"],
        "peak_rss_mb": p["memory"]["peak_rss_mb"],
        "load_ms": p["load_ms"],
        "runtime": p["runtime"]["runtime"],
    }
    est = p.get("estimate") or {}
    if est.get("estimated_p50_ms"):
        row |= {"estimate_p50_ms": est["estimated_p50_ms"], "estimate_method": est["method"]}
        if est.get("range_ms"):
            row["estimate_range_ms"] = est["range_ms"]
    return row


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
    board: Any = None,
    cpu_precisions: bool = True,
    qat: dict | None = None,
    say=lambda m: None,
) -> dict[str, Any]:
    """Convert to every (format, precision) the profile allows (gate off), profile each artifact in a process of its
    own, and recommend the fastest within ``max_drop`` (by the estimate when the device is not this host).

    With ``board`` (edgecnn.remote.Board) each artifact is also measured there by the board's own edgecnn: its p50s
    fill the latency columns, the one measured here and the estimate (with its error) stand beside them, the
    recommendation goes by the board's figures, and each (estimate, measurement) pair is kept for later refits.
    With ``qat`` ({"qat_epochs": N, "qat_data": DIR}) a format whose int8 misses the budget also gets its QAT int8."""
    from edgecnn.devices import detect
    from edgecnn.host.convert.api import convert

    elsewhere = device not in ("host", detect()[0])  # measured here, estimated there
    say(f"converting {model} for {device} (every format and precision the profile allows)")
    summary = convert(model, device, data=data, out=out / "artifacts", gate=False, force=force, max_drop=max_drop, progress=say)
    rows = []
    (out / "profiles").mkdir(parents=True, exist_ok=True)
    here = cpu_precisions and not elsewhere and board is None  # measured here only: the precisions this CPU adds
    converted = summary.rows + candidates(model, device, summary, data=data, out=out, max_drop=max_drop, force=force,
                                          say=say, qat=qat, here=here)
    measurable = [r for r in converted if r.path]
    for r in converted:
        row = _row(r)
        if r.path:
            say(f"profiling {r.format}/{r.precision} ({measurable.index(r) + 1} of {len(measurable)})")
            row = _measure_row(r, row, out, runs, seconds, device if elsewhere else None, device, board, say)
        rows.append(row)
    from edgecnn.profiling.system import cpu_context

    here = cpu_context()
    result = {
        "model": summary.model,
        "device": device,
        "cpu": {"model": here["cpu_model"], "features": here["features"], "int8_outlook": here["int8_outlook"]},
        "measured_on": board.label if board is not None else None,
        "max_drop": max_drop,
        "eval_data": summary.eval_source,
        "rows": rows,
        "estimated_for": device if any(r.get("estimate_p50_ms") for r in rows) else None,
        "recommendation": recommend(
            rows, max_drop, device=device if elsewhere and board is None else None, where=f"on {board.label}" if board else "here"
        ),
    }
    write_json_atomic(out / "benchmark.json", result)
    write_atomic(out / "benchmark.md", markdown(result))
    pareto(rows, out / "pareto.png")
    return result


def _measure_row(
    r: Any, row: dict[str, Any], out: Path, runs: int, seconds: float, estimate_for: str | None, device: str, board: Any, say: Any
) -> dict[str, Any]:
    """One artifact measured here in a process of its own (with an estimate for ``estimate_for``) and, with
    ``board``, there too; a failing runtime makes a row with its reason, not a crash."""
    from edgecnn.formats import Format, runtime_for

    if r.format == Format.IMX500:  # runs in the sensor: its figures come from the compiler's memory report
        from edgecnn.host.convert.imx500 import benchmark_figures

        return row | benchmark_figures(Path(r.path))
    target = out / "profiles" / f"{r.format}-{r.precision}{'-float' if r.keep_float else ''}{'-qat' if r.qat else ''}.json"
    try:
        row |= _measured(
            profile_in_child(r.path, runtime_for(r.format), runs=runs, seconds=seconds, out=target, device=estimate_for)
        )
    except EdgeCNNError as exc:
        row["status"], row["note"] = "error", exc.message
        return row
    if board is not None:
        say(f"profiling {r.format}/{r.precision} on {board.label}")
        try:
            row |= _measured_on_board(board, r.path, runtime_for(r.format), row, runs, seconds, device)
        except EdgeCNNError as exc:  # the board cannot run it (its runtime is not installed there, ...): not ranked
            row |= {
                "here_p50_ms": row["p50_ms"],
                "p50_ms": None,
                "p90_ms": None,
                "note": f"not measured on {board.label}: {exc.message}",
            }
    return row


def _measured_on_board(
    board: Any, path: Path, runtime: str, here: dict[str, Any], runs: int, seconds: float, device: str
) -> dict[str, Any]:
    """The board's own measurement of one artifact: it takes the latency columns; here and the estimate move aside."""
    from edgecnn.profiling.measure import ProfileOptions
    from edgecnn.remote.run import profile_on

    on = board.device or (device if device != "host" else None)  # --device rpi4 --on ssh://pi: the board is a rpi4
    p = profile_on(board, path, ProfileOptions(runs=runs, min_seconds=seconds), runtime=runtime, device=on)
    row = {
        "here_p50_ms": here.get("p50_ms"),
        "p50_ms": p["invoke"]["p50"],
        "p90_ms": p["invoke"]["p90"],
        "fresh_p50_ms": p["fresh_input"]["p50"],
        "peak_rss_mb": p["memory"]["peak_rss_mb"],
        "load_ms": p["load_ms"],
        "board_cpu": (p.get("system") or {}).get("cpu", {}).get("model"),
    }
    if here.get("estimate_p50_ms"):
        row["estimate_error"] = here["estimate_p50_ms"] / p["invoke"]["p50"] - 1
    keep_measurement(board, device, path, here, p)
    return row


def measurements_folder() -> Path:
    from edgecnn.resources import cache_dir

    return cache_dir("measurements")


def keep_measurement(board: Any, device: str, path: Path, here: dict[str, Any], measured: dict[str, Any]) -> Path:
    """One line per board measurement in measurements/<device>.jsonl: the artifact, the estimate made here (when
    there was one) and what the board measured: the pairs a later refit of the estimator for ``device`` reads."""
    import json
    import time

    from edgecnn.manifest import Manifest

    m = Manifest.load(path, verify=False)
    record = {
        "time": round(time.time(), 3),
        "device": device,
        "board": board.label,
        "url": board.url,
        "format": m.format,
        "precision": m.precision,
        "source_sha256": m.source_model.get("sha256"),
        "model_name": m.source_model.get("name"),
        "estimate_p50_ms": here.get("estimate_p50_ms"),
        "here_p50_ms": here.get("p50_ms"),
        "measured_p50_ms": measured["invoke"]["p50"],
        "runtime": measured["runtime"],
        "threads": measured.get("threads"),
        "artifact_sha256": (m.files.get("model") or {}).get("sha256"),
        "layers": (m.extra.get("cost") or {}).get("layers"),  # what a refit of the estimate needs
        "system": measured.get("system"),
    }
    folder = measurements_folder()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{device}.jsonl"
    with open(target, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, default=str) + "\n")
    return target


def recommend(rows: list[dict[str, Any]], max_drop: float, *, device: str | None = None, where: str = "here") -> dict[str, Any]:
    """The fastest artifact within the accuracy budget: by the estimate for ``device`` when every candidate has
    one (the device is not this host), else by the latency measured ``where`` (here, or on a board). ``why`` does not
    repeat its name."""
    usable, within = _candidates(rows, max_drop)
    if not within:
        return {"artifact": None, "why": f"no artifact stays within {max_drop} accuracy points of the Keras model"}
    by_estimate = device is not None and all(r.get("estimate_p50_ms") for r in usable)
    key = "estimate_p50_ms" if by_estimate else "p50_ms"
    best = min(within, key=lambda r: r[key])
    fp32 = [r for r in usable if r["precision"] == "fp32"]
    ref = min(fp32, key=lambda r: r[key]) if fp32 else best
    return {
        "artifact": best["artifact"],
        "why": _why(best, ref, key, f"on {device} (estimated)" if by_estimate else where, max_drop),
        "ranked_by": key,
    }


def _candidates(rows: list[dict[str, Any]], max_drop: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(the rows with a latency that converted, those of them within the accuracy budget)."""
    usable = [r for r in rows if r.get("p50_ms") and r["status"] in ("ok", "failed")]
    return usable, [r for r in usable if r.get("drop_points") is None or r["drop_points"] <= max_drop]


def _why(best: dict[str, Any], ref: dict[str, Any], key: str, where: str, max_drop: float) -> str:
    if ref is best:
        return f"the fastest {where} ({best[key]:.3f} ms p50) within the accuracy budget of {max_drop} points"
    drop = best.get("drop_points") or 0.0
    change = f"{'loses' if drop > 0 else 'gains'} {abs(drop):.1f} points" if drop else "keeps the accuracy"
    return f"{ref[key] / best[key]:.1f}x faster than {ref['artifact']} {where} ({best[key]:.3f} ms p50), {change}"


def headers(result: dict[str, Any]) -> list[str]:
    if result.get("measured_on"):
        board = result["measured_on"]
        extra = ["here p50 ms"] + ([f"{result['estimated_for']} estimate (error)"] if result.get("estimated_for") else [])
        return [*HEADERS[:5], f"p50 ms on {board}", f"p90 ms on {board}", *extra, *HEADERS[7:]]
    if not result.get("estimated_for"):
        return HEADERS
    return [*HEADERS[:7], f"{result['estimated_for']} p50 ms (estimate)", *HEADERS[7:]]


def table_rows(result: dict[str, Any]) -> list[list[str]]:
    def f(v, fmt):
        return "-" if v is None else format(v, fmt)

    estimated = bool(result.get("estimated_for"))
    on_board = bool(result.get("measured_on"))

    def beside(r):
        if not on_board:
            return [f(r.get("estimate_p50_ms"), ".3f")] if estimated else []
        est = []
        if estimated:
            err = r.get("estimate_error")
            est = [f"{f(r.get('estimate_p50_ms'), '.3f')}" + (f" ({err * 100:+.0f}%)" if err is not None else "")]
        return [f(r.get("here_p50_ms"), ".3f"), *est]

    return [
        [
            r["artifact"],
            r["status"],
            f(r.get("size_mb"), ".3f"),
            "-" if r.get("accuracy") is None else f"{r['accuracy'] * 100:.2f}%",
            "-" if r.get("agreement") is None else f"{r['agreement'] * 100:.2f}%",
            f(r.get("p50_ms"), ".3f"),
            f(r.get("p90_ms"), ".3f"),
            *beside(r),
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
        *([f"Measured here on {result['cpu']['model']}: {result['cpu']['int8_outlook']}.", ""] if result.get("cpu") else []),
        *md.table(headers(result), table_rows(result)),
    ]
    rec = result["recommendation"]
    lines += ["", f"**Recommendation:** {rec['artifact'] or 'none'}: {rec['why']}.", "", "![pareto](pareto.png)", ""]
    return "\n".join(lines)


# marker per format, filled for float and hollow for integer precisions: told apart without text on the plot
_MARKERS = ("o", "s", "^", "D", "v", "P")


def pareto(rows: list[dict[str, Any]], path: Path, *, latency_key: str = "p50_ms") -> dict[str, Any]:
    """Latency vs accuracy (benchmark and demo), drawn so that it cannot mislead:

    - each accuracy carries its 95% interval for the number of held-out images (a one-image difference is seen to be
      inside it), and the legend gives the count (``286/360``);
    - the accuracy axis spans at least 10 points, so small differences are not blown up to the whole height;
    - the names are in a legend beside the plot, never written on it, so they cannot overlap.

    Returns what was drawn: the accuracy axis' limits and the legend's labels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [r for r in rows if r.get(latency_key) and r.get("accuracy") is not None]
    fig, ax = plt.subplots(figsize=(8.5, 4.2))
    formats = sorted({r.get("format", "") for r in pts})
    spans = [_pareto_point(ax, r, i, formats, latency_key, plt.get_cmap("tab10")) for i, r in enumerate(pts)]
    if pts:
        lo, hi = min(s[0] for s in spans), max(s[1] for s in spans)
        pad = max(0.0, 10 - (hi - lo)) / 2
        ax.set_ylim(max(0.0, lo - pad - 0.5), min(100.0, hi + pad + 0.5))
        ax.set_xlim(0, max(r[latency_key] for r in pts) * 1.15)
    ax.set_xlabel("invoke p50 latency (ms, this machine)")
    ax.set_ylabel("held-out accuracy (%)")
    n_all = {r.get("n") for r in pts} - {None}
    shown = f" on {n_all.pop()} images" if len(n_all) == 1 else ""
    ax.set_title(f"latency vs accuracy{shown}: bars are 95% intervals; hollow = int8", fontsize=10)
    legend = ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=7, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    drawn = {"ylim": tuple(ax.get_ylim()), "labels": [t.get_text() for t in legend.get_texts()], "texts_on_axes": len(ax.texts)}
    plt.close(fig)
    return drawn


def _pareto_point(ax: Any, r: dict[str, Any], i: int, formats: list[str], latency_key: str, colors: Any) -> tuple[float, float]:
    """One artifact on the pareto plot, with its 95% interval; returns the interval (accuracy points)."""
    import math

    acc, n = r["accuracy"] * 100, r.get("n")
    half = 196 * math.sqrt(r["accuracy"] * (1 - r["accuracy"]) / n) if n else 0.0
    count = f"{round(r['accuracy'] * n)}/{n}" if n else f"{acc:.1f}%"
    ax.errorbar(
        r[latency_key],
        acc,
        yerr=half or None,
        fmt=_MARKERS[formats.index(r.get("format", "")) % len(_MARKERS)],
        color=colors(i % 10),
        markerfacecolor="none" if r.get("precision") == "int8" else colors(i % 10),
        markersize=6 + 4 * min(3.0, math.sqrt(r.get("size_mb") or 0)),
        capsize=3,
        label=f"{r['artifact']}: {count}, {r.get('size_mb') or 0:.2f} MB, {r[latency_key]:.3f} ms",
    )
    return acc - half, acc + half
