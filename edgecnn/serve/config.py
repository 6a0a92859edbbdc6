"""serve.yaml: the service's settings as frozen dataclasses, read strictly (an unknown key names the valid ones and the
closest), and the checks that the command line's flags share: ``--roi``, ``--mqtt``, ``--http``, source names.

```yaml
artifact: /opt/edgecnn/current
name: garage                      # the device's name in Home Assistant and in the topics
mqtt: {url: "mqtt://ha@192.168.1.5", password_file: /etc/edgecnn/mqtt.pw}
http: "0.0.0.0:8090"
health: /var/lib/edgecnn/health-{source}.jsonl
sources:
  - {name: door, uri: "rtsp://cam1/stream", roi: [100, 40, 320, 240], debounce: 5, min_confidence: 0.8}
  - {name: feeder, uri: "0"}
```
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from edgecnn.config import bounded, load
from edgecnn.errors import ConfigError
from edgecnn.redact import has_password, redact

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
PASSWORD_ENV = "EDGECNN_MQTT_PASSWORD"


@dataclass(frozen=True)
class SourceConfig:
    """One camera (or file): its state is debounced on its own and published under its name."""

    uri: str
    name: str = "camera"
    roi: tuple[int, ...] | None = None  # x, y, w, h in the capture's pixels
    debounce: int = bounded(3, lo=1, hi=10_000)
    min_confidence: float = bounded(0.0, lo=0.0, hi=1.0)
    min_dwell: float = bounded(0.0, lo=0.0, hi=86_400)
    loop: bool = False  # a video file starts again at its end
    sinks: list[str] = field(default_factory=list)  # classify's sinks: http://:PORT (the live page, with the state), jsonl:...


@dataclass(frozen=True)
class MqttConfig:
    url: str  # mqtt://[user@]host[:port] or mqtts://...
    password_file: str | None = None
    password_env: str = PASSWORD_ENV
    ca_file: str | None = None
    topic: str = "edgecnn"  # the topics are TOPIC/DEVICE/...
    discovery_prefix: str = "homeassistant"
    discovery: bool = True
    keepalive: int = bounded(30, lo=5, hi=3600)
    attributes_every: float = bounded(5.0, above=0, hi=3600)  # seconds between attribute updates while the state holds


@dataclass(frozen=True)
class ServeConfig:
    artifact: str = ""
    name: str = "edgecnn"
    sources: list[SourceConfig] = field(default_factory=list)
    mqtt: MqttConfig | None = None
    http: str | None = None  # HOST:PORT
    top_k: int = bounded(3, lo=1, hi=1000)
    device: str | None = None
    runtime: str | None = None
    accelerator: str | None = None
    threads: int | None = bounded(None, lo=1, hi=1024)
    health: str | None = None  # the health log (classify --health); {source} in the name with several sources
    health_every: float = bounded(10.0, above=0, hi=86_400)
    stale_after: float = bounded(10.0, above=0, hi=86_400)  # /healthz and the watchdog: the newest frame's age limit
    open_timeout: float = bounded(5.0, above=0, hi=3600)
    read_timeout: float = bounded(5.0, above=0, hi=3600)
    trust_key: str | None = None
    skip_self_check: bool = False
    watch_artifact: float = bounded(2.0, lo=0, hi=3600)  # seconds between looks at the artifact link (0: never)


def load_config(path: str | Path) -> ServeConfig:
    """serve.yaml -> ServeConfig, every value checked (``check``)."""
    return check(load(ServeConfig, path), source=str(path))


def parse_roi(text: str, *, where: str = "--roi") -> tuple[int, int, int, int]:
    """``x,y,w,h`` -> four whole numbers (x, y at least 0, w and h above 0)."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 4 or min(values[:2]) < 0 or min(values[2:]) <= 0:
        raise ConfigError(
            f"{where} must be x,y,w,h in the capture's pixels (four whole numbers; x, y from 0, w and h above 0); "
            f"received {text!r}",
            hint="e.g. --roi 100,40,320,240 classifies the 320x240 region whose top-left corner is at (100, 40)",
        )
    return values  # type: ignore[return-value]


