"""Device side: edgecnn serve: the camera as a long-running service (debounced state over MQTT and HTTP, systemd)."""

from __future__ import annotations

import argparse

from edgecnn.cli.args import SECONDS, THREADS, TIMEOUT, integer, number

HELP = "run the classifier as a service: debounced state per camera over MQTT (Home Assistant) and HTTP, under systemd"

# flag -> ServeConfig field, for the flags that override serve.yaml's top level
_TOP = {
    "name": "name",
    "http": "http",
    "top_k": "top_k",
    "device": "device",
    "runtime": "runtime",
    "accelerator": "accelerator",
    "threads": "threads",
    "health": "health",
    "health_every": "health_every",
    "stale_after": "stale_after",
    "open_timeout": "open_timeout",
    "read_timeout": "read_timeout",
    "trust_key": "trust_key",
}
_PER_SOURCE = ("debounce", "min_confidence", "min_dwell", "roi", "loop", "sink")
_PATHS = ("artifact", "config", "health", "trust_key", "mqtt_password_file", "mqtt_ca")


def add_arguments(p) -> None:
    p.add_argument("artifact", nargs="?", help="artifact folder (or deploy's current link); else 'artifact:' in --config")
    p.add_argument("--source", help="the camera: 0, v4l2:///dev/video0, rtsp://..., http://..., file:clip.mp4, synthetic:...")
    p.add_argument("--config", metavar="serve.yaml", help="settings, and several sources, from a file (flags override it)")
    p.add_argument("--name", help="the device's name in topics and in Home Assistant (default edgecnn)")
    g = p.add_argument_group("state")
    g.add_argument(
        "--debounce", type=integer(1, 10_000), help="consecutive wins a new label needs to become the state (default 3)"
    )
    g.add_argument("--min-confidence", type=number(0, 1), help="a win needs at least this top-1 probability (default 0)")
    g.add_argument("--min-dwell", type=number(0, 86_400), help="a new label must win for at least S seconds too (default 0)")
    g.add_argument("--roi", help="classify only this region x,y,w,h of the capture's pixels")
    g.add_argument("--loop", action="store_true", default=None, help="a video file starts again at its end")
    g.add_argument(
        "--sink",
        action="append",
        help="classify's sinks (repeatable): http://:8080 is the live page, with the state and its history beside the frames",
    )
    g = p.add_argument_group("outlets")
    g.add_argument(
        "--mqtt", metavar="URL", help="mqtt://[user@]host[:port] or mqtts://...: state, events, Home Assistant discovery"
    )
    g.add_argument("--mqtt-password-file", metavar="FILE", help="the broker's password (first line); else $EDGECNN_MQTT_PASSWORD")
    g.add_argument("--mqtt-password", help=argparse.SUPPRESS)  # refused with the reason, not 'unrecognized'
    g.add_argument("--mqtt-ca", metavar="FILE", help="CA certificate(s) for mqtts:// (default: the system's)")
    g.add_argument("--mqtt-topic", help="topic prefix (default edgecnn): PREFIX/NAME/SOURCE/state ...")
    g.add_argument("--no-discovery", action="store_true", help="do not publish Home Assistant discovery configs")
    g.add_argument("--http", metavar="HOST:PORT", help="serve /state, /snapshot.jpg, /healthz, /metrics, POST /classify")
    g = p.add_argument_group("supervision")
    g.add_argument("--health", help="write classify's health log (JSONL) here; {source} in the name with several sources")
    g.add_argument("--health-every", type=SECONDS, help="seconds between health lines (default 10)")
    g.add_argument(
        "--stale-after", type=SECONDS, help="unhealthy (/healthz 503, no watchdog ping) after S s without a frame (default 10)"
    )
    g.add_argument("--print-unit", action="store_true", help="print a hardened systemd unit that runs this command, and exit")
    g.add_argument("--unit-user", default="edgecnn", help="the unit's user (default edgecnn)")
    g.add_argument("--watchdog-sec", type=integer(2, 3600), default=30, help="the unit's WatchdogSec (default 30)")
    g = p.add_argument_group("model")
    g.add_argument("--device", help="device profile whose runtime chain and threads apply (default: detected)")
    g.add_argument("--runtime", help="force a runtime: litert, onnxruntime, openvino")
    g.add_argument("--accelerator", help="force an accelerator: CUDA, TensorRT, GPU, NPU, AUTO")
    g.add_argument("--threads", type=THREADS)
    g.add_argument("--top-k", type=integer(1, 1000), help="labels in the attributes and in POST /classify (default 3)")
    g.add_argument("--open-timeout", type=TIMEOUT, help="seconds to connect to a source (default 5)")
    g.add_argument("--read-timeout", type=TIMEOUT, help="seconds to wait for a frame (default 5)")
    g.add_argument("--trust-key", metavar="PUBLIC.pem", help="refuse an artifact not signed by this public key")
    g.add_argument("--skip-self-check", action="store_true", help="do not replay the artifact's stored images first")
    p.add_argument("--json", action="store_true", help="print the final report as JSON")


