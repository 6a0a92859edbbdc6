"""Image-folder datasets: every bad file gets its reason; validate exits 1 when training would refuse."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgecnn.cli import main
from edgecnn.errors import DataError
from edgecnn.host.data import load_dataset
from edgecnn.host.data.folders import validate_folder


def _png(path, value=128, shape=(12, 12, 3), dtype=np.uint8):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full(shape, value, dtype))


def _good_dataset(root, per_class=4):
    for c in ("cat", "dog"):
        for i in range(per_class):
            _png(root / c / f"{i}.png", 40 * i)
    return root


def test_good_folder_loads_in_folder_order(tmp_path):
    ds = load_dataset(_good_dataset(tmp_path / "d"))
    assert ds.class_names == ["cat", "dog"] and len(ds) == 8 and ds.source_order == "BGR"
    assert ds.counts() == {"cat": 4, "dog": 4}


def test_every_bad_file_is_listed_with_its_reason(tmp_path, capsys):
    root = _good_dataset(tmp_path / "d")
    (root / "cat" / "empty.jpg").write_bytes(b"")
    (root / "cat" / "notes.txt").write_text("hello")
    (root / "cat" / "page.jpg").write_text("<html>404</html>")
    ok, buf = cv2.imencode(".jpg", np.zeros((20, 20, 3), np.uint8))
    (root / "dog" / "trunc.jpg").write_bytes(buf.tobytes()[: len(buf) // 2])
    ok, png = cv2.imencode(".png", np.zeros((20, 20, 3), np.uint8))
    (root / "dog" / "lies.jpg").write_bytes(png.tobytes())
    _png(root / "dog" / "deep.png", 1000, dtype=np.uint16)
    (root / "dog" / "anim.png").write_bytes(b"GIF89a" + b"\x00" * 40)
    report, ds = validate_folder(root)
    reasons = {p.name: r for p, r in report.bad_files}
    assert reasons["empty.jpg"] == "empty file (0 bytes)"
    assert reasons["notes.txt"].startswith("not an image extension (.txt)")
    assert reasons["page.jpg"].startswith("not an image")
    assert reasons["trunc.jpg"].startswith("truncated JPEG")
    assert reasons["lies.jpg"] == "extension says jpeg but the file is png"
    assert reasons["deep.png"].startswith("uint16 pixels (16-bit)")
    assert "GIF" in reasons["anim.png"]
    assert len(ds) == 8
    assert main(["validate", str(root)]) == 1
    out = capsys.readouterr().out
    assert "bad: " in out and "empty.jpg: empty file (0 bytes)" in out
    with pytest.raises(DataError, match="7 bad file"):
        load_dataset(root)
    assert len(load_dataset(root, skip_bad=True)) == 8


def test_dataset_level_problems(tmp_path, capsys):
    with pytest.raises(DataError, match="data folder not found"):
        load_dataset(tmp_path / "missing")
    root = tmp_path / "one"
    _png(root / "only" / "a.png")
    report, _ = validate_folder(root)
    assert any("only one class" in p for p in report.problems)
    (root / "empty_class").mkdir()
    report, _ = validate_folder(root)
    assert any("'empty_class' has no usable images" in p for p in report.problems)
    assert main(["validate", str(root)]) == 1
    imb = tmp_path / "imb"
    for i in range(22):
        _png(imb / "a" / f"{i}.png")
    _png(imb / "b" / "0.png")
    _png(imb / "b" / "1.png")
    report, _ = validate_folder(imb)
    assert report.ok and report.warnings == ["strong class imbalance: largest/smallest = 22/2"]


def test_bundled_datasets_offline():
    digits = load_dataset("bundled:digits")
    assert len(digits) == 1797 and digits.images[0].dtype == np.uint8 and digits.images[0].max() <= 255
    faces = load_dataset("bundled:faces")
    assert len(faces) == 200 and faces.class_names == ["face", "not_face"]
    tr, va, te = digits.split(seed=0)
    assert len(tr) + len(va) + len(te) == 1797 and len(te) == 270
    tr2, _, te2 = digits.split(seed=0)
    assert (te.labels == te2.labels).all()  # deterministic
    expected = np.bincount(digits.labels) * len(te) / len(digits)
    assert np.abs(np.bincount(te.labels) - expected).max() <= 1  # stratified: class shares kept
