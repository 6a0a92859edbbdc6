"""edgecnn benchmark (every format x precision + recommendation) and edgecnn report (across devices)."""

from __future__ import annotations

import json

import pytest

from edgecnn.cli import main
from edgecnn.host.lab.benchmark import recommend


def test_recommendation_logic():
    rows = [
        {"artifact": "tflite/fp32", "precision": "fp32", "status": "ok", "p50_ms": 2.0, "drop_points": 0.0},
        {"artifact": "tflite/int8", "precision": "int8", "status": "ok", "p50_ms": 1.0, "drop_points": 0.3},
        {"artifact": "onnx/int8", "precision": "int8", "status": "failed", "p50_ms": 0.5, "drop_points": 4.0},
        {"artifact": "openvino/int8", "precision": "int8", "status": "error", "note": "x"},
    ]
    rec = recommend(rows, 1.0)
    assert rec["artifact"] == "tflite/int8"
    assert rec["why"] == "2.0x faster than tflite/fp32 here (1.000 ms p50), loses 0.3 points"  # the name is not repeated
    assert recommend(rows, 5.0)["artifact"] == "onnx/int8"
    assert recommend(rows[2:], 1.0)["artifact"] is None
    # for another device, ranked by the estimate there when every candidate has one
    rows[0]["estimate_p50_ms"], rows[1]["estimate_p50_ms"], rows[2]["estimate_p50_ms"] = 3.0, 4.0, 1.0
    rec = recommend(rows, 1.0, device="rpi4")
    assert rec["artifact"] == "tflite/fp32" and rec["ranked_by"] == "estimate_p50_ms"
    assert rec["why"] == "the fastest on rpi4 (estimated) (3.000 ms p50) within the accuracy budget of 1.0 points"
    del rows[2]["estimate_p50_ms"]  # one candidate without an estimate: measured here decides
    assert recommend(rows, 1.0, device="rpi4")["ranked_by"] == "p50_ms"


@pytest.mark.slow
def test_benchmark_for_rpi4_measures_here_and_estimates_there(lenet_run, tmp_path, capsys):
    args = ["benchmark", str(lenet_run), "--device", "rpi4", "--runs", "30", "--min-seconds", "0"]
    assert main([*args, "--out", str(tmp_path / "b"), "--quiet"]) == 0
    data = json.loads((tmp_path / "b" / "benchmark.json").read_text())
    assert data["device"] == "rpi4" and data["estimated_for"] == "rpi4"
    assert [r["artifact"] for r in data["rows"]] == [
        "tflite/int8", "tflite/dynamic", "tflite/fp32", "onnx/int8", "onnx/fp32", "openvino/fp32"
    ]  # fmt: skip
    for r in data["rows"]:
        assert r["p50_ms"] > 0 and r["estimate_p50_ms"] > r["p50_ms"] / 10 and "ESTIMATE" in r["estimate_method"], r
    assert data["recommendation"]["ranked_by"] == "estimate_p50_ms"
    md = (tmp_path / "b" / "benchmark.md").read_text()
    assert "rpi4 p50 ms (estimate)" in md and "on rpi4 (estimated)" in md
    assert "on rpi4 (estimated)" in capsys.readouterr().out.split("recommendation: ")[1]


