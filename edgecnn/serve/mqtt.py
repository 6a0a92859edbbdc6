"""The MQTT outlet (paho-mqtt 2): retained state, JSON attributes, events, snapshots, availability by last will, and
Home Assistant MQTT discovery.

Topics, with ``T`` = ``TOPIC/NAME`` (``edgecnn/garage``) and ``S`` a source's name:

- ``T/availability``: ``online`` / ``offline``, retained; the broker publishes ``offline`` itself when the service
  dies (the last will), and the service publishes it when it stops.
- ``T/S/state``: the debounced state (a label), retained; ``T/S/attributes``: JSON (confidence, top-k, fps, latency,
  model digest), retained, on each change and every ``attributes_every`` seconds; ``T/S/event``: one JSON object per
  change (not retained); ``T/S/snapshot``: the JPEG of the frame that made the last change, retained.
- ``DISCOVERY/sensor/NAME_S/config`` (an enum sensor with the model's labels), ``.../NAME_S_fps/config`` and
  ``.../NAME_S_latency/config`` (diagnostics), ``DISCOVERY/image/NAME_S/config`` (the snapshot): retained, so Home
  Assistant shows the camera with no configuration.

Nothing here runs on a capture loop's thread: the loops put work on a bounded queue (the oldest is dropped when the
broker cannot keep up) and one thread publishes it. paho's own thread reconnects with back-off; each (re)connection
publishes availability, discovery and the current states again (a broker without persistence forgets them).
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from pathlib import Path
from typing import Any

import cv2

from edgecnn import __version__
from edgecnn.errors import ConfigError, MissingDependencyError, StreamError
from edgecnn.redact import redact
from edgecnn.serve.config import MqttConfig, parse_broker

CONNECT_TIMEOUT_S = 5.0


def _paho() -> Any:
    try:
        import paho.mqtt.client as mqtt
    except ImportError:
        raise MissingDependencyError("paho-mqtt", "serve", purpose="edgecnn serve --mqtt") from None
    return mqtt


def read_password(cfg: MqttConfig) -> str | None:
    """The broker's password: from ``password_file`` (its first line), else from ``$password_env``, else None."""
    if cfg.password_file:
        path = Path(cfg.password_file)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read the MQTT password file {path}: {exc.strerror}") from None
        lines = text.splitlines()
        if not lines or not lines[0]:
            raise ConfigError(f"the MQTT password file {path} is empty", hint="write the password on its first line")
        return lines[0]
    return os.environ.get(cfg.password_env) or None


