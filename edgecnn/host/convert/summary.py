"""Host side: the conversion table: summary.json and summary.md beside the artifacts, and the CLI's rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgecnn import markdown as md
from edgecnn.atomic import write_atomic, write_json_atomic
from edgecnn.errors import ConversionError
from edgecnn.formats import Precision
from edgecnn.host.convert.artifact import Row


@dataclass
class ConversionSummary:
    model: str
    device: str
    out: Path
    rows: list[Row]
    eval_source: str
    calibration_source: str | None
    timeline: list[tuple[float, str]] = field(default_factory=list)  # (seconds since start, step begun)
    conversion_id: str = ""
    kept: list[dict[str, Any]] = field(default_factory=list)  # rows of the same model's earlier artifacts kept in the set
    signed: bool = False

    @property
    def ok(self) -> bool:
        return all(r.status == "ok" for r in self.rows)


def size_ratios(rows: list[Row], source: Any) -> None:
    """Each artifact's size against its format's fp32 artifact (or the Keras model's float32 weights)."""
    fp32 = {r.format: r.size_mb for r in rows if r.precision == Precision.FP32 and r.size_mb}
    keras_mb = source.model.count_params() * 4 / 1e6
    for r in rows:
        if r.size_mb:
            r.size_ratio = r.size_mb / fp32.get(r.format, keras_mb)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:.2f}%"


def summary_rows(summary: ConversionSummary) -> list[list[str]]:
    table = []
    for r in summary.rows:
        p = r.parity
        pct = _pct
        table.append(
            [
                r.format,
                r.precision,
                "-" if r.size_mb is None else f"{r.size_mb:.3f}",
                "-" if r.size_ratio is None else f"{r.size_ratio:.2f}x",
                pct(p.keras_accuracy) if p else "-",
                pct(p.artifact_accuracy) if p else "-",
                pct(p.agreement) if p else "-",
                f"{p.max_abs_dp:.1e}" if p else "-",
                f"{p.p50_ms:.3f}" if p and p.p50_ms else "-",
                r.status if r.status != "ERROR" else f"ERROR: {r.error}",
            ]
        )
    return table


HEADERS = [
    "format",
    "precision",
    "size MB",
    "vs fp32",
    "Keras acc",
    "artifact acc",
    "agreement",
    "max|dp|",
    "p50 ms (host)",
    "status",
]


def write_summary(summary: ConversionSummary, folder: Path | None = None) -> None:
    """summary.json and summary.md into ``folder`` (default: the summary's output folder)."""
    folder = folder or summary.out
    data = {
        "model": summary.model,
        "device": summary.device,
        "conversion_id": summary.conversion_id,
        "eval_data": summary.eval_source,
        "calibration": summary.calibration_source,
        "ok": summary.ok,
        "signed": summary.signed,
        "artifacts": [r.to_dict() for r in summary.rows] + summary.kept,
        "timeline_s": [list(t) for t in summary.timeline],
    }
    write_json_atomic(folder / "summary.json", data)
    lines = [
        f"# {summary.model} for {summary.device}",
        "",
        f"Parity data: {summary.eval_source}. Calibration: {summary.calibration_source or '-'}.",
        "",
        *md.table(HEADERS, summary_rows(summary)),
    ]
    for r in summary.rows:
        if r.parity and r.parity.per_class_delta and r.status != "ok":
            worst = sorted(r.parity.per_class_delta.items(), key=lambda kv: kv[1])[:5]
            lines.append(
                f"\n{r.format}/{r.precision} per-class accuracy change (points): " + ", ".join(f"{k}: {v:+.1f}" for k, v in worst)
            )
        for note in r.notes:
            lines.append(f"\n{r.format}/{r.precision}: {note}")
    if summary.kept:
        kept = ", ".join(f"{r.get('format')}/{r.get('precision')}" for r in summary.kept)
        lines.append(f"\nKept from the earlier conversion of the same model (same conversion id): {kept}.")
    write_atomic(folder / "summary.md", "\n".join(lines) + "\n")


def raise_if_failed(summary: ConversionSummary) -> None:
    bad = [f"{r.format}/{r.precision} ({r.status})" for r in summary.rows if r.status != "ok"]
    if bad:
        raise ConversionError(
            f"{len(bad)} of {len(summary.rows)} artifacts failed: {', '.join(bad)}; see {summary.out / 'summary.md'}"
        )
