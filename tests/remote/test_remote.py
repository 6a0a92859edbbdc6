"""Boards over SSH, against a real OpenSSH server on 127.0.0.1; the board's edgecnn is a TensorFlow-free venv with
only `.[litert,sign]` (the session's device_venv). Deployment restarts a real classify process."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from sshd import SSHServer  # noqa: E402

from edgecnn.cli import main  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = SSHServer(tmp_path_factory.mktemp("sshd"))
    yield s
    s.stop()


@pytest.fixture()
def on(server, device_venv, tmp_path):
    """The --on options that reach the loopback board, with its cache in this test's folder."""
    return [
        "--on",
        server.url,
        "--ssh-config",
        str(server.config),
        "--remote-edgecnn",
        str(device_venv / "bin" / "edgecnn"),
        "--remote-cache",
        str(tmp_path / "board-cache"),
    ]


def test_profile_on_a_board_measures_there_and_a_repeat_copies_nothing(lenet_artifacts, on, tmp_path, capsys):
    args = ["profile", str(lenet_artifacts / "tflite-int8"), "--runs", "30", "--min-seconds", "0", "--json", *on]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["runtime"]["runtime"] == "litert" and first["invoke"]["n"] >= 30
    assert first["measured_on"]["copy"]["copied"] is True and first["measured_on"]["copy"]["method"] in ("rsync", "scp")
    cached = list((tmp_path / "board-cache").glob("*/tflite-int8/model.tflite"))
    assert len(cached) == 1 and cached[0].read_bytes() == (lenet_artifacts / "tflite-int8" / "model.tflite").read_bytes()
    assert main([*args, "--out", str(tmp_path / "board")]) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["measured_on"]["copy"] == {"copied": False, "method": "cached", "seconds": pytest.approx(0, abs=2)}
    saved = json.loads((tmp_path / "board.json").read_text())
    assert saved["measured_on"]["board"] == on[1] and len(saved["raw_ms"]["invoke"]) >= 30
    assert (tmp_path / "board.csv").read_text().count("\n") >= 60  # the samples came back too


def test_verify_on_a_board_runs_the_self_check_there_and_checks_the_signature(lenet_artifacts, on, tmp_path, capsys):
    from test_signing import make_key_pair

    private, public = make_key_pair(tmp_path, "fleet")
    art = tmp_path / "art"
    shutil.copytree(lenet_artifacts, art)
    assert main(["sign", str(art), "--key", str(private)]) == 0
    capsys.readouterr()
    assert main(["verify", str(art), "--run", "--trust-key", str(public), *on]) == 0
    out = capsys.readouterr().out
    assert out.count("signature verified") == 7 and out.count("self-check passed") == 2, out  # 6 artifacts + the set
    assert all(line.startswith(f"[{on[1]}]") for line in out.splitlines())
    _, other = make_key_pair(tmp_path, "other")
    assert main(["verify", str(art / "tflite-int8"), "--trust-key", str(other), *on]) == 1
    assert "not made with the key" in capsys.readouterr().err