class MqttOutlet:
    """Connects at ``connect`` (an unreachable broker or refused credentials are an error then), then publishes from
    ``start`` on what the service hands it, without ever blocking the caller."""

    def __init__(self, cfg: MqttConfig, device: str, service: Any) -> None:
        self.cfg, self.device, self.service = cfg, device, service
        self.broker = parse_broker(cfg.url)
        self.base = f"{cfg.topic.strip('/')}/{device}"
        self.availability = f"{self.base}/availability"
        self.where = f"{'mqtts' if self.broker.tls else 'mqtt'}://{self.broker.host}:{self.broker.port}"
        self.connected = threading.Event()
        self.published = 0
        self.dropped = 0
        self.connects = 0
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=1000)
        self._closed = threading.Event()
        self._refused = ""
        self._last_attributes: dict[str, float] = {}
        self.client = self._client(_paho())
        self._thread = threading.Thread(target=self._work, name="edgecnn-mqtt", daemon=True)

    def _client(self, mqtt: Any) -> Any:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"edgecnn-{self.device}-{os.getpid()}")
        if self.broker.user:
            client.username_pw_set(self.broker.user, read_password(self.cfg))
        if self.broker.tls:
            import ssl

            if self.cfg.ca_file and not Path(self.cfg.ca_file).is_file():
                raise ConfigError(f"the MQTT CA file {self.cfg.ca_file} does not exist")
            client.tls_set(ca_certs=self.cfg.ca_file, cert_reqs=ssl.CERT_REQUIRED)
        client.will_set(self.availability, "offline", qos=1, retain=True)
        client.reconnect_delay_set(1, 30)
        client.max_queued_messages_set(1000)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        return client

    # ---- connection ----------------------------------------------------------------------
    def connect(self) -> None:
        """Connect now, before any frame: an unreachable broker or refused credentials end the start with the reason."""
        where = self.where
        try:
            self.client.connect(self.broker.host, self.broker.port, keepalive=self.cfg.keepalive)
        except OSError as exc:
            raise StreamError(
                f"cannot reach the MQTT broker at {where}: {getattr(exc, 'strerror', None) or redact(exc)}",
                hint="check the host and port (1883 for mqtt://, 8883 for mqtts://) and that the broker runs",
            ) from None
        self.client.loop_start()
        answered = self.connected.wait(CONNECT_TIMEOUT_S)
        if not answered or self._refused:
            self.client.loop_stop()
            if not answered:
                raise StreamError(
                    f"the MQTT broker at {where} did not accept the connection within {CONNECT_TIMEOUT_S:g} s",
                    hint="is it an MQTT broker (and mqtts:// for a TLS port)?",
                )
            raise StreamError(
                f"the MQTT broker at {where} refused the connection: {self._refused}", hint="check the user and password"
            )

    def start(self) -> None:
        """Start publishing (availability, discovery and states first: the connection queued a sync)."""
        self._thread.start()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if getattr(reason, "is_failure", False):
            self._refused = str(reason)
            self.connected.set()  # start() is waiting for the answer, whatever it is
            client.disconnect()
            return
        self.connects += 1
        self.connected.set()
        if self.connects > 1:
            self.service.say(f"mqtt: connected again to {self.where} (connection {self.connects})")
        self._put(("sync", None))

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if not self._refused:
            if self.connected.is_set() and not self._closed.is_set():
                self.service.say(f"mqtt: lost the connection to {self.where} ({reason}); classification goes on, reconnecting")
            self.connected.clear()

    # ---- what the service hands over (any thread; never blocks) ----------------------------
    def _put(self, item: tuple[str, Any]) -> None:
        while True:
            try:
                self._queue.put_nowait(item)
                return
            except queue.Full:
                try:
                    self._queue.get_nowait()  # the oldest goes: the newest state matters
                    self.dropped += 1
                except queue.Empty:
                    pass

    def changed(self, runner: Any, change: Any, image: Any) -> None:
        self._last_attributes[runner.name] = time.monotonic()
        self._put(("change", (runner, change, image)))

    def frame(self, runner: Any) -> None:
        now = time.monotonic()
        if now - self._last_attributes.get(runner.name, 0.0) >= self.cfg.attributes_every:
            self._last_attributes[runner.name] = now
            self._put(("attributes", runner))

    def model_changed(self) -> None:
        self._put(("sync", None))

    # ---- the publishing thread -----------------------------------------------------------
    def _work(self) -> None:
        """Publish what is queued until ``close``; then what is still queued, if the broker is there to take it."""
        while True:
            try:
                kind, item = self._queue.get(timeout=0.1)
            except queue.Empty:
                if self._closed.is_set():
                    return
                continue
            if self._closed.is_set() and not self.connected.is_set():
                return
            try:
                self._do(kind, item)
            except (ValueError, OSError, RuntimeError) as exc:  # a bad payload must not end the outlet
                self.service.say(f"mqtt: could not publish ({redact(exc)})")

    def _do(self, kind: str, item: Any) -> None:
        if kind == "sync":
            self._sync()
        elif kind == "attributes":
            self._publish(f"{self.base}/{item.name}/attributes", json.dumps(item.attributes()), retain=True, qos=0)
        elif kind == "change":
            runner, change, image = item
            self._publish_change(runner, change, image)

    def _publish(self, topic: str, payload: Any, *, retain: bool = False, qos: int = 1) -> None:
        if not self.connected.is_set() and retain:
            return  # a retained value is published again in full by the next connection's sync
        self.client.publish(topic, payload, qos=qos, retain=retain)
        self.published += 1

    def _publish_change(self, runner: Any, change: Any, image: Any) -> None:
        s = f"{self.base}/{runner.name}"
        event = change.to_dict() | {"model_digest": self.service.model.digest}
        self._publish(f"{s}/state", change.state, retain=True)
        self._publish(f"{s}/attributes", json.dumps(runner.attributes()), retain=True, qos=0)
        self._publish(f"{s}/event", json.dumps(event), qos=1)
        jpeg = snapshot_jpeg(image, runner.cfg.roi)
        if jpeg:
            self._publish(f"{s}/snapshot", jpeg, retain=True, qos=0)

    def _sync(self) -> None:
        """Availability, discovery and every source's current state (after a (re)connection or a new model)."""
        if not self.connected.is_set():
            return
        self._publish(self.availability, "online", retain=True)
        if self.cfg.discovery:
            for runner in self.service.runners:
                for topic, config in discovery(self, runner):
                    self._publish(topic, json.dumps(config), retain=True)
        for runner in self.service.runners:
            if runner.debouncer.state is not None:
                self._publish(f"{self.base}/{runner.name}/state", runner.debouncer.state, retain=True)
            self._publish(f"{self.base}/{runner.name}/attributes", json.dumps(runner.attributes()), retain=True, qos=0)

    def close(self) -> None:
        """Publish what is queued, the final states and ``offline`` (retained), then disconnect: within about 1.5 s."""
        self._closed.set()
        if self._thread.is_alive():
            self._thread.join(0.5)
        if self.connected.is_set():
            self._sync_final()
        self.client.disconnect()
        stopper = threading.Thread(target=self.client.loop_stop, daemon=True)
        stopper.start()
        stopper.join(0.5)

    def _sync_final(self) -> None:
        for runner in self.service.runners:
            self._publish(f"{self.base}/{runner.name}/attributes", json.dumps(runner.attributes()), retain=True, qos=0)
        info = self.client.publish(self.availability, "offline", qos=1, retain=True)
        try:
            info.wait_for_publish(timeout=1.0)
        except (RuntimeError, ValueError):
            pass


