"""Sinks: a jsonl file shared by two processes, appends across runs, targets checked before the first frame."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from edgecnn.errors import StreamError
from edgecnn.stream.sinks import open_sink


def _classify(artifact, out, seconds):
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edgecnn",
            "classify",
            str(artifact),
            "--runtime",
            "litert",
            "--source",
            "synthetic:?fps=50&size=32x32",
            "--sink",
            f"jsonl:{out}",
            "--duration",
            str(seconds),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_a_second_writer_is_refused_and_no_line_is_torn_or_lost(lenet_artifacts, tmp_path):
    out = tmp_path / "p.jsonl"
    art = lenet_artifacts / "tflite-fp32"
    first = _classify(art, out, 8)
    deadline = time.monotonic() + 60
    while not (out.is_file() and out.read_text().count("\n") >= 1) and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)  # wait until the first one is streaming (it holds the lock from before its first line)
    assert first.poll() is None, "the first classify ended before the second one started"
    second = _classify(art, out, 1)
    _, err = second.communicate(timeout=60)
    assert second.returncode == 1
    assert f"error: another process is writing predictions to {out} (it holds the file's lock)" in err
    _, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    lines = out.read_text().splitlines()
    n = int(err.strip().splitlines()[-1].split("classified ")[1].split(",")[0])
    frames = [json.loads(ln)["frame"] for ln in lines]  # one line per classified frame, in order (a loaded
    assert len(lines) == n > 50 and frames == sorted(set(frames)) and frames[0] == 1  # machine drops some frames)
    again = _classify(art, out, 1)  # a restarted service appends: the earlier lines stay
    again.communicate(timeout=60)
    assert again.returncode == 0 and len(out.read_text().splitlines()) > n
    assert all(json.loads(ln) for ln in out.read_text().splitlines())


def test_targets_are_checked_when_the_sink_is_made(tmp_path):
    for uri, message in {
        "jsonl:": "jsonl: needs a file path, or - for standard output",
        f"jsonl:{tmp_path}/missing/p.jsonl": f"the folder {tmp_path}/missing does not exist",
        f"jsonl:{tmp_path}": "it is a folder",
        "http://:65536": "the port must be a number from 1 to 65535",
        f"{tmp_path}/missing/v.mp4": "does not exist",
        "out.webm": "unknown sink 'out.webm'",
    }.items():
        with pytest.raises(StreamError, match=message):
            open_sink(uri)
    sink = open_sink(f"jsonl:{tmp_path / 'ok.jsonl'}")
    with pytest.raises(StreamError, match="another process is writing predictions"):
        open_sink(f"jsonl:{tmp_path / 'ok.jsonl'}")  # flock is per open file: a second open in one process too
    sink.close()
    open_sink(f"jsonl:{tmp_path / 'ok.jsonl'}").close()
