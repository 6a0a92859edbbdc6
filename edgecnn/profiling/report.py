"""Profile outputs: JSON (schema-versioned), CSV of samples, Markdown summary, PNG latency plot."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from edgecnn.atomic import write_atomic
from edgecnn.errors import ConfigError


def _fmt(s: dict[str, float]) -> str:
    return f"p50 {s['p50']:.3f} ms, p90 {s['p90']:.3f}, p99 {s['p99']:.3f}, mean {s['mean']:.3f} ± {s['std']:.3f}, min {s['min']:.3f}, max {s['max']:.3f}, {s['fps']:.1f} FPS (n={s['n']})"


def markdown(result: dict[str, Any], *, skipped: bool = True) -> str:
    """The profile as Markdown: what ran where, both latencies, memory, stages, self-check and any estimate."""
    r, m, s = result["runtime"], result["model"], result["system"]
    lines = [
        f"# Profile: {Path(m['path']).name} ({m['format']}/{m['precision']})",
        "",
        f"- runtime: {r['runtime']} {r['version']} on {r['accelerator']} (providers: {', '.join(r['providers'])}), threads {result['threads']}",
        *[
            f"- pinned: {p['threads']} threads, {p['precision']}, {p['streams']} stream(s): {p['how']}"
            for p in [result.get("pinning")]
            if p
        ],
        f"- measured on: {s['cpu_model']}, {s['cores']} cores, governor {s['governor'] or '?'}, clock {s['clock_mhz'] or '?'} MHz"
        + _profile_note(result),
        f"- temperatures before/after: {s['temperatures_before_c'] or '-'} / {s['temperatures_after_c'] or '-'}",
        f"- throttling: {s['throttling'] or 'not readable here (no vcgencmd)'}",
        f"- load {result['load_ms']:.1f} ms, first inference {result['first_inference_ms']:.2f} ms, warm-up {result['warmup_runs']} runs discarded",
        f"- **invoke** (input unchanged, as benchmark_model / benchmark_app): {_fmt(result['invoke'])}",
        f"- **fresh-input** (a new input written every run, as a camera): {_fmt(result['fresh_input'])}",
    ]
    if rr := result.get("invoke_runtime_reported"):
        lines.append(f"- invoke as the runtime itself timed it (benchmark_app's figure, no Python binding): {_fmt(rr)}")
    mem = result["memory"]
    lines.append(f"- memory: peak RSS {mem['peak_rss_mb']:.1f} MB, growth over the run {mem['growth_mb']:+.2f} MB")
    if st := result.get("stages"):
        lines.append(
            f"- stages (640x480 frame): preprocess p50 {st['preprocess']['p50']:.3f} ms, inference {st['inference']['p50']:.3f} ms, "
            f"postprocess {st['postprocess']['p50']:.3f} ms"
        )
    lines += _self_check_lines(result.get("self_check"))
    if skipped:
        lines += [f"- skipped {sk['candidate']}: {sk['reason']}" for sk in result.get("skipped_runtimes") or []]
    lines += _estimate_lines(result.get("estimate"))
    return "\n".join(lines) + "\n"


def _profile_note(result: dict[str, Any]) -> str:
    """The device profile beside the machine: a profile measured on another machine says so (issue #31)."""
    target, here = result.get("device_profile"), result.get("measured_profile")
    if not target or here is None or here == target:
        return f" (profile {target})" if target else ""
    return f" (this machine's profile: {here}; the {target} profile gave the runtime chain and threads, not the latency)"


def _self_check_lines(sc: dict[str, Any] | None) -> list[str]:
    if not sc:
        return []
    if sc.get("skipped"):
        return [f"- self-check: skipped ({sc['why']}): this runtime's answers were not compared with the host's"]
    return [
        f"- self-check: passed, top-1 {sc['agreement']}/{sc['n']}, max |dp| {sc['max_abs_dp']:.1e} (tolerance "
        f"{sc['tolerance']:.0e}) against the host's outputs"
    ]


def _estimate_lines(est: dict[str, Any] | None) -> list[str]:
    """The estimate for another device, always named as one, with its range."""
    if not est:
        return []
    if "estimated_p50_ms" not in est:
        return [f"- no estimate for {est['device']}: {est.get('note', '')}"]
    span = (
        f"p50 ≈ {est['estimated_p50_ms']:.3f} ms, likely {est['range_ms'][0]:.3f}-{est['range_ms'][1]:.3f} ms"
        if est.get("range_ms")
        else f"p50 ≈ {est['estimated_p50_ms']:.3f} ms"
    )
    if "host_check_error" not in est:
        return [
            f"- **ESTIMATE for {est['device']}** (not measured): {span} (roofline {est['roofline_ms']:.3f} ms x this model's "
            f"efficiency here {est['efficiency_factor']:.2f}; 'edgecnn calibrate' makes it per-layer)"
        ]
    lines = [
        f"- **ESTIMATE for {est['device']}** (not measured): {span} (per-layer costs calibrated on this host; the same "
        f"formula predicts {est['host_predicted_ms']:.3f} ms here, measured {est['host_measured_ms']:.3f} ms: "
        f"{est['host_check_error'] * 100:+.0f}%)"
    ]
    fit = est.get("calibration_fit_error_median")
    if fit is not None and fit > 0.1:
        lines.append(
            f"- the calibration of this runtime/precision fits its own networks loosely here (median error {fit * 100:.0f}%): "
            "trust the estimate less"
        )
    return lines


PLOT_PERCENTILE = 99.5  # the latency axes end here: the slowest runs (scheduler hiccups) are counted, not drawn
FENCE_IQR = 5.0  # ... or at p75 + 5 x the interquartile range when that is lower (7 sigma of a normal spread)


def plot_title(result: dict[str, Any]) -> str:
    """What the plot shows, so that two plots never look alike: the artifact (its folder, format and precision), the
    runtime and where it ran (the CPU, and the device profile when it is not this machine's)."""
    m, r, s = result["model"], result["runtime"], result["system"]
    where = Path(m["artifact"]) if m.get("artifact") else Path(m["path"])
    name = f"{where.parent.name}/{where.name}" if where.parent.name else where.name
    threads = f", {result['threads']} threads" if result.get("threads") else ""
    target = result.get("device_profile")
    here = result.get("measured_profile")
    profile = f" (profile {target})" if target and (here is None or here == target) else ""
    if target and here and here != target:
        profile = f" (profile {here}; chain and threads of {target})"
    return (
        f"{name}: {m['format']}/{m['precision']}, {r['runtime']} on {r.get('accelerator') or 'CPU'}{threads}\n"
        f"measured on {s['cpu_model']}{profile}"
    )


def figure(result: dict[str, Any]) -> Any:
    """The latency plot (histogram and CDF of both modes) as a matplotlib Figure: the x axis spans the fastest run to
    the PLOT_PERCENTILE-th percentile of both modes (or p75 + FENCE_IQR x IQR, the lower), and the runs beyond it are
    counted in a note: the slowest runs (scheduler hiccups) would otherwise squash the distribution into one bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    modes = (("invoke", "tab:blue"), ("fresh_input", "tab:orange"))
    every = np.concatenate([np.asarray(result["raw_ms"][mode], dtype=float) for mode, _ in modes])
    q25, q75, top = np.percentile(every, [25, 75, PLOT_PERCENTILE])
    # hiccups of more than 0.5 % of runs would still reach p99.5: the axis also stops at a loose Tukey fence
    lo, hi = float(every.min()), float(min(top, q75 + FENCE_IQR * (q75 - q25)) if q75 > q25 else top)
    pad = max(hi - lo, 1e-6 * max(hi, 1e-3)) * 0.05
    lo, hi = max(0.0, lo - pad), hi + pad
    fig, (h, c) = plt.subplots(1, 2, figsize=(10, 4.4))
    bins = np.linspace(lo, hi, 51)
    beyond = []
    for mode, color in modes:
        v = np.sort(np.asarray(result["raw_ms"][mode], dtype=float))
        h.hist(v[v <= hi], bins=bins, alpha=0.6, color=color, label=mode)
        # the quantiles' values go in the legend, not beside their lines: two modes' p50s often lie a hair apart
        c.plot(v, np.arange(1, len(v) + 1) / len(v), color=color,
               label=f"{mode}: p50 {result[mode]['p50']:.3f}, p90 {result[mode]['p90']:.3f} ms")
        for q, ls in (("p50", "--"), ("p90", ":")):
            c.axvline(result[mode][q], color=color, linestyle=ls, linewidth=1)
        if (n := int((v > hi).sum())):
            beyond.append(f"{mode}: {n} of {len(v)} runs above {hi:.3f} ms (slowest {v[-1]:.3f})")
    for ax in (h, c):
        ax.set_xlim(lo, hi)
        ax.set_xlabel("latency (ms)")
    if beyond:
        h.text(0.98, 0.97, "off scale:\n" + "\n".join(beyond), transform=h.transAxes, ha="right", va="top", fontsize=7)
    h.set_title(f"histogram (axis to p{PLOT_PERCENTILE:g})", fontsize=10)
    h.set_ylabel("runs")
    h.legend(loc="center right", fontsize=8)
    c.set_title("CDF (dashed p50, dotted p90)", fontsize=10)
    c.set_ylabel("fraction of runs")
    c.legend(fontsize=8, loc="lower right")
    fig.suptitle(plot_title(result), fontsize=10)
    fig.tight_layout()
    return fig


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt

    fig = figure(result)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_outputs(result: dict[str, Any], out: str | Path) -> tuple[list[Path], list[str]]:
    """Write out.json (+ .csv, .md beside it, and .png where matplotlib is installed); (paths written, notes)."""
    out = Path(out)
    if out.suffix != ".json":
        out = out.with_suffix(".json")
    if not out.parent.exists() or not out.parent.is_dir():
        raise ConfigError(f"cannot write {out}: folder {out.parent} does not exist")
    try:
        write_atomic(out, json.dumps(result, indent=2, default=str) + "\n")
    except OSError as exc:
        raise ConfigError(f"cannot write {out}: {exc.strerror}") from None
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["mode", "run", "latency_ms"])
    for mode, values in result["raw_ms"].items():
        w.writerows([mode, i, f"{v:.5f}"] for i, v in enumerate(values))
    paths = [out, out.with_suffix(".csv"), out.with_suffix(".md")]
    write_atomic(paths[1], buf.getvalue())
    write_atomic(paths[2], markdown(result))
    try:
        import matplotlib  # noqa: F401 - optional on a device
    except ImportError:
        return paths, [
            f'no plot ({out.with_suffix(".png").name}): matplotlib is not installed; pip install "edgecnn[plots]" draws it'
        ]
    plot(result, out.with_suffix(".png"))
    return [*paths, out.with_suffix(".png")], []
