"""edgecnn verify: re-check an artifact's hashes and manifest."""

from __future__ import annotations

HELP = "check an artifact's manifest and file hashes, or a training run's file index"


def add_arguments(p) -> None:
    p.add_argument("artifact", help="artifact folder, conversion output folder (every artifact in it) or training run folder")


def run(args) -> int:
    from pathlib import Path

    from edgecnn.manifest import RUN_INDEX, Manifest, verify_run
    from edgecnn.runtime.select import artifact_dirs

    if (Path(args.artifact) / RUN_INDEX).is_file() or (Path(args.artifact) / "model.keras").is_file():
        data = verify_run(args.artifact)
        print(f"ok: {args.artifact} (training run, {len(data['files'])} file(s) match their sha256)")
        return 0

    for d in artifact_dirs(args.artifact):
        m = Manifest.load(d, verify=True)
        parity = m.parity or {}
        status = (
            "parity passed" if parity.get("passed") else ("parity FAILED (kept with --no-gate)" if parity else "no parity record")
        )
        print(f"ok: {d} ({m.format}/{m.precision}, {len(m.files)} file(s) match their sha256, {len(m.labels)} labels, {status})")
    return 0
