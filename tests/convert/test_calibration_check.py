"""edgecnn calibrate-check and the check convert runs on a --calibration folder: each mistake gets its clear line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgecnn.cli import main
from edgecnn.errors import DataError
from edgecnn.host.convert.api import convert

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def digits_folder(tmp_path_factory) -> Path:
    """300 training-split digits in class folders, as a user's calibration folder would be."""
    from edgecnn.host.data.bundled import load_bundled

    ds = load_bundled("digits")
    train, _, _ = ds.split(validation=0.15, test=0.15, seed=0)
    out = tmp_path_factory.mktemp("calib")
    for i in np.random.default_rng(1).permutation(len(train))[:300]:
        d = out / train.class_names[int(train.labels[i])]
        d.mkdir(exist_ok=True)
        cv2.imwrite(str(d / f"{i}.png"), train.images[i])
    return out


def _photos(folder: Path, grey: bool) -> Path:
    from skimage import data

    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, img in enumerate([data.astronaut(), data.coffee(), data.chelsea(), data.rocket()] * 8):
        y, x = (int(v) for v in rng.integers(0, 200, 2))
        crop = img[y : y + 128, x : x + 128]
        cv2.imwrite(str(folder / f"{i}.png"), cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY if grey else cv2.COLOR_RGB2BGR))
    return folder


def test_a_good_set_passes_and_the_sweep_says_how_many_are_enough(lenet_run, digits_folder, capsys):
    assert main(["calibrate-check", str(lenet_run), "--calibration", str(digits_folder), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [f["level"] for f in report["findings"]] == ["ok"] * len(report["findings"])
    sweep = report["figures"]["size_sweep"]
    assert [p["n"] for p in sweep] == [50, 100, 300]
    assert all(p["agreement"] > 0.95 for p in sweep) and report["figures"]["enough"] in (50, 100, 300)
    counts = report["figures"]["class_counts"]
    assert sorted(counts) == [str(i) for i in range(10)] and sum(counts.values()) == 300 and min(counts.values()) > 15


def test_one_class_colour_photos_and_wrong_sizes_are_clear_errors(lenet_run, digits_folder, tmp_path, capsys):
    one = tmp_path / "one"
    shutil.copytree(digits_folder / "3", one / "3")
    assert main(["calibrate-check", str(lenet_run), "--calibration", str(one)]) == 1
    out, err = capsys.readouterr()
    assert "every image is in one class folder ('3')" in err and "predicts '3' for 100% of the images" in out
    colour = _photos(tmp_path / "colour", grey=False)
    assert main(["calibrate-check", str(lenet_run), "--calibration", str(colour)]) == 1
    err = capsys.readouterr().err
    assert "100% of the images are in colour; the model was trained on grey images" in err
    assert "the images are 128x128 (median), the training images 8x8" in err
    grey = _photos(tmp_path / "grey", grey=True)
    assert main(["calibrate-check", str(lenet_run), "--calibration", str(grey), "--sizes", ""]) == 1
    out, err = capsys.readouterr()
    assert "in colour" not in err and "the training images 8x8" in err
    assert "standard deviations from the training images' brightness/contrast" in out
    # convert checks a --calibration folder before converting, and refuses the same mistake
    with pytest.raises(DataError, match=r"every image is in one class folder \('3'\)"):
        convert(lenet_run, "host", precisions=["tflite/int8"], calibration=str(one), out=tmp_path / "c")
    assert not (tmp_path / "c").exists()


def test_convert_records_a_warning_in_the_manifest(lenet_run, digits_folder, tmp_path):
    lopsided = tmp_path / "lopsided"
    shutil.copytree(digits_folder, lopsided)
    for d in lopsided.iterdir():
        if d.name not in ("0", "1"):
            for f in list(d.iterdir())[3:]:
                f.unlink()
    summary = convert(lenet_run, "host", precisions=["tflite/int8"], calibration=str(lopsided), out=tmp_path / "c")
    m = json.loads((Path(summary.rows[0].path) / "edgecnn.json").read_text())
    assert any("unbalanced" in w for w in m["extra"]["calibration"]["warnings"])
