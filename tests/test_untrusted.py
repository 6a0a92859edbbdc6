"""Text and JSON from outside: passwords masked, terminal escapes stripped, hostile JSON refused in one line."""

from __future__ import annotations

import pytest

from edgecnn.errors import ArtifactError
from edgecnn.redact import has_password, redact
from edgecnn.untrusted import clean, clean_json, expect, loads


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("rtsp://admin:SECRET@10.0.0.2:554/s?x=1", "rtsp://admin:***@10.0.0.2:554/s?x=1"),
        ("cannot open source rtsp://admin:p@ss:w0rd@cam/stream (after 3 s)", "cannot open source rtsp://admin:***@cam/stream (after 3 s)"),
        ("http://cam/video?token=abc&size=1&api_key=k", "http://cam/video?token=***&size=1&api_key=***"),
        ("mqtts://bob:pw@broker:8883", "mqtts://bob:***@broker:8883"),
        ("rtsp://cam/s and mqtt://user@host", "rtsp://cam/s and mqtt://user@host"),
        ("file:/data/a:b@c.mp4", "file:/data/a:b@c.mp4"),
    ],
)
def test_redact_masks_passwords_and_tokens_only(text, masked):
    assert redact(text) == masked
    assert has_password(text) == ("***@" in masked)


def test_clean_strips_escapes_and_controls_but_keeps_lines():
    hostile = "error: \x1b]52;c;ZXZpbA==\x07boom\x1b]0;title\x1b\\ \x1b[2J\x1b[31mred\x1b[0m\x9b1m\x00\x08\x7f\tok\nnext"
    assert clean(hostile) == "error: boom red\tok\nnext"
    assert clean_json({"a\x1b[2J": ["x\x07", 1, {"b": "\x1b]0;t\x07y"}]}) == {"a": ["x", 1, {"b": "y"}]}


def test_loads_turns_every_hostile_json_into_one_error():
    with pytest.raises(ArtifactError, match="nested too deeply"):
        loads("[" * 200000 + "]" * 200000, "m.json", error=ArtifactError)
    with pytest.raises(ArtifactError, match=r"m\.json: not valid JSON"):
        loads(b"\xff\xfe{", "m.json", error=ArtifactError)
    assert loads('{"a": [1]}', "m.json") == {"a": [1]}


def test_expect_names_the_field_and_what_it_received():
    assert expect(3, float, "f: x") == 3
    with pytest.raises(ArtifactError, match=r"f: x must be a number; received true or false True"):
        expect(True, float, "f: x", error=ArtifactError)
    with pytest.raises(ArtifactError, match=r"f: y must be an object or null; received a string 'no'"):
        expect("no", (dict, type(None)), "f: y", error=ArtifactError)
