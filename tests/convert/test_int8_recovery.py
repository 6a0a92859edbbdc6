"""When int8 fails: per-layer sensitivity, --keep-float (named and auto) in every format, int16x8.

The failing model is tools/outlier_model.py: a CNN trained on the bundled digits whose conv2 has two output channels
256 times wider than the rest (a function-preserving rescaling: the float model is unchanged), the activation
outliers that make post-training int8 collapse in real networks. Plain int8 loses more than 5 points in TFLite,
ONNX Runtime and OpenVINO alike; --keep-float auto brings each back within --max-drop with two float layers or
fewer."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from edgecnn.cli import main
from edgecnn.errors import ConfigError
from edgecnn.host.convert.api import convert

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def outliers(outlier_model) -> Path:
    return outlier_model  # built once per session (conftest.py), shared with test_qat.py


def _convert(outliers: Path, out: Path, **options):
    options.setdefault("precisions", ["int8"])
    return convert(
        outliers / "model.keras",
        "host",
        data=str(outliers / "heldout"),
        calibration=str(outliers / "calibration"),
        out=out,
        **options,
    )


def test_plain_int8_fails_in_every_format_and_keep_float_auto_recovers_each(outliers, tmp_path):
    summary = _convert(outliers, tmp_path / "auto", keep_float="auto", sensitivity=True)
    rows = {r.format: r for r in summary.rows}
    assert set(rows) == {"tflite", "onnx", "openvino"}
    for fmt, row in rows.items():
        plain, kept = row.recovery[0], row.recovery[-1]
        assert plain["float_layers"] == [] and plain["drop_points"] > 5, (fmt, plain)  # the failure
        assert row.status == "ok" and kept["passed"] and kept["drop_points"] <= 1.0, (fmt, kept)  # the recovery
        assert 1 <= len(kept["float_layers"]) <= 2 and set(kept["float_layers"]) <= {"conv2", "conv3"}, (fmt, kept)
        assert kept["size_mb"] > plain["size_mb"]  # float weights cost bytes: the trade is reported
        assert "--keep-float auto: recovered with" in " ".join(row.notes)
        m = json.loads((Path(row.path) / "edgecnn.json").read_text())
        assert m["extra"]["keep_float"]["layers"] == kept["float_layers"]
        assert m["extra"]["keep_float"]["steps"][0]["drop_points"] == pytest.approx(plain["drop_points"])
        # the sensitivity report ranks the outlier layers first
        report = json.loads((Path(row.path) / "sensitivity.json").read_text())
        top = [r["layer"] for r in report["layers"]]
        assert top[0] == "conv3" and "conv2" in top[:3], (fmt, top)
        assert (Path(row.path) / "sensitivity.md").read_text().count("| conv") == 3
        assert (Path(row.path) / "sensitivity.png").stat().st_size > 5000
    # the recovered artifacts verify and run like any other (the runtime needs nothing new)
    assert main(["verify", str(summary.out), "--run"]) == 0


def test_named_float_layers_in_every_format_and_bad_names(outliers, tmp_path, capsys):
    summary = _convert(outliers, tmp_path / "named", keep_float="conv2,conv3")
    assert all(r.status == "ok" and r.keep_float == ["conv2", "conv3"] for r in summary.rows)
    with pytest.raises(ConfigError, match="no layer 'conv_2'.*conv2") as e:
        _convert(outliers, tmp_path / "typo", keep_float="conv_2")
    assert "conv1, conv2, conv3, predictions" in e.value.hint
    # a layer the converter folds away: that artifact's row says so (the others would go on)
    [row] = _convert(outliers, tmp_path / "input", keep_float="image", precisions=["tflite/int8"], gate=True).rows
    assert row.status == "ERROR" and "layer 'image' has no operator in the tflite model" in row.error
    with pytest.raises(ConfigError, match=r"apply to int8 artifacts \(int16x8 is its own way out\); this conversion makes fp32"):
        _convert(outliers, tmp_path / "fp32", keep_float="conv2", precisions=["fp32"])
    with pytest.raises(ConfigError, match="apply to int8 artifacts.*makes int16x8"):
        _convert(outliers, tmp_path / "i16", keep_float="conv2", precisions=["tflite/int16x8"])
    with pytest.raises(ConfigError, match="cannot run with --no-gate"):
        _convert(outliers, tmp_path / "nogate", keep_float="auto", gate=False)
    with pytest.raises(ConfigError, match="--accuracy-control chooses OpenVINO's float layers itself"):
        _convert(outliers, tmp_path / "ac", keep_float="conv2", accuracy_control=True)
    args = ["convert", str(outliers / "model.keras"), "--device", "host", "--precision", "int8", "--keep-float", ","]
    assert main([*args, "--out", str(tmp_path / "empty")]) == 1
    assert "--keep-float needs layer names" in capsys.readouterr().err


def test_int16x8_converts_and_passes_the_gate_on_lenet(lenet_run, tmp_path):
    summary = convert(lenet_run, "host", precisions=["tflite/int16x8", "onnx/int16x8"], out=tmp_path / "i16")
    assert [(r.format, r.precision, r.status) for r in summary.rows] == [
        ("tflite", "int16x8", "ok"),
        ("onnx", "int16x8", "ok"),
    ]
    for r in summary.rows:
        assert r.parity.accuracy_drop_points <= 1.0 and r.parity.agreement > 0.99
        m = json.loads((Path(r.path) / "edgecnn.json").read_text())
        assert m["precision"] == "int16x8" and m["input"]["quantization"] is None  # float at the edges
    with pytest.raises(ConfigError, match="precision 'int16x8' is not supported by 'openvino'"):
        convert(lenet_run, "host", precisions=["openvino/int16x8"], out=tmp_path / "ov")


def _check_ranks(summary) -> dict[str, tuple[str, int, list[str], float]]:
    """Per artifact: the sensitivity's top layer, its rank in the brute-force check, the check's top three, and how
    far the top layer's check error is from the check's best (1.0: as good as the best)."""
    out = {}
    for r in summary.rows:
        rep = json.loads((Path(r.path) / "sensitivity.json").read_text())
        by_check = sorted(rep["layers"], key=lambda row: row["check_rank"])
        top = rep["layers"][0]
        ratio = top["check_mean_abs_dp"] / max(by_check[0]["check_mean_abs_dp"], 1e-12)
        out[f"{r.format}/{r.precision}"] = (
            top["layer"],
            rep["check"]["top_layer_check_rank"],
            [x["layer"] for x in by_check[:3]],
            ratio,
        )
    return out


def test_sensitivity_top_layer_is_in_the_brute_force_top_three_on_lenet(lenet_run, tmp_path):
    """Brute force the other way round (every layer but one quantised): the layer the sensitivity table ranks first
    is among the three whose float alone recovers most, in every format."""
    summary = convert(lenet_run, "host", precisions=["int8"], out=tmp_path / "s", gate=False, sensitivity_check=True)
    ranks = _check_ranks(summary)
    print("LeNet-5 (top layer, its brute-force rank, brute-force top 3):", ranks)
    assert set(ranks) == {"tflite/int8", "onnx/int8", "openvino/int8"}
    # LeNet-5 quantises almost losslessly (mean |dp| about 4e-4 whatever is left in float): where the check's figures
    # are within 10% of each other the order is floating-point noise, and a near-tie counts as a match
    assert all(rank <= 3 or ratio < 1.1 for _, rank, _, ratio in ranks.values()), ranks


def test_sensitivity_top_layer_is_in_the_brute_force_top_three_on_mobilenet_v2(tmp_path):
    """MobileNetV2 (alpha 0.35, 96 px, seeded random weights) on crops of scikit-image's real photos, as in
    tools/bench_convert.py; TFLite and ONNX (OpenVINO's NNCF run per variant would take minutes here)."""
    sys.path.insert(0, str(REPO / "tools"))
    import keras
    from bench_convert import photo_crops

    from edgecnn.host.models import create_model, get_spec

    keras.utils.set_random_seed(0)
    m = create_model("mobilenet_v2", num_classes=10, input_size=96, alpha=0.35)
    m.save(tmp_path / "model.keras")
    get_spec("mobilenet_v2").preprocess_spec((96, 96), 3).save(tmp_path / "preprocess.json")
    (tmp_path / "labels.txt").write_text("\n".join(f"c{i}" for i in range(10)) + "\n")
    photos = photo_crops(tmp_path / "photos", n=96, size=96)
    summary = convert(
        tmp_path / "model.keras",
        "host",
        precisions=["tflite/int8", "onnx/int8"],
        data=str(photos),
        calibration=str(photos),
        out=tmp_path / "s",
        gate=False,
        sensitivity_check=True,
    )
    ranks = _check_ranks(summary)
    print("MobileNetV2 (top layer, its brute-force rank, brute-force top 3):", ranks)
    assert all(rank <= 3 for _, rank, _, _ in ranks.values()), ranks
