"""``edgecnn report``: profiles from several devices side by side, with what makes them incomparable flagged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgecnn.errors import ConfigError

HOT_C = 80.0


def load_results(paths: list[str]) -> list[dict[str, Any]]:
    out = []
    for p in paths:
        try:
            data = json.loads(Path(p).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read profile result {p}: {exc}") from None
        if data.get("schema") != "edgecnn.profile":
            raise ConfigError(
                f"{p} is not an edgecnn profile result (schema {data.get('schema')!r})",
                hint="make one with edgecnn profile --out FILE",
            )
        data["_file"] = p
        out.append(data)
    if not out:
        raise ConfigError("no profile results given")
    return out


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
        temps = r["system"].get("temperatures_after_c") or {}
        if temps and max(temps.values()) >= HOT_C:
            notes.append(f"{Path(r['_file']).name}: {max(temps.values()):.0f} C after the run (thermal throttling likely)")
        thr = r["system"].get("throttling")
        if thr and thr.get("now"):
            notes.append(f"{Path(r['_file']).name}: throttled during the run ({', '.join(thr['now'])})")
    return notes


def rows(results: list[dict[str, Any]]) -> list[list[str]]:
    return [
        [
            Path(r["_file"]).stem,
            r.get("device_profile") or "-",
            r["system"]["cpu_model"][:30],
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
    "profile",
    "CPU",
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
