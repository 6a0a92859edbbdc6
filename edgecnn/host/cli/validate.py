"""Host side: edgecnn validate: check an image-folder dataset and list every bad file."""

from __future__ import annotations

HELP = "check an image-folder dataset (one sub-folder per class) and list bad files"


def add_arguments(p) -> None:
    p.add_argument("data", help="dataset folder")


def run(args) -> int:
    from edgecnn.host.data.folders import validate_folder

    report, _ = validate_folder(args.data)
    for name, n in report.classes.items():
        print(f"class {name}: {n} usable image(s)")
    for line in report.lines():
        print(f"bad: {line}")
    for w in report.warnings:
        print(f"warning: {w}")
    if report.ok:
        print(f"ok: {sum(report.classes.values())} images in {len(report.classes)} classes")
        return 0
    print(
        f"error: {len(report.bad_files)} bad file(s), {len(report.problems)} dataset problem(s); training would refuse this dataset (or use --skip-bad)"
    )
    return 1
