"""Host side: edgecnn inspect: per-layer output shape, parameters, MACs and activation size."""

from __future__ import annotations

import json
from pathlib import Path

from edgecnn.cli.args import integer, number

HELP = "explain a model layer by layer (zoo name or .keras file)"


def add_arguments(p) -> None:
    p.add_argument("model", help="zoo name (edgecnn models) or a .keras file")
    p.add_argument("--input-size", type=integer(1, 8192), help="square input size for a zoo model")
    p.add_argument("--channels", type=int, choices=[1, 3], help="input channels for a zoo model (1 or 3)")
    p.add_argument("--classes", type=integer(2, 100_000), help="number of classes for a zoo model")
    p.add_argument("--alpha", type=number(above=0, hi=4), help="width multiplier (MobileNets)")
    p.add_argument("--trust-model", action="store_true", help="allow Lambda layers / custom code in a .keras file")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def load_for_inspect(args):
    from edgecnn.host.models import create_model
    from edgecnn.host.models.io import load_keras_model

    path = Path(args.model)
    if path.suffix in (".keras", ".h5") or path.exists():
        return load_keras_model(path, trust=args.trust_model)
    options = {"alpha": args.alpha} if args.alpha is not None else {}
    return create_model(args.model, num_classes=args.classes, input_size=args.input_size, channels=args.channels, **options)


def run(args) -> int:
    from edgecnn.host.models import MODELS

    if not Path(args.model).exists() and not args.model.endswith((".keras", ".h5")):
        MODELS.get(args.model)  # fail fast with "did you mean" before importing TensorFlow
    from edgecnn.host.models.inspect import analyse

    report = analyse(load_for_inspect(args))
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return 0
    from rich.table import Table

    from edgecnn.cli import console

    table = Table(title=f"{report.name}: input {'x'.join(map(str, report.input_shape))}")
    for col in ("layer", "type", "output", "params", "MACs", "activation", "detail"):
        table.add_column(col, justify="right" if col in ("params", "MACs", "activation") else "left", no_wrap=col != "detail")
    for layer in report.layers:
        table.add_row(
            layer.name,
            layer.type,
            "x".join(map(str, layer.output_shape)),
            f"{layer.params:,}",
            f"{layer.macs:,}",
            _bytes(layer.activation_bytes),
            layer.detail,
        )
    out = console()
    out.print(table)
    peak = report.peak_activation
    out.print(f"total parameters: {report.total_params:,} ({_bytes(report.weight_bytes)} as float32)")
    out.print(f"total MACs: {report.total_macs:,} ({report.total_macs / 1e6:.1f} M)")
    out.print(
        f"largest activation: {peak.name} {'x'.join(map(str, peak.output_shape))} = {_bytes(peak.activation_bytes)} (peak-memory hint)"
    )
    return 0


def _bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)
