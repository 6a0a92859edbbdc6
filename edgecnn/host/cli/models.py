"""Host side: edgecnn models: list the zoo."""

from __future__ import annotations

import json

HELP = "list the model zoo: name, input, parameters, MACs"


def add_arguments(p) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable output")


def run(args) -> int:
    from edgecnn.cli import console
    from edgecnn.cli.tables import Column, fitted
    from edgecnn.host.models import MODELS, get_spec, min_input_size

    rows = []
    for name in MODELS:
        spec = get_spec(name)
        ref = spec.reference
        rows.append(
            {
                "name": name,
                "input": "x".join(map(str, spec.default_input)),
                "min_input": min_input_size(spec),
                "classes": spec.default_classes,
                "params": ref.get("params"),
                "macs": ref.get("macs"),
                "imagenet_weights": spec.imagenet,
                "description": spec.description,
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    columns = [
        Column("name"),
        Column("input", justify="right"),
        Column("min", keep=1, justify="right"),
        Column("params", keep=3, justify="right"),
        Column("MACs", keep=4, justify="right"),
        Column("ImageNet", keep=2, justify="center"),
        Column("description", keep=0, fold_to=30),
    ]
    table_rows = [
        [
            r["name"],
            r["input"],
            str(r["min_input"]),
            f"{r['params']:,}",
            _human(r["macs"]),
            "yes" if r["imagenet_weights"] else "-",
            r["description"],
        ]
        for r in rows
    ]
    out = console()
    title = "edgecnn model zoo (figures at the default input and class count; edgecnn inspect NAME for layers)"
    out.print(fitted(title, columns, table_rows, out.width))
    return 0


def _human(n: int | None) -> str:
    if n is None:
        return "?"
    return f"{n / 1e9:.2f} G" if n >= 1e9 else f"{n / 1e6:.1f} M"
