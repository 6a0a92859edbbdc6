"""``edgecnn report``: profiles from several devices side by side, with what makes them incomparable flagged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgecnn.errors import ConfigError

HOT_C = 80.0


# the fields report reads, with their types: a result of another shape is one error naming the field
_FIELDS = (
    ("runtime.runtime", str), ("threads", (int, type(None))), ("model.precision", str), ("system.cpu_model", str),
    ("invoke.p50", float), ("invoke.p90", float), ("invoke.fps", float), ("fresh_input.p50", float),
    ("memory.peak_rss_mb", float), ("device_profile", (str, type(None))), ("measured_profile", (str, type(None))),
)


def _check_result(data: dict[str, Any], p: str) -> None:
    from edgecnn.untrusted import expect

    for dotted, kinds in _FIELDS:
        value: Any = data
        for part in dotted.split("."):
            value = expect(value, dict, f"{p}: {dotted.rsplit('.', 1)[0]}", error=ConfigError).get(part)
        expect(value, kinds, f"{p}: {dotted}", error=ConfigError)
    system = data["system"]
    temps = expect(system.get("temperatures_after_c") or {}, dict, f"{p}: system.temperatures_after_c", error=ConfigError)
    for name, value in temps.items():
        expect(value, float, f"{p}: system.temperatures_after_c.{name}", error=ConfigError)
    thr = expect(system.get("throttling") or {}, dict, f"{p}: system.throttling", error=ConfigError)
    expect(thr.get("now") or [], list, f"{p}: system.throttling.now", error=ConfigError)


def load_results(paths: list[str]) -> list[dict[str, Any]]:
    from edgecnn.untrusted import loads

    out = []
    for p in paths:
        try:
            text = Path(p).read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read profile result {p}: {exc.strerror}") from None
        data = loads(text, f"profile result {p}", error=ConfigError)
        if not isinstance(data, dict) or data.get("schema") != "edgecnn.profile":
            schema = data.get("schema") if isinstance(data, dict) else type(data).__name__
            raise ConfigError(
                f"{p} is not an edgecnn profile result (schema {schema!r:.60})",
                hint="make one with edgecnn profile --out FILE",
            )
        _check_result(data, p)
        data["_file"] = p
        out.append(data)
    if not out:
        raise ConfigError("no profile results given")
    return out


def measured_elsewhere(r: dict[str, Any]) -> bool:
    """True when the result's device profile is not the machine that measured it (``profile --device rpi4`` run on
    a workstation: that profile gave the runtime chain and threads; the latencies are the workstation's). Results
    from before ``measured_profile`` was recorded are judged by the profile's architecture and CPU model."""
    target = r.get("device_profile")
    if not target or target == "host":
        return False
    here = r.get("measured_profile")
    if isinstance(here, str) and here != "host":
        return here != target
    # recorded as 'host' (no board signature found, as on an emulated board) or not recorded: judged by the CPU
    from edgecnn.devices import load_profile
    from edgecnn.errors import EdgeCNNError

    try:
        p = load_profile(target)
    except EdgeCNNError:  # a profile this edgecnn does not know: nothing to judge it by
        return here is not None
    arch, cpu = str(r["system"].get("arch") or ""), r["system"]["cpu_model"].lower()
    return bool((p.arch and arch and p.arch != arch) or (p.cpu.model and p.cpu.model.lower() not in cpu))


def measured_on(r: dict[str, Any]) -> str:
    """The machine that measured: its CPU, and its own profile where recorded (``AMD EPYC 7B13 (host)``)."""
    cpu = r["system"]["cpu_model"][:30]
    here = r.get("measured_profile")
    return f"{cpu} ({here})" if isinstance(here, str) else cpu


def target_cell(r: dict[str, Any]) -> str:
    """The device profile; one the machine is not is marked, with its estimate when the result carries one."""
    target = r.get("device_profile") or "-"
    if not measured_elsewhere(r):
        return target
    est = r.get("estimate") or {}
    if isinstance(est.get("estimated_p50_ms"), float) and est.get("device") == target:
        rng = est.get("range_ms")
        span = f", likely {rng[0]:.3g}-{rng[1]:.3g}" if isinstance(rng, list) and len(rng) == 2 else ""
        return f"{target}: NOT measured (est. {est['estimated_p50_ms']:.3g}{span} ms)"
    return f"{target}: NOT measured"


def flags(results: list[dict[str, Any]]) -> list[str]:
    notes = []
    for key, get in (
        ("runtime", lambda r: r["runtime"]["runtime"]),
        ("threads", lambda r: r["threads"]),
        ("precision", lambda r: r["model"]["precision"]),
        ("batch", lambda r: r.get("batch")),
    ):
        values = {str(get(r)) for r in results}
        if len(values) > 1:
            notes.append(f"{key} differs between results ({', '.join(sorted(values))}): latencies are not like for like")
    for r in results:
        name = Path(r["_file"]).name
        if measured_elsewhere(r):
            notes.append(
                f"{name}: profile {r['device_profile']} but measured on {measured_on(r)}: its latencies are that "
                f"machine's, not a {r['device_profile']}'s (measure on the board: edgecnn profile ... --on BOARD)"
            )
        temps = r["system"].get("temperatures_after_c") or {}
        if temps and max(temps.values()) >= HOT_C:
            notes.append(f"{name}: {max(temps.values()):.0f} C after the run (thermal throttling likely)")
        thr = r["system"].get("throttling")
        if thr and thr.get("now"):
            notes.append(f"{name}: throttled during the run ({', '.join(thr['now'])})")
    return notes


def rows(results: list[dict[str, Any]]) -> list[list[str]]:
    return [
        [
            Path(r["_file"]).stem,
            measured_on(r),
            target_cell(r),
            r["runtime"]["runtime"],
            str(r["threads"]),
            r["model"]["precision"],
            f"{r['invoke']['p50']:.3f}",
            f"{r['invoke']['p90']:.3f}",
            f"{r['fresh_input']['p50']:.3f}",
            f"{r['invoke']['fps']:.0f}",
            f"{r['memory']['peak_rss_mb']:.0f}",
        ]
        for r in results
    ]


HEADERS = [
    "result",
    "measured on",
    "profile",
    "runtime",
    "threads",
    "precision",
    "invoke p50",
    "invoke p90",
    "fresh p50",
    "FPS",
    "RSS MB",
]


def bar_chart(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [Path(r["_file"]).stem for r in results]
    fig, ax = plt.subplots(figsize=(max(5, len(names) * 1.2), 4))
    x = range(len(names))
    ax.bar([i - 0.2 for i in x], [r["invoke"]["p50"] for r in results], 0.4, label="invoke p50")
    ax.bar([i + 0.2 for i in x], [r["fresh_input"]["p50"] for r in results], 0.4, label="fresh-input p50")
    ax.set_xticks(list(x), names, rotation=30, ha="right")
    ax.set_ylabel("ms")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