def test_unreachable_wrong_key_and_missing_edgecnn_are_one_line_each(server, lenet_artifacts, on, capsys):
    from sshd import _free_port

    model = str(lenet_artifacts / "tflite-int8")
    closed = [*on]
    closed[1] = f"ssh://root@127.0.0.1:{_free_port()}"
    cases = [
        (closed, "connect: connection refused"),
        ([*on[:2], "--ssh-config", str(server.client_config(server.other_key)), *on[4:]], "connect: the board refused the key"),
        ([*on[:4], "--remote-edgecnn", "/nowhere/edgecnn", *on[6:]], "no edgecnn there ('/nowhere/edgecnn': command not found)"),
    ]
    for options, expected in cases:
        t0 = time.monotonic()
        assert main(["profile", model, "--runs", "5", "--min-seconds", "0", *options]) == 1
        err = capsys.readouterr().err
        errors = [line for line in err.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and expected in errors[0], err
        assert "Traceback" not in err and time.monotonic() - t0 < 20
    assert main(["profile", model, "--on", "ssh://host:99999"]) == 1
    assert "the port must be a number from 1 to 65535" in capsys.readouterr().err
    assert main(["profile", model, "--on", "no-such-board", "--fleet-file", "/nonexistent.yaml"]) == 1
    assert "no fleet file at /nonexistent.yaml" in capsys.readouterr().err


def test_a_connection_dropped_mid_copy_leaves_no_folder_that_looks_whole(on, tmp_path, capsys):
    server = SSHServer(tmp_path / "sshd")  # its own server: this one is killed
    on = [on[0], server.url, on[2], str(server.config), *on[4:]]
    big = tmp_path / "big-artifact"
    big.mkdir()
    with open(big / "model.tflite", "wb") as f:
        for _ in range(64):
            f.write(bytes(range(256)) * 16384)  # 256 MiB
    cache = tmp_path / "board-cache"
    result: dict = {}

    def copy() -> None:
        result["code"] = main(["verify", str(big), *on])

    t = threading.Thread(target=copy)
    t.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any(p.stat().st_size > 0 for p in cache.glob("*/*.part-*/**/*") if p.is_file()):
        time.sleep(0.02)
    server.stop()
    try:
        t.join(60)
        err = capsys.readouterr().err
        assert result["code"] == 1 and err.startswith("error: ") and ("copy big-artifact" in err or "connect:" in err), err
        assert not [p for p in cache.glob("*/big-artifact") if p.is_dir()]  # only a .part folder, never the name
    finally:
        server.stop()


SERVICE = """#!/bin/sh
# the "service": one classify process on TO/current/tflite-int8, restarted by replacing the last one
TO="$1"
[ -f "$TO/service.pid" ] && kill "$(cat "$TO/service.pid")" 2>/dev/null && sleep 0.3
nohup {edgecnn} classify "$TO/current/tflite-int8" --source 'synthetic:?fps=20&size=32x32' \\
    --health "$TO/health.jsonl" --health-every 0.3 > "$TO/service.log" 2>&1 < /dev/null &
echo $! > "$TO/service.pid"
"""


def test_deploy_switches_restarts_and_rolls_back_when_the_service_does_not_come_up(
    lenet_artifacts, lenet_run, on, device_venv, tmp_path, capsys
):
    from edgecnn.host.convert.api import convert

    to = tmp_path / "board" / "models" / "digits"
    service = tmp_path / "service.sh"
    service.write_text(SERVICE.format(edgecnn=device_venv / "bin" / "edgecnn"))
    service.chmod(0o755)
    watch = ["--restart", f"{service} {to}", "--health", str(to / "health.jsonl"), "--grace", "15"]
    # a deploy that must fail waits out its whole grace: a short one (a healthy service writes within 1-2 s)
    doomed = [*watch[:-1], "4"]
    try:
        assert main(["deploy", str(lenet_artifacts), "--to", str(to), *watch, "--json", *on]) == 0
        first = json.loads(capsys.readouterr().out)
        assert first["switched"] and first["previous"] is None
        assert (to / "current").resolve() == (to / "releases" / first["release"]).resolve()
        assert (to / "current" / "tflite-int8" / "model.tflite").is_file()

        # a set without the int8 artifact the service runs: verified fine, but the service cannot start on it
        fp32_only = tmp_path / "fp32-only"
        convert(lenet_run, "host", out=fp32_only, precisions=["tflite/fp32"])
        assert main(["deploy", str(fp32_only), "--to", str(to), *doomed, *on]) == 1
        rolled_back = time.time()
        err = capsys.readouterr().err
        assert "was unhealthy (no new line in the health log" in err and "within 4 s" in err and f"rolled back to releases/{first['release']}" in err
        assert (to / "current").resolve() == (to / "releases" / first["release"]).resolve()
        # the previous release's service is classifying again: a health line written after the rollback (waited
        # for, not slept on: the bound is generous for a loaded machine, and a dead service never writes one)
        # (the restarted service starts its log afresh, so it can be empty or mid-line when read)
        deadline, last = time.monotonic() + 15, 0.0
        while time.monotonic() < deadline and last <= rolled_back:
            time.sleep(0.2)
            complete = [ln for ln in (to / "health.jsonl").read_text().split("\n")[:-1] if ln.strip()]
            last = json.loads(complete[-1])["time"] if complete else 0.0
        assert last > rolled_back, (last, rolled_back)

        # a tampered release is refused before the switch
        bad = tmp_path / "tampered"
        shutil.copytree(lenet_artifacts, bad)
        manifest = json.loads((bad / "tflite-int8" / "edgecnn.json").read_text())
        manifest["labels"] = [f"x{i}" for i in range(len(manifest["labels"]))]
        (bad / "tflite-int8" / "edgecnn.json").write_text(json.dumps(manifest))
        assert main(["deploy", str(bad), "--to", str(to), *watch, *on]) == 1
        err = capsys.readouterr().err
        assert "deploy stopped before the switch" in err and "the current deployment is untouched" in err
        assert (to / "current").resolve() == (to / "releases" / first["release"]).resolve()

        # a second good release, then back by hand
        signed_copy = tmp_path / "second"
        shutil.copytree(lenet_artifacts, signed_copy)
        (signed_copy / "summary.md").write_text((signed_copy / "summary.md").read_text() + "\n")
        assert main(["deploy", str(signed_copy), "--to", str(to), *watch, "--json", *on]) == 0
        second = json.loads(capsys.readouterr().out)
        assert second["previous"] == f"releases/{first['release']}"
        assert main(["deploy", "--rollback", "--to", str(to), "--restart", f"{service} {to}", *on]) == 0
        assert (to / "current").resolve() == (to / "releases" / first["release"]).resolve()
        assert (to / "previous").resolve() == (to / "releases" / second["release"]).resolve()

        # a failed deploy leaves both links as they were: --rollback still goes where it went before
        assert main(["deploy", str(fp32_only), "--to", str(to), *doomed, *on]) == 1
        assert "was unhealthy" in capsys.readouterr().err
        assert (to / "current").resolve() == (to / "releases" / first["release"]).resolve()
        assert (to / "previous").resolve() == (to / "releases" / second["release"]).resolve()
    finally:
        pid = to / "service.pid"
        if pid.is_file():
            subprocess.run(["kill", pid.read_text().strip()], check=False)


def test_fleet_lists_reachable_and_unreachable_boards(server, device_venv, tmp_path, capsys):
    from sshd import _free_port

    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(
        "boards:\n"
        f"  loopback:\n    url: {server.url}\n    device: host\n    edgecnn: {device_venv / 'bin' / 'edgecnn'}\n"
        f"    ssh_config: {server.config}\n    labels: [test]\n"
        f"  gone:\n    url: ssh://root@127.0.0.1:{_free_port()}\n    ssh_config: {server.config}\n"
    )
    assert main(["fleet", "--fleet-file", str(fleet), "--json"]) == 1  # one board is unreachable
    status = {s["board"]: s for s in json.loads(capsys.readouterr().out)}
    assert status["loopback"]["reachable"] and status["loopback"]["detected"] == "host"
    assert status["loopback"]["arch"] == "x86_64" and status["loopback"]["throttled"] == "n/a"
    assert not status["gone"]["reachable"] and "connection refused" in status["gone"]["error"]
    fleet.write_text("boards:\n  x:\n    url: ssh://a\n    colour: red\n")
    assert main(["fleet", "--fleet-file", str(fleet)]) == 1
    assert "unknown key 'colour'" in capsys.readouterr().err


def test_benchmark_on_a_board_fills_the_latency_columns_with_its_measurements(lenet_run, on, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EDGECNN_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "bench"
    args = ["benchmark", str(lenet_run), "--device", "host", "--runs", "20", "--min-seconds", "0", "--out", str(out)]
    assert main([*args, *on]) == 0
    result = json.loads((out / "benchmark.json").read_text())
    assert result["measured_on"] == on[1]
    assert all(r["here_p50_ms"] > 0 for r in result["rows"])
    # the board has LiteRT only: the TFLite artifacts are measured there, the others say why not and are not ranked
    measured = [r for r in result["rows"] if r.get("p50_ms")]
    assert [r["format"] for r in measured] == ["tflite", "tflite"]
    assert all(
        "not measured on" in r["note"] and 'pip install "edgecnn[' in r["note"] for r in result["rows"] if r not in measured
    )
    assert result["recommendation"]["artifact"].startswith("tflite/")
    assert result["recommendation"]["why"].count(f"on {on[1]}") == 1
    assert f"| p50 ms on {on[1]} |" in (out / "benchmark.md").read_text()
    pairs = [json.loads(line) for line in (tmp_path / "cache" / "measurements" / "host.jsonl").read_text().splitlines()]
    assert len(pairs) == 2 and {(p["format"], p["precision"]) for p in pairs} == {(r["format"], r["precision"]) for r in measured}
    assert all(p["board"] == on[1] and p["measured_p50_ms"] > 0 and p["source_sha256"] for p in pairs)
    capsys.readouterr()
    # an unreachable board is refused before the conversion starts
    closed = [*on]
    closed[1] = "ssh://root@127.0.0.1:1"
    assert main([*args[:-1], str(tmp_path / "bench2"), *closed]) == 1
    assert "connect: connection refused" in capsys.readouterr().err and not (tmp_path / "bench2").exists()


def test_measurements_from_a_board_refit_the_estimate_for_its_device_profile(lenet_run, on, tmp_path, monkeypatch, capsys):
    """benchmark --device rpi4 --on BOARD keeps (estimate, measurement) pairs; calibrate --from-measurements refits
    the rpi4 estimate from them; profile --device rpi4 then estimates from the refit (the board here is this host, so
    the refitted estimate must come near what it measured)."""
    monkeypatch.setenv("EDGECNN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("EDGECNN_CALIBRATION_DIR", str(tmp_path / "cache" / "calibration"))
    out = tmp_path / "bench"
    args = ["benchmark", str(lenet_run), "--device", "rpi4", "--runs", "20", "--min-seconds", "0", "--out", str(out)]
    assert main([*args, *on]) == 0
    rows = {f"{r['format']}-{r['precision']}": r for r in json.loads((out / "benchmark.json").read_text())["rows"]}
    board_ms = rows["tflite-int8"]["p50_ms"]
    before = rows["tflite-int8"]["estimate_p50_ms"] / board_ms - 1
    pairs = [json.loads(line) for line in (tmp_path / "cache" / "measurements" / "rpi4.jsonl").read_text().splitlines()]
    assert len(pairs) == 3 and all(p["layers"] and p["artifact_sha256"] for p in pairs)
    capsys.readouterr()
    assert main(["calibrate", "--from-measurements", "--device", "rpi4", "--json"]) == 0
    records = {r["precision"]: r for r in json.loads(capsys.readouterr().out)["records"]}
    assert len(records["int8"]["artifacts"]) == 1 and len(records["fp32"]["artifacts"]) == 2  # fp32 and dynamic
    assert records["int8"]["method"] == "scale" and records["int8"]["path"].endswith("devices/rpi4/litert-int8-t4.json")
    assert records["int8"]["before_error_median_abs"] == pytest.approx(abs(before), rel=0.01)
    assert main(["profile", str(out / "artifacts" / "tflite-int8"), "--device", "rpi4", "--runs", "20", "--min-seconds", "0", "--json"]) == 0
    est = json.loads(capsys.readouterr().out)["estimate"]
    assert "refitted from 1 artifact(s) measured on rpi4 boards (scale" in est["method"]
    after = est["estimated_p50_ms"] / board_ms - 1
    print(f"rpi4 estimate vs the board's measurement: before the refit {before:+.0%}, after {after:+.0%}")
    assert abs(after) < 0.5 < abs(before) or abs(after) < abs(before) / 2, (before, after)


def test_benchmark_on_the_fleet_measures_every_board_at_once_and_one_down_does_not_stop_the_others(
    server, device_venv, lenet_run, tmp_path, capsys
):
    from sshd import _free_port

    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(
        "boards:\n"
        f"  loopback:\n    url: {server.url}\n    edgecnn: {device_venv / 'bin' / 'edgecnn'}\n"
        f"    ssh_config: {server.config}\n    cache: {tmp_path / 'board-cache'}\n"
        f"  gone:\n    url: ssh://root@127.0.0.1:{_free_port()}\n    ssh_config: {server.config}\n"
    )
    out = tmp_path / "bench"
    args = ["benchmark", str(lenet_run), "--device", "host", "--runs", "20", "--min-seconds", "0", "--out", str(out)]
    assert main([*args, "--fleet", "--fleet-file", str(fleet)]) == 1  # a board is down, and LiteRT cannot run ONNX
    captured = capsys.readouterr()
    cells = json.loads((out / "benchmark.json").read_text())["fleet"]
    assert {n: c["state"] for n, c in cells["loopback"].items()} == {
        "tflite-fp32": "done",
        "tflite-int8": "done",
        "onnx-fp32": "error",
        "onnx-int8": "error",
        "openvino-fp32": "error",
        "openvino-int8": "error",
    }
    assert all(c["state"] == "error" and "connection refused" in c["error"] for c in cells["gone"].values())
    assert "invoke p50 ms on each board" in captured.out and "compare them: edgecnn report" in captured.out
    files = sorted((out / "boards").glob("*/*.json"))
    assert [p.name for p in files] == ["tflite-fp32.json", "tflite-int8.json"]
    assert main(["report", *map(str, files), "--out", str(tmp_path / "cmp.png")]) == 0
    assert main([*args, "--fleet", "nope", "--fleet-file", str(fleet)]) == 1
    assert "no board 'nope'" in capsys.readouterr().err


def test_ssh_messages_become_causes_a_refused_key_is_not_a_folder_that_cannot_be_written():
    from edgecnn.remote.transport import Board, _why

    board = Board(url="ssh://pi@10.0.0.2")
    cases = {
        "pi@10.0.0.2: Permission denied (publickey,password).": "connect: the board refused the key",
        "mkdir: cannot create directory '/opt/edgecnn': Permission denied": "connect: cannot write there",
        'rsync: [receiver] mkstemp "/ro/x" failed: Read-only file system (30)': "connect: cannot write there",
        "scp: /data/m.tflite: No space left on device": "connect: no space left on the board",
        "client_loop: send disconnect: Broken pipe\nlost connection": "connect: the connection dropped",
    }
    for stderr, expected in cases.items():
        assert _why(board, "connect", stderr, 1).message.startswith(f"ssh://pi@10.0.0.2: {expected} ("), stderr
