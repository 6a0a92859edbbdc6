"""The latency plot reads at a glance (issue #31): its axis ends at a high percentile, not at the slowest run, the runs
beyond are counted on the plot, and its title names the artifact, format, precision, runtime and machine."""

from __future__ import annotations

import numpy as np
import pytest

from edgecnn.profiling import report
from edgecnn.profiling.stats import summarize

pytest.importorskip("matplotlib")


def _result(artifact: str, *, samples: dict[str, np.ndarray], runtime: str = "litert", profile: str = "host") -> dict:
    fmt, precision = artifact.split("-")
    return {
        "model": {
            "path": f"/x/lenet5-host/{artifact}/model.{fmt}",
            "artifact": f"/x/lenet5-host/{artifact}",
            "format": fmt,
            "precision": precision,
        },
        "runtime": {"runtime": runtime, "accelerator": "CPU"},
        "threads": 2,
        "device_profile": profile,
        "measured_profile": "host",
        "system": {"cpu_model": "AMD EPYC 7B13"},
        "raw_ms": {k: list(v) for k, v in samples.items()},
        **{k: summarize(list(v)) for k, v in samples.items()},
    }


def _with_hiccups(seed: int) -> dict[str, np.ndarray]:
    """200 runs near 0.05 ms and 3 scheduler hiccups at 5-20 ms, as the demo's profiles on a shared machine: the
    hiccups are 1.5 % of runs, so p99 is one of them."""
    rng = np.random.default_rng(seed)
    out = {}
    for mode in ("invoke", "fresh_input"):
        v = rng.normal(0.05, 0.004, 200).clip(0.03)
        v[rng.choice(200, 3, replace=False)] = [5.0, 11.0, 20.0]
        out[mode] = v
    return out


def test_the_axis_ends_at_a_high_percentile_and_the_hiccups_are_counted():
    import matplotlib.pyplot as plt

    samples = _with_hiccups(0)
    fig = report.figure(_result("tflite-int8", samples=samples))
    try:
        hist, cdf = fig.axes
        lo, hi = hist.get_xlim()
        every = np.concatenate(list(samples.values()))
        assert hi <= 1.1 * np.percentile(every, report.PLOT_PERCENTILE) and hi < 0.2 and lo >= 0.9 * every.min(), (lo, hi)
        assert cdf.get_xlim() == (lo, hi)
        bars = [p.get_height() for p in hist.patches]
        assert sum(h > 0 for h in bars) >= 15, bars  # the distribution spreads over the bars, not one
        assert max(bars) < 0.3 * 200, max(bars)
        notes = [t.get_text() for t in hist.texts]
        assert any("invoke: 3 of 200 runs above" in t and "slowest 20.000" in t for t in notes), notes
        assert any("fresh_input: 3 of 200 runs above" in t for t in notes), notes
    finally:
        plt.close(fig)


def test_no_off_scale_note_when_nothing_is_off_scale():
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(1)
    samples = {m: rng.normal(1.0, 0.05, 300) for m in ("invoke", "fresh_input")}
    fig = report.figure(_result("onnx-fp32", samples=samples))
    try:
        hist = fig.axes[0]
        n_above = sum((v > hist.get_xlim()[1]).sum() for v in samples.values())
        texts = [t.get_text() for t in hist.texts]
        assert (n_above == 0) == (not texts), (n_above, texts)
    finally:
        plt.close(fig)


def test_two_artifacts_get_two_titles_naming_what_and_where():
    import matplotlib.pyplot as plt

    titles = []
    for artifact, runtime in (("tflite-int8", "litert"), ("tflite-fp32", "litert"), ("onnx-int8", "onnxruntime")):
        fig = report.figure(_result(artifact, samples=_with_hiccups(2), runtime=runtime, profile="rpi4"))
        titles.append(fig._suptitle.get_text())
        plt.close(fig)
    assert len(set(titles)) == 3, titles
    fmt, precision = "tflite", "int8"
    assert titles[0].startswith(f"lenet5-host/tflite-int8: {fmt}/{precision}, litert on CPU, 2 threads"), titles[0]
    assert "measured on AMD EPYC 7B13 (profile host; chain and threads of rpi4)" in titles[0], titles[0]


def test_the_png_is_written(tmp_path):
    report.plot(_result("tflite-int8", samples=_with_hiccups(3)), tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
