"""Host side: edgecnn toolchain install|list: converter toolchains kept in their own environments (edgecnn.host.toolchain)."""

from __future__ import annotations

import json

HELP = (
    "install / list converter toolchains that need their own Python environment "
    "(imx500: Sony's Edge-MDT for the Raspberry Pi AI Camera, TensorFlow 2.15 on Python 3.11 + Java 17)"
)


def add_arguments(p) -> None:
    p.epilog = (
        "examples:\n"
        "  edgecnn toolchain install imx500     # a venv under edgecnn's cache with edge-mdt[tf] (2.3 GB, 4-5 min)\n"
        "  edgecnn toolchain list               # what is installed, its versions, size and install time\n"
        "The toolchain lives in $EDGECNN_CACHE/toolchains/NAME (default ~/.cache/edgecnn/toolchains/NAME); "
        "`edgecnn convert --device rpi-aicam` finds it there and never installs anything itself."
    )
    import argparse

    p.formatter_class = argparse.RawDescriptionHelpFormatter
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    i = sub.add_parser("install", help="build a toolchain's environment (pip install into its own venv)")
    i.add_argument("name", help="the toolchain: imx500")
    i.add_argument("--python", help="the interpreter for its venv (default: python3.11 on PATH)")
    i.add_argument("--force", action="store_true", help="rebuild it even when it is installed")
    lst = sub.add_parser("list", help="the known toolchains, installed or not")
    lst.add_argument("--json", action="store_true", help="machine-readable output")
    for q in (i, lst):
        q.add_argument("--debug", action="store_true", help="show full tracebacks")
        q.add_argument("-v", "--verbose", action="store_true", help="say more")


def run(args) -> int:
    from edgecnn.host import toolchain

    if args.action == "install":
        record = toolchain.install(args.name, python=args.python, force=args.force, say=lambda m: print(m, flush=True))
        versions = ", ".join(f"{k} {v}" for k, v in record.get("versions", {}).items())
        print(f"{record['name']}: installed in {toolchain.venv_dir(args.name)}: {versions}; Java {record.get('java')}; "
              f"{record['bytes'] / 1e9:.2f} GB in {record['seconds']:.0f} s")  # fmt: skip
        return 0
    rows = toolchain.listing()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        if r["installed"]:
            versions = ", ".join(f"{k} {v}" for k, v in r.get("versions", {}).items())
            print(f"{r['name']}: installed ({r['path']}; Python {r.get('python')}, Java {r.get('java')}; {versions}; "
                  f"{r.get('bytes', 0) / 1e9:.2f} GB, installed in {r.get('seconds', 0):.0f} s)")  # fmt: skip
        else:
            print(f"{r['name']}: not installed ({r['description']}): edgecnn toolchain install {r['name']}")
    return 0
