"""The HTTP outlet: /state, /snapshot.jpg, /healthz, /metrics (parsed with prometheus_client's parser), POST /classify."""

from __future__ import annotations

import socket
import time
import urllib.request

import cv2
import numpy as np
from serve_helpers import get_json, service_thread
from waiting import until

from edgecnn.serve.config import ServeConfig, SourceConfig


def post(url: str, data: bytes, ctype: str = "image/jpeg") -> tuple[int, dict]:
    import json
    import urllib.error

    req = urllib.request.Request(url, data=data, headers={"Content-Type": ctype}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def metrics(url: str) -> dict[tuple[str, tuple], float]:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as r:
        assert r.headers["Content-Type"].startswith("text/plain; version=")
        text = r.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value for fam in text_string_to_metric_families(text) for s in fam.samples
    }


def test_state_snapshot_health_metrics_and_classify_of_an_uploaded_image(lenet_tflite, digits, digit_video):
    cfg = ServeConfig(
        artifact=str(lenet_tflite),
        name="bench",
        sources=[SourceConfig(uri=str(digit_video), name="door", loop=True, roi=(0, 0, 64, 64))],
        http="127.0.0.1:0",
    )
    with service_thread(cfg) as (service, outcome):
        url = service.http.url()
        deadline = time.monotonic() + 15
        while service.runners[0].debouncer.changes < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        code, state = get_json(f"{url}/state")
        assert code == 200 and state["name"] == "bench" and state["healthy"] is True
        door = state["sources"]["door"]
        assert [(c["previous"], c["state"]) for c in door["history"][:2]] == [(None, "3"), ("3", "7")]
        assert door["attributes"]["roi"] == [0, 0, 64, 64] and door["attributes"]["model_digest"] == state["model"]["digest"]

        code, health = get_json(f"{url}/healthz")
        assert code == 200 and health["ok"] is True and health["sources"]["door"]["age_s"] < 3.0

        with urllib.request.urlopen(f"{url}/snapshot.jpg?source=door", timeout=5) as r:
            assert r.headers["Content-Type"] == "image/jpeg"
            frame = cv2.imdecode(np.frombuffer(r.read(), np.uint8), cv2.IMREAD_COLOR)
        assert frame.shape == (64, 64, 3)
        assert get_json(f"{url}/snapshot.jpg?source=garden")[0] == 404
        with urllib.request.urlopen(f"{url}/event.jpg", timeout=5) as r:  # the frame of the last change: a 7 or a 3
            event = cv2.imdecode(np.frombuffer(r.read(), np.uint8), cv2.IMREAD_COLOR)
        assert event.shape == (64, 64, 3)

        door_total = ("edgecnn_frames_classified_total", (("source", "door"),))
        m = until(lambda: (m := metrics(url))[door_total] >= 60 and m, "60 frames classified")
        classified = m[door_total]
        assert m[("edgecnn_frames_read_total", (("source", "door"),))] >= classified
        assert m[("edgecnn_state_changes_total", (("source", "door"), ("state", "7")))] >= 1
        assert m[("edgecnn_inference_seconds_count", (("source", "door"),))] == classified
        assert m[("edgecnn_end_to_end_seconds_count", (("source", "door"),))] == classified
        assert 0 < m[("edgecnn_end_to_end_seconds_sum", (("source", "door"),))] / classified < 2.0  # about 5 ms alone
        info = [k for k in m if k[0] == "edgecnn_model_info"]
        assert len(info) == 1 and ("digest", state["model"]["digest"]) in info[0][1]

        ok, jpeg = cv2.imencode(".jpg", digits["7"])
        code, answer = post(f"{url}/classify", jpeg.tobytes())
        assert code == 200 and answer["top"][0]["label"] == "7" and answer["top"][0]["p"] >= 0.9
        assert answer["width"] == 64 and answer["model_digest"] == state["model"]["digest"]
        ok, png = cv2.imencode(".png", cv2.cvtColor(digits["3"], cv2.COLOR_BGR2GRAY))
        assert post(f"{url}/classify", png.tobytes(), "image/png")[1]["top"][0]["label"] == "3"
        code, answer = post(f"{url}/classify", b"<html>not an image</html>")
        assert code == 400 and answer["error"] == "not a usable image: not an image (unknown file signature)"
        code, answer = post(f"{url}/classify", jpeg.tobytes()[:-50])
        assert code == 400 and "truncated JPEG" in answer["error"]
    assert "error" not in outcome


def test_a_slow_client_does_not_stall_classification(lenet_tflite):
    cfg = ServeConfig(artifact=str(lenet_tflite), sources=[SourceConfig(uri="synthetic:?fps=30")], http="127.0.0.1:0")
    with service_thread(cfg) as (service, outcome):
        port = service.http.port
        # clients that send half a request and then nothing, and one that never reads its answer
        stuck = [socket.create_connection(("127.0.0.1", port)) for _ in range(5)]
        for s in stuck:
            s.sendall(b"POST /classify HTTP/1.1\r\nContent-Length: 100000\r\n\r\nabc")
        reader = socket.create_connection(("127.0.0.1", port))
        reader.sendall(b"GET /snapshot.jpg HTTP/1.1\r\n\r\n" * 200)
        before = service.runners[0].classified
        time.sleep(2.0)
        after = service.runners[0].classified
        # 60 at 30 fps alone; a stalled loop gives none, a loaded worker about 40
        assert after - before >= 20, f"{after - before} frames in 2 s with stuck clients (30 fps source)"
        assert get_json(f"{service.http.url()}/healthz")[0] == 200
        for s in [*stuck, reader]:
            s.close()
    assert "error" not in outcome


def test_uploads_beyond_two_at_once_are_answered_busy(lenet_tflite, digits, monkeypatch):
    import threading

    from edgecnn.serve import http

    slow, release = http.decode_upload, threading.Event()

    def decode_slowly(data):  # an upload that decodes only once the third one has been answered: three at once overlap
        release.wait(30)
        return slow(data)

    monkeypatch.setattr(http, "decode_upload", decode_slowly)
    cfg = ServeConfig(artifact=str(lenet_tflite), sources=[SourceConfig(uri="synthetic:?fps=10")], http="127.0.0.1:0")
    jpeg = cv2.imencode(".jpg", digits["3"])[1].tobytes()
    with service_thread(cfg) as (service, outcome):
        answers: list[tuple[int, dict]] = []
        posts = [threading.Thread(target=lambda: answers.append(post(f"{service.http.url()}/classify", jpeg))) for _ in range(3)]
        for t in posts:
            t.start()
        until(lambda: [c for c, _ in answers] == [503], "the third upload to be answered busy", timeout=20)
        release.set()
        for t in posts:
            t.join(20)
        assert sorted(code for code, _ in answers) == [200, 200, 503]
        assert [a for c, a in answers if c == 503][0]["error"] == "busy: 2 uploaded images are being classified; try again"
        assert all(a["top"][0]["label"] == "3" for c, a in answers if c == 200)
    assert "error" not in outcome