def parse_listen(text: str, *, where: str = "--http") -> tuple[str, int]:
    """``HOST:PORT`` (or ``:PORT``) -> (host, port); port 0 lets the system choose."""
    host, sep, port = str(text).rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(
            f"{where} must be HOST:PORT with a port from 0 to 65535 (0: any free port); received {text!r}",
            hint="e.g. --http 0.0.0.0:8090 (every interface) or --http 127.0.0.1:8090 (this machine only)",
        )
    return host.strip("[]") or "0.0.0.0", int(port)


@dataclass(frozen=True)
class Broker:
    host: str
    port: int
    tls: bool
    user: str | None


def parse_broker(url: str, *, where: str = "--mqtt") -> Broker:
    """``mqtt://[user@]host[:port]`` or ``mqtts://...``; a password in it is refused (it would sit in the process
    list, the shell history and the unit file)."""
    if has_password(url):
        raise ConfigError(
            f"{where}: a password in the broker URL is refused (received {redact(url)}): it would be visible in the "
            "process list and the shell history",
            hint=f"put it in a file (--mqtt-password-file, mode 600) or in ${PASSWORD_ENV}",
        )
    u = urlsplit(url)
    if u.scheme not in ("mqtt", "mqtts") or not u.hostname:
        raise ConfigError(
            f"{where} must be mqtt://[user@]host[:port] or mqtts://[user@]host[:port]; received {redact(url)!r}",
            hint="e.g. --mqtt mqtt://homeassistant.local or --mqtt mqtts://edgecnn@broker:8883 --mqtt-ca ca.pem",
        )
    try:
        port = u.port
    except ValueError:
        port = -1
    if port is not None and not 1 <= port <= 65535:
        raise ConfigError(f"{where}: the port must be a number from 1 to 65535; received {redact(url)!r}")
    tls = u.scheme == "mqtts"
    return Broker(u.hostname, port or (8883 if tls else 1883), tls, u.username or None)


def check(cfg: ServeConfig, *, source: str = "the command line") -> ServeConfig:
    """Every value the dataclass types cannot check: names, ROIs, the broker, the listen address, the health path."""
    if not cfg.artifact:
        raise ConfigError(
            f"{source}: no artifact given", hint="edgecnn serve ARTIFACT --source URI, or 'artifact:' in serve.yaml"
        )
    if not cfg.sources:
        raise ConfigError(f"{source}: no source given", hint="--source URI, or a 'sources:' list in serve.yaml")
    if not NAME.match(cfg.name):
        raise ConfigError(f"{source}: the name must be letters, digits, - and _ (at most 64); received {cfg.name!r}")
    _check_sources(cfg, source)
    if cfg.mqtt is not None:
        parse_broker(cfg.mqtt.url, where=f"{source}: mqtt.url" if source != "the command line" else "--mqtt")
    if cfg.http is not None:
        parse_listen(cfg.http, where=f"{source}: http" if source != "the command line" else "--http")
    if cfg.health and len(cfg.sources) > 1 and "{source}" not in cfg.health:
        raise ConfigError(
            f"{source}: with {len(cfg.sources)} sources the health log needs '{{source}}' in its name; received {cfg.health!r}",
            hint="e.g. health: /var/lib/edgecnn/health-{source}.jsonl (one log per source)",
        )
    return cfg


def _check_sources(cfg: ServeConfig, source: str) -> None:
    names = [s.name for s in cfg.sources]
    for s in cfg.sources:
        if not NAME.match(s.name):
            raise ConfigError(f"{source}: a source's name must be letters, digits, - and _ (at most 64); received {s.name!r}")
        if s.roi is not None:
            parse_roi(",".join(str(v) for v in s.roi), where=f"{source}: source {s.name!r}: roi")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"{source}: two sources are named {dupes[0]!r}", hint="give each source its own 'name:'")


def health_path(cfg: ServeConfig, source: str) -> str | None:
    return cfg.health.replace("{source}", source) if cfg.health else None
