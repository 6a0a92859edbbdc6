"""mqtts:// with a CA file and a password from the environment or a file, against a mosquitto that demands both."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

import pytest
from serve_helpers import MOSQUITTO, free_port, service_thread
from waiting import until

from edgecnn.cli import main
from edgecnn.serve.config import MqttConfig, ServeConfig, SourceConfig


def _certificates(folder) -> None:
    """A CA and a server certificate for 127.0.0.1 signed by it (openssl's command line)."""

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True, timeout=60)

    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=test CA",
    )
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    (folder / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    run(*"x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile ext.cnf".split())


@pytest.fixture()
def tls_broker(tmp_path):
    if MOSQUITTO is None or shutil.which("openssl") is None or shutil.which("mosquitto_passwd") is None:
        pytest.skip("needs mosquitto, mosquitto_passwd and openssl (Debian: apt install mosquitto openssl)")
    _certificates(tmp_path)
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(tmp_path / "passwords"), "cam", "s3cret"], check=True, timeout=30)
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        f"user root\nlistener {port} 127.0.0.1\ncafile {tmp_path}/ca.pem\ncertfile {tmp_path}/server.pem\n"
        f"keyfile {tmp_path}/server.key\nallow_anonymous false\npassword_file {tmp_path}/passwords\npersistence false\n"
    )
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    def listening() -> bool:
        assert proc.poll() is None, "mosquitto did not start with TLS"
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    until(listening, "mosquitto to listen with TLS")
    yield port, tmp_path
    proc.terminate()
    proc.wait(5)


def test_mqtts_with_a_ca_file_and_the_password_from_the_environment(tls_broker, lenet_tflite, monkeypatch):
    import paho.mqtt.client as mqtt

    port, folder = tls_broker
    monkeypatch.setenv("EDGECNN_MQTT_PASSWORD", "s3cret")
    mqtt_cfg = MqttConfig(url=f"mqtts://cam@127.0.0.1:{port}", ca_file=str(folder / "ca.pem"))
    cfg = ServeConfig(
        artifact=str(lenet_tflite), name="tls", sources=[SourceConfig(uri="synthetic:?fps=10", debounce=1)], mqtt=mqtt_cfg
    )
    got: list[bytes] = []
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    sub.username_pw_set("cam", "s3cret")
    sub.tls_set(ca_certs=str(folder / "ca.pem"))
    sub.on_connect = lambda c, *a: c.subscribe("edgecnn/tls/availability")
    sub.on_message = lambda c, u, m: got.append(m.payload)
    sub.connect("127.0.0.1", port)
    sub.loop_start()
    try:
        with service_thread(cfg) as (service, outcome):
            deadline = time.monotonic() + 10
            while b"online" not in got and time.monotonic() < deadline:
                time.sleep(0.05)
            assert service.mqtt.connected.is_set() and b"online" in got
        until(lambda: got[-1:] == [b"offline"], "the service's last word, offline")
    finally:
        sub.disconnect()
        sub.loop_stop()
    assert "error" not in outcome and got[-1] == b"offline"


def test_refused_credentials_and_an_unknown_ca_are_clear_errors(tls_broker, lenet_tflite, tmp_path, capsys, monkeypatch):
    port, folder = tls_broker
    pw = tmp_path / "pw"
    pw.write_text("wrong\n")
    base = [str(lenet_tflite), "--source", "synthetic:", "--mqtt", f"mqtts://cam@127.0.0.1:{port}"]
    assert main(["serve", *base, "--mqtt-ca", str(folder / "ca.pem"), "--mqtt-password-file", str(pw)]) == 1
    err = capsys.readouterr().err
    assert err.splitlines()[0] == (
        f"error: the MQTT broker at mqtts://127.0.0.1:{port} refused the connection: Not authorized"
    ), err
    assert "wrong" not in err
    monkeypatch.setenv("EDGECNN_MQTT_PASSWORD", "s3cret")
    assert main(["serve", *base]) == 1  # the system's CAs do not know the test CA
    err = capsys.readouterr().err
    assert (
        err.startswith(f"error: cannot reach the MQTT broker at mqtts://127.0.0.1:{port}: ")
        and "CERTIFICATE_VERIFY_FAILED" in err
    )
    assert main(["serve", *base, "--mqtt-ca", str(tmp_path / "missing.pem")]) == 1
    assert capsys.readouterr().err.startswith(f"error: the MQTT CA file {tmp_path / 'missing.pem'} does not exist")
    empty = tmp_path / "empty"
    empty.write_text("")
    assert main(["serve", *base, "--mqtt-ca", str(folder / "ca.pem"), "--mqtt-password-file", str(empty)]) == 1
    assert capsys.readouterr().err.startswith(f"error: the MQTT password file {empty} is empty")
