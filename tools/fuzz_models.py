"""Mutation fuzz of model files (issue #8, figures 2 and 3): the full run.

    python tools/fuzz_models.py [--count 2000] [--out bench-out/fuzz] [--artifacts DIR] [--run DIR]

Without --artifacts/--run it trains recipes/lenet5-digits.yaml and converts it for the host profile (about
1 min). Every artifact (TFLite/ONNX/OpenVINO, fp32 and int8) and the run's model.keras get ``--count`` byte
mutants, each loaded and run in a child process (memory limit, 10 s kill), and each put in place of the model
inside its artifact folder to check the integrity gate. Writes fuzz.json and fuzz.md; exits 1 when any
uncaught non-edgecnn exception, hang or gate miss occurred. CI runs the same code on fewer mutants
(tests/hardening/test_fuzz.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=2000, help="mutants per model file")
    ap.add_argument("--out", type=Path, default=REPO / "bench-out" / "fuzz")
    ap.add_argument("--artifacts", type=Path, help="a conversion output folder (default: convert a fresh LeNet-5 run)")
    ap.add_argument("--run", type=Path, help="a training run folder whose model.keras is fuzzed too")
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--memory-mb", type=int, default=4096)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from rich.console import Console
    from rich.progress import Progress

    from edgecnn.host.hardening.fuzz import fuzz_artifact
    from edgecnn.markdown import table
    from edgecnn.runtime.select import artifact_dirs

    console = Console(stderr=True)
    args.out.mkdir(parents=True, exist_ok=True)
    run = args.run or args.out / "lenet5-run"
    if not (run / "model.keras").is_file():
        from edgecnn.host.train.recipe import load_recipe
        from edgecnn.host.train.trainer import train

        console.print(f"training recipes/lenet5-digits.yaml -> {run}")
        train(load_recipe(REPO / "recipes/lenet5-digits.yaml"), run, quiet=True)
    artifacts = args.artifacts or args.out / "lenet5-host"
    if not args.artifacts and not (artifacts / "summary.json").is_file():
        from edgecnn.host.convert.api import convert

        console.print(f"converting {run} for host -> {artifacts}")
        convert(run, "host", out=artifacts, force=True)

    targets = [*artifact_dirs(artifacts), run]
    reports = []
    with Progress(console=console) as progress:
        for i, target in enumerate(targets):
            task = progress.add_task(target.name, total=args.count)
            rep = fuzz_artifact(
                target,
                args.count,
                seed=args.seed + i,
                timeout=args.timeout,
                memory_mb=args.memory_mb,
                progress=lambda k, r, task=task: progress.update(task, completed=k + 1),
            )
            reports.append((target.name, rep))

    rows = []
    for name, rep in reports:
        o = rep.outcomes
        rows.append(
            [
                name,
                *(str(v) for v in (rep.mutants, o["ran"], o["refused"], o["crashed"], o["uncaught"], o["hung"])),
                f"{rep.gate_refused}/{rep.gate_checked}" if rep.gate_checked else "n/a (no manifest)",
                f"{rep.seconds:.0f}",
                "PASS" if rep.passed else "FAIL",
            ]
        )
    header = ["model", "mutants", "ran", "refused", "crashed (caught)", "uncaught", "hung", "gate refused", "s", "status"]
    md = (
        f"# Mutation fuzz, {time.strftime('%Y-%m-%d %H:%M')}\n\n"
        f"{args.count} mutants per model, each probed in a child (RLIMIT_AS {args.memory_mb} MB, {args.timeout:g} s kill).\n"
        "`ran`: loaded and produced an output (wrong outputs are possible: that is what the integrity gate is for); "
        "`refused`: an EdgeCNNError; `crashed`: the native runtime killed the child, reported as an error to the parent.\n\n"
        + "\n".join(table(header, rows))
        + "\n"
    )
    (args.out / "fuzz.md").write_text(md)
    (args.out / "fuzz.json").write_text(json.dumps([r.to_dict() for _, r in reports], indent=2))
    print(md)
    return 0 if all(r.passed for _, r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
