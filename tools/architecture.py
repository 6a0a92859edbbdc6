"""Figures of the package's shape (issue 17): long and complex functions, import circles, spelled-out format names.

    python tools/architecture.py [--root edgecnn] [--json] [--graph imports.png|imports.dot]

- functions over 60 lines (from ``def`` to the last line of the body);
- functions over cyclomatic complexity 15, as radon counts them (boolean operators included; ruff's C901, which
  the lint runs with max 15, counts fewer);
- import circles among edgecnn's modules (strongly connected components) of any kind: lazy imports inside functions
  and imports for annotations only (under ``if TYPE_CHECKING:``) included, since either ties two modules together;
- format and runtime names written as string literals outside formats.py, the registrations and the device
  profiles' YAML ("tflite", "onnxruntime", ...), and the files they are in: a fourth format would have to be
  added to each of those files by hand.

``--graph`` draws the import graph between packages (``edgecnn.X`` and ``edgecnn.host.X``; every module's imports,
lazy ones included, summed per pair of packages) in two bands, the host wing above the device side, and counts the
edges from the device side into the host wing. The package root (the public API) is drawn apart: its ``convert`` is
the one door into the host wing, imported when called.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from collections import defaultdict
from pathlib import Path

NAMES = {"tflite", "onnx", "openvino", "litert", "onnxruntime"}
ALLOWED = {"formats.py"}  # the one table; registrations are recognised by their call


def modules(root: Path) -> dict[str, Path]:
    out = {}
    for p in sorted(root.rglob("*.py")):
        parts = list(p.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def long_functions(files: dict[str, Path], limit: int = 60) -> list[tuple[str, int]]:
    found = []
    for name, p in files.items():
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > limit:
                    found.append((f"{name}:{node.name}", n))
    return sorted(found, key=lambda x: -x[1])


def complex_functions(files: dict[str, Path], limit: int = 15) -> list[tuple[str, int]]:
    from radon.complexity import cc_visit

    out = []
    for name, p in files.items():
        for block in cc_visit(p.read_text()):
            for b in [block, *getattr(block, "closures", [])]:
                if b.complexity > limit:
                    out.append((f"{name}:{getattr(b, 'fullname', b.name)}", b.complexity))
    return sorted(out, key=lambda x: -x[1])


def import_graph(files: dict[str, Path]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for name, p in files.items():
        package = name if p.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(p.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            for t in targets:
                while t and t not in files:
                    t = t.rpartition(".")[0]
                if t and t != name and not name.startswith(t + "."):  # a package's __init__ is not a circle of its own
                    graph[name].add(t)
    return graph


def band(name: str) -> str:
    return "host" if name.startswith("edgecnn.host") else "device"


def package_of(name: str) -> str:
    """edgecnn.runtime.litert -> edgecnn.runtime; edgecnn.host.convert.qat.model -> edgecnn.host.convert; the root stays."""
    parts = name.split(".")
    depth = 3 if parts[:2] == ["edgecnn", "host"] and len(parts) > 2 else 2
    return ".".join(parts[:depth])


def package_graph(graph: dict[str, set[str]]) -> dict[tuple[str, str], int]:
    edges: dict[tuple[str, str], int] = defaultdict(int)
    for src, targets in graph.items():
        for dst in targets:
            a, b = package_of(src), package_of(dst)
            if a != b and b != "edgecnn.host":
                edges[(a, b)] += 1
    return dict(edges)


def draw(edges: dict[tuple[str, str], int], path: Path) -> dict:
    """The two bands as DOT (``.dot``) or a picture (``.png``/``.svg``, matplotlib); returns the crossing counts."""
    nodes = sorted({n for e in edges for n in e})
    crossing = {e: n for e, n in edges.items() if band(e[0]) == "device" and band(e[1]) == "host"}
    front = {e: n for e, n in crossing.items() if e[0] == "edgecnn"}
    counts = {"device_to_host": sum(crossing.values()) - sum(front.values()), "public_api_doors": sorted(b for _, b in front),
              "host_to_device": sum(n for e, n in edges.items() if band(e[0]) == "host" and band(e[1]) == "device")}
    short = {n: n.replace("edgecnn.host.", "host/").replace("edgecnn.", "") for n in nodes}
    if path.suffix == ".dot":
        lines = ["digraph edgecnn {", "  rankdir=TB; node [shape=box];"]
        for b in ("host", "device"):
            lines.append(f'  subgraph cluster_{b} {{ label="{b}"; ' + " ".join(f'"{short[n]}";' for n in nodes if band(n) == b and n != "edgecnn") + " }")
        lines += [f'  "{short[a]}" -> "{short[b]}" [label={n}];' for (a, b), n in sorted(edges.items())]
        path.write_text("\n".join(lines + ["}"]) + "\n")
        return counts
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = {"host": [n for n in nodes if band(n) == "host"], "device": [n for n in nodes if band(n) == "device" and n != "edgecnn"]}
    xy = {n: (i / max(1, len(rows["host"]) - 1), 2.0) for i, n in enumerate(rows["host"])}
    xy |= {n: (i / max(1, len(rows["device"]) - 1), 0.0) for i, n in enumerate(rows["device"])}
    xy["edgecnn"] = (-0.12, 1.0)
    fig, ax = plt.subplots(figsize=(16, 6))
    for (a, b), n in edges.items():
        colour = "red" if band(a) == "device" and band(b) == "host" and a != "edgecnn" else ("orange" if a == "edgecnn" and band(b) == "host" else "0.75")
        ax.annotate("", xy=xy[b], xytext=xy[a], arrowprops={"arrowstyle": "->", "color": colour, "lw": 0.6 + 0.1 * min(n, 20)})
    for n, (x, y) in xy.items():
        ax.text(x, y, short[n] if n != "edgecnn" else "edgecnn\n(public API)", ha="center", va="center", fontsize=8, rotation=30 if n != "edgecnn" else 0,
                bbox={"boxstyle": "round", "fc": "#dbe9f6" if band(n) == "device" else "#f6e3db", "ec": "0.4"})
    ax.text(1.08, 2.0, "host wing\n(edgecnn/host/)", va="center", fontsize=10)
    ax.text(1.08, 0.0, "device side\n(edgecnn/)", va="center", fontsize=10)
    ax.set_xlim(-0.2, 1.2)
    ax.set_ylim(-0.6, 2.6)
    ax.axis("off")
    ax.set_title(f"edgecnn imports between packages: device -> host {counts['device_to_host']}, host -> device {counts['host_to_device']}, "
                 f"public API doors {', '.join(counts['public_api_doors']) or 'none'}")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return counts


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def name_literals(files: dict[str, Path]) -> list[tuple[str, int, str]]:
    """String constants that are a format or runtime name, outside formats.py and registration calls."""
    found = []
    for name, p in files.items():
        if p.name in ALLOWED:
            continue
        tree = ast.parse(p.read_text())
        registered = set()
        for node in ast.walk(tree):  # REGISTRY.add("name", Info(...)) / @REGISTRY.register("name"): a registration
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("add", "register"):
                registered |= {id(n) for a in node.args for n in ast.walk(a)}
        docstrings = {
            id(n.body[0].value)
            for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and n.body
            and isinstance(n.body[0], ast.Expr)
            and isinstance(n.body[0].value, ast.Constant)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in NAMES:
                if id(node) not in registered and id(node) not in docstrings:
                    found.append((str(p.relative_to(p.parents[len(name.split(".")) - 1])), node.lineno, node.value))
    return found


def measure(root: Path) -> dict:
    files = modules(root)
    longs, complexes = long_functions(files), complex_functions(files)
    graph = import_graph(files)
    cyc = circles(graph)
    lits = name_literals(files)
    return {
        "modules": len(files),
        "functions_over_60_lines": longs,
        "functions_over_complexity_15": complexes,
        "import_circles": cyc,
        "format_name_literals": len(lits),
        "files_with_format_name_literals": sorted({f for f, _, _ in lits}),
        "literal_sites": lits,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1] / "edgecnn")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--graph", type=Path, help="draw the import graph in two bands (.dot, .png or .svg)")
    args = ap.parse_args()
    m = measure(args.root)
    if args.graph:
        counts = draw(package_graph(import_graph(modules(args.root))), args.graph)
        print(f"import graph: {args.graph} (device -> host edges: {counts['device_to_host']}; host -> device: "
              f"{counts['host_to_device']}; the public API's doors into the host wing: {', '.join(counts['public_api_doors']) or 'none'})")
    if args.json:
        print(json.dumps(m, indent=2))
        return 0
    print(f"modules: {m['modules']}")
    print(
        f"functions over 60 lines: {len(m['functions_over_60_lines'])}  "
        + ", ".join(f"{f} ({n})" for f, n in m["functions_over_60_lines"][:8])
    )
    print(
        f"functions over complexity 15: {len(m['functions_over_complexity_15'])}  "
        + ", ".join(f"{f} ({n})" for f, n in m["functions_over_complexity_15"][:8])
    )
    print(f"import circles: {len(m['import_circles'])}  " + " | ".join(" <-> ".join(c) for c in m["import_circles"]))
    print(
        f"format/runtime names spelled as literals: {m['format_name_literals']} in {len(m['files_with_format_name_literals'])} files: "
        + ", ".join(m["files_with_format_name_literals"])
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
