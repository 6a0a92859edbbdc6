"""``edgecnn serve`` against a real mosquitto on loopback, observed by a paho subscriber."""

from __future__ import annotations

import json
import signal
import threading
import time

import cv2
import numpy as np
import pytest
from digit_videos import PLAN
from serve_helpers import retained, serve_process
from waiting import until


def test_a_video_gives_exactly_its_debounced_state_changes_discovery_and_offline_at_its_end(
    broker, subscriber, digit_video, lenet_tflite
):
    sub = subscriber()
    t0 = time.monotonic()
    with serve_process(str(lenet_tflite), "--source", str(digit_video), "--mqtt", broker.url, "--name", "garage") as proc:
        out, err = proc.communicate(timeout=60)
    took = time.monotonic() - t0
    assert proc.returncode == 0, err
    frames = sum(n for _, n in PLAN)
    assert took >= frames / 30 - 0.2, f"a {frames / 30:.1f} s video played in {took:.1f} s: not at its own frame rate"

    base = "edgecnn/garage/camera"
    # the single-frame 7 (frame 31) and the two-frame 1 (frames 91-92) never reach the state
    assert sub.texts(f"{base}/state") == ["3", "7"]
    events = [json.loads(p) for p in sub.texts(f"{base}/event")]
    assert [(e["previous"], e["state"], e["frame"], e["seq"]) for e in events] == [(None, "3", 3, 1), ("3", "7", 63, 2)]
    assert all(e["confidence"] >= 0.9 and e["model_digest"] for e in events)
    snapshot = cv2.imdecode(np.frombuffer(sub.on(f"{base}/snapshot")[-1][1], np.uint8), cv2.IMREAD_COLOR)
    assert snapshot.shape == (64, 64, 3)
    assert sub.texts("edgecnn/garage/availability") == ["online", "offline"]
    assert "camera: state 7 after 2 change(s); frames read 120, classified 120" in err

    config = json.loads(sub.texts("homeassistant/sensor/garage_camera/config")[-1])
    assert config["state_topic"] == f"{base}/state"
    assert config["availability_topic"] == "edgecnn/garage/availability"
    assert config["json_attributes_topic"] == f"{base}/attributes"
    assert config["unique_id"] == "edgecnn_garage_camera"
    assert config["device"]["identifiers"] == ["edgecnn_garage"] and config["device"]["name"] == "garage"
    assert config["device_class"] == "enum" and config["options"] == [str(i) for i in range(10)]
    fps = json.loads(sub.texts("homeassistant/sensor/garage_camera_fps/config")[-1])
    assert fps["entity_category"] == "diagnostic" and fps["value_template"] == "{{ value_json.fps }}"
    image = json.loads(sub.texts("homeassistant/image/garage_camera/config")[-1])
    assert image["image_topic"] == f"{base}/snapshot" and image["content_type"] == "image/jpeg"

    # what a Home Assistant that starts later sees: the final state and offline, retained
    assert retained(broker.port, f"{base}/state") == b"7"
    assert retained(broker.port, "edgecnn/garage/availability") == b"offline"
    attributes = json.loads(retained(broker.port, f"{base}/attributes"))
    assert attributes["state"] == "7" and attributes["changes"] == 2 and attributes["top"][0]["label"] == "7"
    assert attributes["model_digest"] == events[0]["model_digest"]


@pytest.mark.serial
def test_sigkill_leaves_the_last_will_and_sigterm_offline_retained_within_2_s(broker, subscriber, lenet_tflite):
    sub = subscriber("edgecnn/#")
    args = (str(lenet_tflite), "--source", "synthetic:?fps=15", "--mqtt", broker.url, "--debounce", "1")
    with serve_process(*args, "--name", "killed") as proc:
        sub.wait(lambda: sub.texts("edgecnn/killed/camera/state"), 20)
        proc.kill()  # no goodbye: the broker publishes the will
        sub.wait(lambda: sub.texts("edgecnn/killed/availability")[-1:] == ["offline"], 5)
    assert sub.texts("edgecnn/killed/availability") == ["online", "offline"]
    assert retained(broker.port, "edgecnn/killed/availability") == b"offline"

    with serve_process(*args, "--name", "termed") as proc:
        sub.wait(lambda: sub.texts("edgecnn/termed/camera/state"), 20)
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
        reader.start()
        proc.send_signal(signal.SIGHUP)  # reloads the model and keeps serving
        until(lambda: any("model reloaded" in ln for ln in lines) or proc.poll() is not None, "the SIGHUP reload", 30)
        assert proc.poll() is None
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(5)
        stopped = time.monotonic() - t0
        reader.join(5)
        err = "".join(lines)
    assert proc.returncode == 0, err
    assert stopped < 2.0, f"SIGTERM took {stopped:.2f} s"
    assert "model reloaded" in err and "stopped by SIGTERM" in err
    assert sub.texts("edgecnn/termed/availability")[-1] == "offline"
    assert retained(broker.port, "edgecnn/termed/availability") == b"offline"


@pytest.mark.slow
def test_a_broker_that_goes_away_and_comes_back_gets_everything_again_while_frames_flow(broker, lenet_tflite, tmp_path):
    from serve_helpers import Subscriber, get_json, service_thread

    from edgecnn.serve.config import MqttConfig, ServeConfig, SourceConfig

    cfg = ServeConfig(
        artifact=str(lenet_tflite),
        name="flaky",
        sources=[SourceConfig(uri="synthetic:?fps=20", debounce=1)],
        mqtt=MqttConfig(url=broker.url),
        http="127.0.0.1:0",
    )
    said: list[str] = []
    with service_thread(cfg, say=lambda line: said.append(line) if line.startswith("mqtt:") else None) as (service, outcome):
        sub = Subscriber(broker.port, "edgecnn/#")
        sub.wait(lambda: sub.texts("edgecnn/flaky/camera/state"), 10)
        broker.stop()
        time.sleep(0.3)
        base = get_json(f"{service.http.url()}/state")[1]["sources"]["camera"]["counters"]["classified"]
        time.sleep(2.0)
        during = get_json(f"{service.http.url()}/state")[1]["sources"]["camera"]["counters"]["classified"]
        # 40 at 20 fps alone; a stalled loop gives none, a loaded worker fewer
        assert during - base >= 10, f"classification stalled while the broker was away ({during - base} frames in 2 s)"
        assert not service.mqtt.connected.is_set()
        broker.start()  # an empty broker (no persistence): the service must publish everything again
        sub.close()
        sub = Subscriber(broker.port, "#")
        sub.wait(lambda: sub.texts("edgecnn/flaky/availability")[-1:] == ["online"], 40)
        sub.wait(lambda: sub.texts("homeassistant/sensor/flaky_camera/config"), 5)
        # the state published again is the service's (it may change meanwhile: debounce 1 on changing frames)
        sub.wait(lambda: sub.texts("edgecnn/flaky/camera/state")[-1:] == [service.runners[0].debouncer.state], 5)
        assert service.mqtt.connects == 2
        sub.close()
    assert "error" not in outcome
    where = f"mqtt://127.0.0.1:{broker.port}"
    assert said[0] == f"mqtt: {where}, topics edgecnn/flaky/..., availability edgecnn/flaky/availability"
    assert said[1].startswith(f"mqtt: lost the connection to {where} (") and said[1].endswith(
        "; classification goes on, reconnecting"
    )
    assert said[2:] == [f"mqtt: connected again to {where} (connection 2)"]