def snapshot_jpeg(image: Any, roi: Any) -> bytes:
    """The frame as JPEG, with the region of interest outlined."""
    if image is None:
        return b""
    if roi:
        x, y, w, h = roi
        image = image.copy()
        cv2.rectangle(image, (x, y), (x + w - 1, y + h - 1), (0, 255, 255), 1)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return buf.tobytes() if ok else b""


def discovery(outlet: MqttOutlet, runner: Any) -> list[tuple[str, dict[str, Any]]]:
    """Home Assistant MQTT discovery configs for one source: the state sensor, two diagnostics, the snapshot."""
    dev, name, prefix = outlet.device, runner.name, outlet.cfg.discovery_prefix.strip("/")
    s = f"{outlet.base}/{name}"
    model = outlet.service.model
    device = {
        "identifiers": [f"edgecnn_{dev}"],
        "name": dev,
        "manufacturer": "edgecnn",
        "model": f"{model.info['format']} {model.info['precision']} ({len(model.labels)} labels)",
        "sw_version": __version__,
    }
    common = {
        "availability_topic": outlet.availability,
        "payload_available": "online",
        "payload_not_available": "offline",
        "device": device,
        "origin": {"name": "edgecnn", "sw_version": __version__},
    }
    uid = f"edgecnn_{dev}_{name}"
    sensor = common | {
        "name": name,
        "unique_id": uid,
        "state_topic": f"{s}/state",
        "json_attributes_topic": f"{s}/attributes",
        "device_class": "enum",
        "options": list(model.labels),
        "icon": "mdi:cctv",
    }
    diag = {"entity_category": "diagnostic", "state_class": "measurement", "state_topic": f"{s}/attributes"}
    fps = common | diag | {"name": f"{name} fps", "unique_id": f"{uid}_fps", "unit_of_measurement": "fps"}
    fps["value_template"] = "{{ value_json.fps }}"
    latency = common | diag | {"name": f"{name} inference", "unique_id": f"{uid}_latency", "unit_of_measurement": "ms"}
    latency["value_template"] = "{{ value_json.latency_ms.inference | default(0) }}"
    image = common | {"name": f"{name} snapshot", "unique_id": f"{uid}_snapshot", "image_topic": f"{s}/snapshot"}
    image["content_type"] = "image/jpeg"
    return [
        (f"{prefix}/sensor/{dev}_{name}/config", sensor),
        (f"{prefix}/sensor/{dev}_{name}_fps/config", fps),
        (f"{prefix}/sensor/{dev}_{name}_latency/config", latency),
        (f"{prefix}/image/{dev}_{name}/config", image),
    ]