@pytest.mark.slow
def test_benchmark_host(lenet_run, tmp_path, capsys):
    rc = main(
        [
            "benchmark",
            str(lenet_run),
            "--device",
            "host",
            "--runs",
            "30",
            "--min-seconds",
            "0",
            "--out",
            str(tmp_path / "b"),
            "--quiet",
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "recommendation: " in out
    data = json.loads((tmp_path / "b" / "benchmark.json").read_text())
    from edgecnn.devices import cpu_features, host_facts

    bf16 = bool(cpu_features(host_facts(query_gpu=False).flags)["bf16"])  # this CPU adds openvino/bf16 beside fp32
    assert len(data["rows"]) == 6 + bf16 and all(r["status"] == "ok" and r["p50_ms"] > 0 and r["peak_rss_mb"] > 0 for r in data["rows"])
    assert ("openvino/bf16" in {r["artifact"] for r in data["rows"]}) == bf16
    assert data["cpu"]["int8_outlook"] in (tmp_path / "b" / "benchmark.md").read_text()
    # profiled in a child process without TensorFlow: far below the ~900 MB a TensorFlow process holds
    assert max(r["peak_rss_mb"] for r in data["rows"]) < 400
    assert data["recommendation"]["artifact"] in {r["artifact"] for r in data["rows"]}
    assert (tmp_path / "b" / "pareto.png").stat().st_size > 1000 and "Recommendation" in (
        tmp_path / "b" / "benchmark.md"
    ).read_text()


def test_report_compares_and_flags(lenet_artifacts, tmp_path, capsys):
    for name, threads in (("pi", "1"), ("desk", "2")):
        assert (
            main(
                [
                    "profile",
                    str(lenet_artifacts / "tflite-fp32"),
                    "--threads",
                    threads,
                    "--runs",
                    "20",
                    "--min-seconds",
                    "0",
                    "--out",
                    str(tmp_path / f"{name}.json"),
                    "--quiet",
                ]
            )
            == 0
        )
    hot = json.loads((tmp_path / "pi.json").read_text())
    hot["system"]["temperatures_after_c"] = {"cpu-thermal": 83.0}
    (tmp_path / "pi.json").write_text(json.dumps(hot))
    assert main(["report", str(tmp_path / "pi.json"), str(tmp_path / "desk.json"), "--out", str(tmp_path / "cmp.png")]) == 0
    out = capsys.readouterr().out
    assert "threads differs between results (1, 2)" in out and "83 C after the run" in out
    assert (tmp_path / "cmp.png").stat().st_size > 1000
    (tmp_path / "x.json").write_text("{}")
    assert main(["report", str(tmp_path / "x.json")]) == 1
    assert "not an edgecnn profile result" in capsys.readouterr().err


def test_pareto_plot_cannot_make_one_image_look_dramatic(tmp_path):
    from edgecnn.host.lab.benchmark import pareto

    rows = [
        {
            "artifact": "tflite-fp32",
            "format": "tflite",
            "precision": "fp32",
            "p50_ms": 0.022,
            "accuracy": 286 / 360,
            "n": 360,
            "size_mb": 0.25,
        },
        {
            "artifact": "tflite-int8",
            "format": "tflite",
            "precision": "int8",
            "p50_ms": 0.039,
            "accuracy": 286 / 360,
            "n": 360,
            "size_mb": 0.07,
        },
        {
            "artifact": "openvino-int8",
            "format": "openvino",
            "precision": "int8",
            "p50_ms": 0.040,
            "accuracy": 287 / 360,
            "n": 360,
            "size_mb": 0.1,
        },
        {"artifact": "no-latency", "format": "onnx", "precision": "fp32", "p50_ms": None, "accuracy": 0.5, "n": 360},
    ]
    drawn = pareto(rows, tmp_path / "p.png")
    low, high = drawn["ylim"]
    assert high - low >= 10  # a 0.28-point difference is a sliver of the axis, not its whole height
    assert low <= 286 / 360 * 100 - 4 and high >= 287 / 360 * 100 + 4  # the 95% intervals (about ±4.2 points) fit
    assert drawn["labels"] == [
        "tflite-fp32: 286/360, 0.25 MB, 0.022 ms",
        "tflite-int8: 286/360, 0.07 MB, 0.039 ms",
        "openvino-int8: 287/360, 0.10 MB, 0.040 ms",
    ]
    assert drawn["texts_on_axes"] == 0  # names in the legend only: nothing on the plot can overlap
    assert (tmp_path / "p.png").stat().st_size > 5000


def _result_file(path, *, profile, measured_profile, cpu, arch="x86_64", estimate=None):
    s = {"p50": 0.05, "p90": 0.06, "p99": 0.07, "mean": 0.05, "std": 0.01, "min": 0.04, "max": 0.2, "fps": 20000.0, "n": 100}
    data = {
        "schema": "edgecnn.profile", "schema_version": 1, "device_profile": profile,
        "model": {"path": "/a/tflite-int8/model.tflite", "format": "tflite", "precision": "int8"},
        "runtime": {"runtime": "litert"}, "threads": 4, "invoke": s, "fresh_input": s,
        "memory": {"peak_rss_mb": 80.0}, "system": {"cpu_model": cpu, "arch": arch},
    }
    if measured_profile is not None:
        data["measured_profile"] = measured_profile
    if estimate:
        data["estimate"] = estimate
    path.write_text(json.dumps(data))
    return str(path)


def test_report_says_where_each_result_was_measured_apart_from_its_profile(tmp_path, capsys, monkeypatch):
    """Issue #31: the demo's host measurements, made with profile rpi4, were listed as 'rpi4' beside 'AMD EPYC' as if
    measured on a Pi. The machine and the profile are separate columns, and a profile the machine is not is marked
    NOT measured, with its estimate, and explained in a note; an older result without measured_profile is judged by
    the profile's CPU and architecture."""
    monkeypatch.setenv("COLUMNS", "200")
    est = {"device": "rpi4", "estimated_p50_ms": 0.1, "range_ms": [0.077, 0.13]}
    files = [
        _result_file(tmp_path / "demo.json", profile="rpi4", measured_profile="host", cpu="AMD EPYC 7B13", estimate=est),
        _result_file(tmp_path / "old.json", profile="rpi4", measured_profile=None, cpu="AMD EPYC 7B13"),
        _result_file(tmp_path / "pi.json", profile="rpi4", measured_profile="rpi4", cpu="Cortex-A72", arch="aarch64"),
        _result_file(tmp_path / "oldpi.json", profile="rpi4", measured_profile=None, cpu="Cortex-A72", arch="aarch64"),
        # an emulated Cortex-A72 has no device tree: its own profile is 'host', its CPU the rpi4's
        _result_file(tmp_path / "qemu.json", profile="rpi4", measured_profile="host", cpu="Cortex-A72", arch="aarch64"),
    ]
    assert main(["report", *files, "--out", str(tmp_path / "cmp.png")]) == 0
    out = capsys.readouterr().out
    lines = {ln.split("│")[1].strip(): ln for ln in out.splitlines() if ln.count("│") > 5}
    assert "AMD EPYC 7B13 (host)" in lines["demo"] and "rpi4: NOT measured (est. 0.1, likely 0.077-0.13 ms)" in lines["demo"]
    assert "rpi4: NOT measured" in lines["old"]
    assert "Cortex-A72 (rpi4)" in lines["pi"] and not any("NOT" in lines[k] for k in ("pi", "oldpi", "qemu"))
    notes = [ln for ln in out.splitlines() if ln.startswith("note:")]
    assert len([n for n in notes if "measured on AMD EPYC" in n and "not a rpi4's" in n]) == 2, notes
