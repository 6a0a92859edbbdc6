"""Every bad input to ``edgecnn serve`` gets one clear error line (and a hint), exit 1, before any frame."""

from __future__ import annotations

import pytest
from serve_helpers import free_port

from edgecnn.cli import main


def error_of(capsys, argv: list[str]) -> tuple[int, str]:
    code = main(["serve", *argv])
    err = capsys.readouterr().err
    return code, err


@pytest.mark.parametrize(
    "roi",
    ["10,10,0,5", "1,2,3", "a,b,c,d", "-1,0,4,4", "0,0,4,4,4"],
)
def test_bad_roi(capsys, lenet_tflite, roi):
    code, err = error_of(capsys, [str(lenet_tflite), "--source", "synthetic:", f"--roi={roi}"])
    assert code == 1
    assert err.splitlines()[0] == (
        f"error: --roi must be x,y,w,h in the capture's pixels (four whole numbers; x, y from 0, w and h above 0); "
        f"received '{roi}'"
    )
    assert "hint: e.g. --roi 100,40,320,240" in err


def test_a_roi_outside_the_frame_is_named_with_the_frame_size(capsys, lenet_tflite):
    code, err = error_of(capsys, [str(lenet_tflite), "--source", "synthetic:?size=64x48&frames=5", "--roi", "40,0,32,32"])
    assert code == 1
    assert "error: source 'camera': the region 40,0,32,32 (x,y,w,h) does not fit its 64x48 frames" in err
    assert "give a --roi inside 0,0,64,48" in err


def test_unknown_serve_yaml_key_names_the_valid_ones_and_the_closest(capsys, lenet_tflite, tmp_path):
    cfg = tmp_path / "serve.yaml"
    cfg.write_text(f"artifact: {lenet_tflite}\nsources:\n  - {{uri: 'synthetic:', debounse: 4}}\n")
    code, err = error_of(capsys, ["--config", str(cfg)])
    assert code == 1
    line = err.splitlines()[0]
    assert line.startswith(f"error: {cfg}: unknown key 'sources[0].debounse' (valid keys: debounce, loop, min_confidence")
    assert line.endswith("Did you mean 'debounce'?")
    cfg.write_text(f"artifact: {lenet_tflite}\nmqtt_url: mqtt://x\n")
    code, err = error_of(capsys, ["--config", str(cfg)])
    assert "unknown key 'mqtt_url'" in err and "Did you mean 'mqtt'?" in err


def test_a_password_in_the_broker_url_is_refused_and_not_echoed(capsys, lenet_tflite):
    code, err = error_of(capsys, [str(lenet_tflite), "--source", "synthetic:", "--mqtt", "mqtt://ha:hunter2@127.0.0.1"])
    assert code == 1
    assert "hunter2" not in err
    assert err.splitlines()[0] == (
        "error: --mqtt: a password in the broker URL is refused (received mqtt://ha:***@127.0.0.1): it would be "
        "visible in the process list and the shell history"
    )
    assert "--mqtt-password-file" in err and "EDGECNN_MQTT_PASSWORD" in err
    code, err = error_of(capsys, [str(lenet_tflite), "--source", "synthetic:", "--mqtt-password", "hunter2"])
    assert code == 1 and "hunter2" not in err
    assert err.startswith("error: --mqtt-password is refused: a password on the command line is visible in the process list")


@pytest.mark.parametrize(
    "url,message",
    [
        ("http://broker", "--mqtt must be mqtt://[user@]host[:port] or mqtts://[user@]host[:port]; received 'http://broker'"),
        ("mqtt://broker:99999", "--mqtt: the port must be a number from 1 to 65535; received 'mqtt://broker:99999'"),
    ],
)
def test_bad_broker_urls(capsys, lenet_tflite, url, message):
    code, err = error_of(capsys, [str(lenet_tflite), "--source", "synthetic:", "--mqtt", url])
    assert code == 1 and err.splitlines()[0] == f"error: {message}"


def test_an_unreachable_broker_at_start_is_an_error_naming_it(capsys, lenet_tflite):
    port = free_port()  # nothing listens there
    code, err = error_of(capsys, [str(lenet_tflite), "--source", "synthetic:", "--mqtt", f"mqtt://127.0.0.1:{port}"])
    assert code == 1
    assert err.splitlines()[0] == f"error: cannot reach the MQTT broker at mqtt://127.0.0.1:{port}: Connection refused"
    assert "hint: check the host and port (1883 for mqtt://, 8883 for mqtts://)" in err


@pytest.mark.parametrize("listen", ["8080", "host:http", "127.0.0.1:70000"])
def test_bad_http_address(capsys, lenet_tflite, listen):
    code, err = error_of(capsys, [str(lenet_tflite), "--source", "synthetic:", "--http", listen])
    assert code == 1
    assert err.splitlines()[0] == (
        f"error: --http must be HOST:PORT with a port from 0 to 65535 (0: any free port); received '{listen}'"
    )


def test_a_taken_http_port_is_named(capsys, lenet_tflite):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        code, err = error_of(capsys, [str(lenet_tflite), "--source", "synthetic:", "--http", f"127.0.0.1:{port}"])
    assert code == 1
    assert err.splitlines()[0] == f"error: cannot serve HTTP on 127.0.0.1:{port}: Address already in use"


