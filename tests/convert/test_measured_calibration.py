"""calibrate --from-measurements: the estimate for a device profile refitted from what boards measured.

The pairs here are written in the format `benchmark --on` keeps, for layer lists of different shapes, with board
times made from known coefficients and 5% noise: the fit must find what the prior got wrong, judged by
leave-one-out error. The end-to-end path (a real board over SSH) is in tests/remote/test_remote.py."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgecnn.cli import main
from edgecnn.devices import load_profile
from edgecnn.errors import ConfigError
from edgecnn.host.lab.measured_calibration import from_measurements
from edgecnn.profiling.estimate import COEFFICIENTS, KINDS, estimate, features, find_device_calibration


def _model(rng, n_layers: int) -> list[list]:
    """A plausible layer list: convolutions, pointwise, depthwise, a dense head, memory operators."""
    rows = []
    c = 16
    for _ in range(n_layers):
        kind = rng.choice(["conv", "pointwise", "depthwise", "memory", "average"], p=[0.3, 0.3, 0.25, 0.1, 0.05])
        hw = int(rng.integers(8, 56)) ** 2
        cout = int(rng.choice([16, 32, 64, 128]))
        macs = {"conv": hw * c * cout * 9, "pointwise": hw * c * cout, "depthwise": hw * c * 9}.get(kind, 0)
        params = {"conv": c * cout * 9, "pointwise": c * cout, "depthwise": c * 9}.get(kind, 0)
        rows.append([macs, params, hw * c * 4, hw * cout * 4, kind, cout, c])
        c = cout
    rows.append([c * 10, c * 10, c * 4, 40, "dense", 10, c])
    return rows


def _true_ms(layers, coef, device) -> float:
    return float(np.dot(features(layers, "fp32", device, device.threads, ref_clock_ghz=device.cpu.clock_ghz), coef))


def _write(folder, device, models, coef, rng, *, extra_lines=()):
    dev = load_profile(device)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{device}.jsonl", "w") as f:
        for i, layers in enumerate(models):
            for _ in range(2):  # measured twice: one artifact, the median of its p50s
                t = _true_ms(layers, coef, dev) * float(rng.uniform(0.95, 1.05))
                rec = {"device": device, "format": "tflite", "precision": "fp32", "model_name": f"m{i}"}
                rec |= {"artifact_sha256": f"{i:064x}", "measured_p50_ms": t, "runtime": {"runtime": "litert"}}
                rec |= {"threads": dev.threads, "layers": layers, "board": "ssh://pi"}
                f.write(json.dumps(rec) + "\n")
        for line in extra_lines:
            f.write(line + "\n")


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    """No host calibration: the prior is the plain roofline."""
    monkeypatch.setenv("EDGECNN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("EDGECNN_CALIBRATION_DIR", str(tmp_path / "cache" / "calibration"))
    return tmp_path / "cache"


def test_a_board_that_is_uniformly_slower_gets_one_factor(cache):
    rng = np.random.default_rng(0)
    models = [_model(rng, int(rng.integers(4, 20))) for _ in range(5)]
    roofline = np.array([0.0, 0.0, *([1.0] * len(KINDS))])
    _write(cache / "measurements", "rpi4", models, 3.0 * roofline, rng)
    [rec], skipped = from_measurements(["rpi4"], folder=cache / "measurements")
    assert skipped == {"rpi4": {}}
    assert rec["before_error_median_abs"] == pytest.approx(2 / 3, abs=0.05)  # the roofline is 3x optimistic
    assert rec["method"] == "scale" and rec["fit_error_median_abs"] < 0.06
    assert rec["coefficients"]["conv"] == pytest.approx(3.0, rel=0.06)
    assert [a["runs"] for a in rec["artifacts"]] == [2] * 5


def test_a_board_slow_at_one_kind_of_layer_is_refitted_and_the_estimate_follows(cache, capsys):
    rng = np.random.default_rng(1)
    models = [_model(rng, int(rng.integers(4, 24))) for _ in range(12)]
    true = np.array([0.05, 0.004, 1.5, 1.5, 8.0, 2.0, 1.5, 1.5, 1.0])  # depthwise far from its roofline
    assert len(true) == len(COEFFICIENTS)
    _write(
        cache / "measurements",
        "rpi4",
        models,
        true,
        rng,
        extra_lines=["{not json", json.dumps({"measured_p50_ms": 1, "runtime": "litert", "precision": "fp32"})],
    )
    assert main(["calibrate", "--from-measurements", "--device", "rpi4"]) == 0
    out, err = capsys.readouterr()
    assert "refit" in out and "1 line(s) left out: unreadable line" in err
    assert "1 line(s) left out: no per-layer costs" in err
    cal = find_device_calibration("rpi4", "litert", "fp32", 4)
    assert cal["method"].startswith("refit")
    loo = cal["leave_one_out_error_median_abs"]
    assert min(v for k, v in loo.items() if k.startswith("refit")) < 0.1 < loo["scale"] < loo["prior"]
    # a model the fit never saw: the estimate for rpi4 now follows the board
    rpi4, host = load_profile("rpi4"), load_profile("host")
    unseen = _model(np.random.default_rng(99), 16)
    truth = _true_ms(unseen, true, rpi4)
    est = estimate(unseen, "fp32", host=host, target=rpi4, measured_host_ms=1.0, device_calibration=cal)
    assert est["estimated_p50_ms"] == pytest.approx(truth, rel=0.2)
    assert "refitted from 12 artifact(s) measured on rpi4 boards (refit" in est["method"]
    assert est["range_ms"][0] < truth < est["range_ms"][1]
    plain = estimate(unseen, "fp32", host=host, target=rpi4, measured_host_ms=1.0, efficiency=1.0)
    assert abs(plain["estimated_p50_ms"] / truth - 1) > 0.4  # what it was before


def test_measurements_that_do_not_beat_the_prior_write_nothing(cache):
    rng = np.random.default_rng(2)
    models = [_model(rng, 10) for _ in range(4)]
    roofline = np.array([0.0, 0.0, *([1.0] * len(KINDS))])
    _write(cache / "measurements", "rpi4", models, roofline, rng)  # the roofline was right (within the noise)
    [rec], _ = from_measurements(["rpi4"], folder=cache / "measurements")
    if rec["method"] == "prior":
        assert rec["coefficients"] is None and "path" not in rec
        assert find_device_calibration("rpi4", "litert", "fp32", 4) is None
    else:  # a fit that edges out the prior inside the noise changes the estimate by no more than the noise
        assert rec["coefficients"]["conv"] == pytest.approx(1.0, rel=0.06)


def test_one_artifact_is_scaled_and_its_error_is_said_to_be_unknown(cache, capsys):
    rng = np.random.default_rng(3)
    _write(cache / "measurements", "jetson-nano", [_model(rng, 8)], np.array([0, 0, *([2.0] * len(KINDS))]), rng)
    assert main(["calibrate", "--from-measurements"]) == 0
    out = capsys.readouterr().out
    assert "jetson-nano" in out and "unknown (one artifact)" in out
    cal = find_device_calibration("jetson-nano", "litert", "fp32", load_profile("jetson-nano").threads)
    assert cal["method"] == "scale" and cal["fit_error_median_abs"] is None


def test_bad_requests_are_clear(cache, tmp_path, capsys):
    with pytest.raises(ConfigError, match="no measurements for 'rpi4'") as e:
        from_measurements(["rpi4"], folder=cache / "measurements")
    assert "edgecnn benchmark RUN --device rpi4 --on ssh://" in e.value.hint
    with pytest.raises(ConfigError, match="no measurements in"):
        from_measurements(None, folder=tmp_path / "empty")
    (cache / "measurements").mkdir(parents=True)
    (cache / "measurements" / "rpi4.jsonl").write_text("")
    with pytest.raises(ConfigError, match="rpi5"):  # did you mean
        from_measurements(["rpi"], folder=cache / "measurements")
    assert main(["calibrate", "--device", "rpi4"]) == 1
    assert "--device goes with --from-measurements" in capsys.readouterr().err
    assert main(["calibrate", "--from-measurements", "--quick"]) == 1
    assert "--from-measurements refits from kept measurements" in capsys.readouterr().err
    bad = cache / "calibration" / "devices" / "rpi4" / "litert-fp32-t4.json"
    bad.parent.mkdir(parents=True)
    bad.write_text("{}")
    with pytest.raises(ConfigError, match="not a calibration made from measurements"):
        find_device_calibration("rpi4", "litert", "fp32", 4)
