"""Input checks shared by every verb: text encodings, image files before decoding, recipe ranges, URI options."""

from __future__ import annotations

import codecs

import cv2
import numpy as np
import pytest

from edgecnn import images
from edgecnn.errors import ConfigError, StreamError
from edgecnn.text import read_lines, read_text


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "utf-16-be", "utf-32"])
def test_text_with_a_bom_or_in_utf8_is_read(tmp_path, encoding):
    p = tmp_path / "labels.txt"
    data = "chat\nthé\n\ncafé\n".encode(encoding)
    if encoding == "utf-16-be":
        data = codecs.BOM_UTF16_BE + data
    p.write_bytes(data)
    assert read_lines(p) == ["chat", "thé", "café"]


def test_latin1_text_is_refused_with_the_byte(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_bytes("name: café\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"is not UTF-8 text: byte 0xe9 at offset 9 \(Latin-1 or Windows-1252\?\)"):
        read_text(p, "recipe")
    with pytest.raises(ConfigError, match="recipe .* is a folder, not a file"):
        read_text(tmp_path, "recipe")
    with pytest.raises(ConfigError, match="recipe not found"):
        read_text(tmp_path / "nope.yaml", "recipe")


def test_image_sizes_come_from_the_header_of_every_format():
    img = np.zeros((30, 50, 3), np.uint8)
    for ext in (".png", ".jpg", ".bmp", ".webp"):
        data = cv2.imencode(ext, img)[1].tobytes()
        kind = images.kind_from_bytes(data[:16])
        assert images.dimensions(data, kind) == (50, 30), ext
        assert images.problem(data, ext) is None
        assert "over the limit of 1,000" in images.problem(data, ext, limit=1000)
    lossless = cv2.imencode(".webp", img, [cv2.IMWRITE_WEBP_QUALITY, 101])[1].tobytes()
    assert images.dimensions(lossless, "webp") == (50, 30)


def test_a_decompression_bomb_is_refused_before_decoding(tmp_path, monkeypatch):
    from tools_hostile import bomb_png

    path = bomb_png(tmp_path / "bomb.png", 20000, 20000)
    assert path.stat().st_size < 1_000_000
    img, why = images.check_image(path)
    assert img is None and why.startswith("20000 x 20000 = 400,000,000 pixels once decoded, over the limit of 64,000,000")
    monkeypatch.setenv("EDGECNN_MAX_IMAGE_PIXELS", "abc")
    with pytest.raises(ConfigError, match="EDGECNN_MAX_IMAGE_PIXELS must be a positive whole number"):
        images.check_image(path)


def test_truncated_and_lying_images(tmp_path):
    jpg = cv2.imencode(".jpg", np.full((16, 16, 3), 99, np.uint8))[1].tobytes()
    assert images.problem(jpg[:-40], ".jpg") == "truncated JPEG (no end-of-image marker)"
    assert images.problem(jpg, ".png") == "extension says png but the file is jpeg"
    assert images.problem(b"", ".png") == "empty file (0 bytes)"
    assert images.problem(b"GIF89a....", ".gif").startswith("GIF")


def test_recipe_ranges_and_the_yaml_float_hint(tmp_path):
    from edgecnn.host.train.recipe import load_recipe

    base = "name: t\ndata: bundled:digits\nmodel: {name: lenet5, input_size: 32, channels: 1}\n"
    cases = {
        "training: {learning_rate: 1e-3}\n": r"must be a number; received the text '1e-3'",
        "training: {learning_rate: 0}\n": r"'training.learning_rate' must be above 0 and at most 10; received 0",
        "training: {batch_size: 0}\n": r"'training.batch_size' must be at least 1",
        "split: {validation: 0.6, test: 0.5}\n": r"split.validation \+ split.test must stay below 1",
        "augmentation: {rotation: -0.1}\n": r"'augmentation.rotation' must be at least 0",
        "max_per_class: 0\n": r"'max_per_class' must be at least 1",
    }
    for extra, message in cases.items():
        (tmp_path / "r.yaml").write_text(base + extra)
        with pytest.raises(ConfigError, match=message):
            load_recipe(tmp_path / "r.yaml")
    (tmp_path / "r.yaml").write_text(base.replace("channels: 1", "channels: 2"))
    with pytest.raises(ConfigError, match="'model.channels' must be 1 or 3"):
        load_recipe(tmp_path / "r.yaml")


def test_uri_options_are_checked_by_name_and_range():
    from edgecnn.stream.sources import open_source

    assert open_source("synthetic:?fps=5&size=8x4&frames=3").opts == {"fps": 5.0, "size": (8, 4), "frames": 3}
    for uri, message in {
        "synthetic:?fps=0": "option fps must be a number from 0.1 to 1000; received '0'",
        "synthetic:?size=0x4": "option size must be WIDTHxHEIGHT, each from 1 to 8192",
        "synthetic:?frame=3": "unknown option 'frame' .*Did you mean 'frames'",
        "synthetic:?fps=inf": "option fps must be a number from 0.1 to 1000; received 'inf'",
    }.items():
        with pytest.raises(StreamError, match=message):
            open_source(uri)