def test_several_sources_need_a_health_path_per_source_and_distinct_names(capsys, lenet_tflite, tmp_path):
    cfg = tmp_path / "serve.yaml"
    cfg.write_text(
        f"artifact: {lenet_tflite}\nhealth: {tmp_path}/h.jsonl\n"
        "sources: [{name: a, uri: 'synthetic:'}, {name: b, uri: 'synthetic:'}]\n"
    )
    code, err = error_of(capsys, ["--config", str(cfg)])
    assert code == 1 and "with 2 sources the health log needs '{source}' in its name" in err
    cfg.write_text(f"artifact: {lenet_tflite}\nsources: [{{name: a, uri: 'synthetic:'}}, {{name: a, uri: 'synthetic:'}}]\n")
    code, err = error_of(capsys, ["--config", str(cfg)])
    assert code == 1 and "two sources are named 'a'" in err
    cfg.write_text(f"artifact: {lenet_tflite}\nname: 'my garage'\nsources: [{{uri: 'synthetic:'}}]\n")
    code, err = error_of(capsys, ["--config", str(cfg)])
    assert code == 1 and "the name must be letters, digits, - and _ (at most 64); received 'my garage'" in err


def test_missing_artifact_source_and_loop_on_a_camera(capsys, lenet_tflite):
    code, err = error_of(capsys, ["--source", "synthetic:"])
    assert code == 1 and err.startswith("error: the command line: no artifact given")
    code, err = error_of(capsys, [str(lenet_tflite)])
    assert code == 1 and err.startswith("error: the command line: no source given")
    code, err = error_of(capsys, [str(lenet_tflite), "--source", "synthetic:", "--loop"])
    assert code == 1 and "--loop applies to a video file; received synthetic:" in err


def test_out_of_range_flags_are_usage_errors(capsys, lenet_tflite):
    assert main(["serve", str(lenet_tflite), "--source", "synthetic:", "--debounce", "0"]) == 2
    assert "--debounce: must be a whole number from 1 to 10,000; received '0'" in capsys.readouterr().err
    assert main(["serve", str(lenet_tflite), "--source", "synthetic:", "--min-confidence", "1.2"]) == 2
    assert "--min-confidence: must be a number from 0 to 1; received '1.2'" in capsys.readouterr().err


def test_a_source_that_never_delivers_ends_the_service_with_its_error(capsys, lenet_tflite):
    port = free_port()
    code, err = error_of(capsys, [str(lenet_tflite), "--source", f"http://user:pw@127.0.0.1:{port}/video", "--open-timeout", "1"])
    assert code == 1
    assert err.splitlines()[0] == f"error: connection refused by 127.0.0.1:{port}: nothing listens there"
    assert "pw@" not in err


def test_a_missing_optional_package_names_the_extra(capsys, lenet_tflite, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "paho", None)  # import paho... raises ImportError
    monkeypatch.setitem(sys.modules, "paho.mqtt", None)
    monkeypatch.setitem(sys.modules, "paho.mqtt.client", None)
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    code, err = error_of(capsys, [str(lenet_tflite), "--source", "synthetic:", "--mqtt", "mqtt://127.0.0.1"])
    assert code == 1
    assert err.splitlines() == [
        "error: the optional package 'paho-mqtt' is not installed (needed for edgecnn serve --mqtt)",
        '  hint: pip install "edgecnn[serve]"',
    ]
    code, err = error_of(capsys, [str(lenet_tflite), "--source", "synthetic:", "--http", "127.0.0.1:0"])
    assert code == 1
    assert err.splitlines()[0] == (
        "error: the optional package 'prometheus-client' is not installed (needed for the /metrics page of edgecnn serve)"
    )


def test_a_failed_start_closes_the_live_page_it_opened(capsys, lenet_tflite):
    import socket

    page = free_port()
    code, err = error_of(
        capsys,
        [
            str(lenet_tflite),
            "--source",
            "synthetic:",
            "--sink",
            f"http://127.0.0.1:{page}",
            "--mqtt",
            f"mqtt://127.0.0.1:{free_port()}",
        ],
    )
    assert code == 1 and err.startswith("error: cannot reach the MQTT broker")
    with socket.socket() as s:  # the port is free again: the page's server was closed
        s.bind(("127.0.0.1", page))


def test_a_server_that_does_not_speak_mqtt_is_named(capsys, lenet_tflite, monkeypatch):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1] / "stream"))
    from mjpeg_server import SilentServer

    from edgecnn.serve import mqtt

    monkeypatch.setattr(mqtt, "CONNECT_TIMEOUT_S", 0.5)
    with SilentServer() as silent:
        port = silent.sock.getsockname()[1]
        code, err = error_of(capsys, [str(lenet_tflite), "--source", "synthetic:", "--mqtt", f"mqtt://127.0.0.1:{port}"])
    assert code == 1
    assert err.splitlines()[:2] == [
        f"error: the MQTT broker at mqtt://127.0.0.1:{port} did not accept the connection within 0.5 s",
        "  hint: is it an MQTT broker (and mqtts:// for a TLS port)?",
    ]
