"""edgecnn verify: re-check an artifact's hashes and manifest."""

from __future__ import annotations

HELP = "check an artifact's manifest and file hashes"


def add_arguments(p) -> None:
    p.add_argument("artifact", help="artifact folder (or a conversion output folder: every artifact in it)")


def run(args) -> int:
    from edgecnn.manifest import Manifest
    from edgecnn.runtime.select import artifact_dirs

    for d in artifact_dirs(args.artifact):
        m = Manifest.load(d, verify=True)
        parity = m.parity or {}
        status = (
            "parity passed" if parity.get("passed") else ("parity FAILED (kept with --no-gate)" if parity else "no parity record")
        )
        print(f"ok: {d} ({m.format}/{m.precision}, {len(m.files)} file(s) match their sha256, {len(m.labels)} labels, {status})")
    return 0