def build_config(args):
    """serve.yaml (if any) with the flags given on top, checked."""
    from dataclasses import replace

    from edgecnn.config import load
    from edgecnn.errors import ConfigError
    from edgecnn.serve.config import ServeConfig, SourceConfig, check

    if args.mqtt_password is not None:
        raise ConfigError(
            "--mqtt-password is refused: a password on the command line is visible in the process list and the shell history",
            hint="put it in a file (--mqtt-password-file, mode 600) or in $EDGECNN_MQTT_PASSWORD",
        )
    # serve.yaml's values; its cross-checks wait until the flags are on top (the artifact may come from the command line)
    cfg = load(ServeConfig, args.config) if args.config else ServeConfig()
    top = {field: getattr(args, flag) for flag, field in _TOP.items() if getattr(args, flag) is not None}
    if args.artifact:
        top["artifact"] = args.artifact
    if args.skip_self_check:
        top["skip_self_check"] = True
    cfg = replace(cfg, **top)
    sources = [SourceConfig(uri=args.source)] if args.source else list(cfg.sources)
    per = _per_source(args)
    cfg = replace(cfg, sources=[replace(s, **per) for s in sources])
    if args.mqtt or cfg.mqtt:
        cfg = replace(cfg, mqtt=_mqtt(args, cfg.mqtt))
    return check(cfg, source=args.config or "the command line")


def _per_source(args) -> dict:
    """The flags that apply to every source (a single --source, or each of serve.yaml's)."""
    from edgecnn.serve.config import parse_roi

    per = {k: getattr(args, k) for k in _PER_SOURCE if getattr(args, k) is not None}
    if "roi" in per:
        per["roi"] = parse_roi(per["roi"])
    if "sink" in per:
        per["sinks"] = per.pop("sink")
    return per


def _mqtt(args, m):
    """serve.yaml's mqtt: with the --mqtt flags on top."""
    from dataclasses import replace

    from edgecnn.serve.config import MqttConfig

    m = m or MqttConfig(url=args.mqtt)
    over = {"url": args.mqtt, "password_file": args.mqtt_password_file, "ca_file": args.mqtt_ca, "topic": args.mqtt_topic}
    m = replace(m, **{k: v for k, v in over.items() if v is not None})
    return replace(m, discovery=False) if args.no_discovery else m


def run(args) -> int:
    import json
    import sys

    cfg = build_config(args)
    if args.print_unit:
        from edgecnn.serve.systemd import unit

        print(unit(unit_argv(args), user=args.unit_user, writable=_writable(cfg), watchdog_s=args.watchdog_sec), end="")
        return 0
    from edgecnn.serve.service import serve

    log = sys.stderr
    report = serve(cfg, say=lambda line: print(f"[serve] {line}", file=log, flush=True))
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    for name, s in report["sources"].items():
        c = s["counters"]
        print(
            f"[serve] {name}: state {s['state'] or 'unknown'} after {s['changes']} change(s); frames read {c['read']}, "
            f"classified {c['classified']}, dropped {c['dropped']}, corrupt {c['corrupt']}, reconnects {c['reconnects']}"
            + (f"; stopped by {report['stopped_by']}" if report.get("stopped_by") else f"; the source ended ({s['ended_by']})"),
            file=log,
        )
    return 0


def _writable(cfg) -> list[str]:
    """Folders the unit must let the service write: the health logs'."""
    from pathlib import Path

    from edgecnn.serve.config import health_path

    return [str(Path(health_path(cfg, s.name)).resolve().parent) for s in cfg.sources] if cfg.health else []


def unit_argv(args) -> list[str]:
    """The serve command line again, for the unit: paths made absolute (a unit has no working directory), and no
    --print-unit."""
    from pathlib import Path

    out = [str(Path(args.artifact).absolute())] if args.artifact else []
    for action_dest, value in sorted(vars(args).items()):
        if value in (None, False) or action_dest in (
            "artifact",
            "print_unit",
            "unit_user",
            "watchdog_sec",
            "verbose",
            "debug",
            "verb",
            "json",
        ):
            continue
        if action_dest.startswith("_") or action_dest in ("mqtt_password",):
            continue
        if action_dest in _PATHS:
            value = str(Path(value).absolute())
        flag = "--" + action_dest.replace("_", "-")
        for one in value if isinstance(value, list) else [value]:
            out += [flag] if one is True else [flag, str(one)]
    return out
