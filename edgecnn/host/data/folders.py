"""Image-folder datasets (one sub-folder per class) and their validation.

Every file is opened once up front: a dataset that would crash mid-epoch is refused with the
full list of bad files before training starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgecnn.errors import DataError
from edgecnn.host.data.dataset import ImageDataset
from edgecnn.images import EXTENSIONS, check_image

IMBALANCE_RATIO = 10.0


@dataclass
class ValidationReport:
    root: Path
    classes: dict[str, int] = field(default_factory=dict)
    bad_files: list[tuple[Path, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # dataset-level blockers
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.bad_files and not self.problems

    def lines(self) -> list[str]:
        out = [f"{p}: {reason}" for p, reason in self.bad_files]
        return out + self.problems


def _class_dirs(root: Path) -> list[Path]:
    if not root.exists():
        raise DataError(f"data folder not found: {root}")
    if not root.is_dir():
        raise DataError(f"data path is not a folder: {root}", hint="give a folder with one sub-folder per class")
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _class_images(folder: Path, report: ValidationReport, max_pixels: int | None) -> list[np.ndarray]:
    """The sound images of one class folder; every other file goes into the report with its reason."""
    images = []
    for f in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
        if f.suffix.lower() not in EXTENSIONS:
            report.bad_files.append(
                (f, f"not an image extension ({f.suffix or 'none'}); allowed: {', '.join(sorted(EXTENSIONS))}")
            )
            continue
        img, reason = check_image(f, limit=max_pixels)
        if reason:
            report.bad_files.append((f, reason))
        else:
            images.append(img)
    if not images:
        report.problems.append(f"{folder}: class folder '{folder.name}' has no usable images")
    report.classes[folder.name] = len(images)
    return images


def _dataset_problems(root: Path, dirs: list[Path], report: ValidationReport) -> None:
    if not dirs:
        report.problems.append(f"{root}: no class sub-folders (expected one folder per class)")
    elif len(dirs) == 1:
        report.problems.append(f"{root}: only one class ('{dirs[0].name}'); a classifier needs at least two")
    nonzero = [n for n in report.classes.values() if n]
    if len(nonzero) >= 2 and max(nonzero) / min(nonzero) > IMBALANCE_RATIO:
        report.warnings.append(f"strong class imbalance: largest/smallest = {max(nonzero)}/{min(nonzero)}")


def validate_folder(root: str | Path, *, max_pixels: int | None = None) -> tuple[ValidationReport, ImageDataset | None]:
    """Check every file (a file over ``max_pixels`` is refused from its header, never decoded); return the report
    and, if anything loads, the dataset of good files (classes without images left out, labels contiguous)."""
    root = Path(root)
    report = ValidationReport(root)
    dirs = _class_dirs(root)
    per_class = {d.name: _class_images(d, report, max_pixels) for d in dirs}
    _dataset_problems(root, dirs, report)
    kept = [name for name, imgs in per_class.items() if imgs]
    if not kept:
        return report, None
    images = [img for name in kept for img in per_class[name]]
    labels = np.array([i for i, name in enumerate(kept) for _ in per_class[name]], dtype=np.int64)
    return report, ImageDataset(images, labels, kept, "BGR", root.name)


def load_folder(root: Path, *, skip_bad: bool = False, max_pixels: int | None = None) -> ImageDataset:
    report, ds = validate_folder(root, max_pixels=max_pixels)
    if report.problems or ds is None or len(ds.class_names) < 2:
        raise DataError(f"dataset {root} cannot be used for training:\n  " + "\n  ".join(report.lines() or ["no images"]))
    if report.bad_files and not skip_bad:
        raise DataError(
            f"dataset {root} has {len(report.bad_files)} bad file(s):\n  " + "\n  ".join(report.lines()),
            hint="fix or remove them, or pass --skip-bad to train without them",
        )
    ds.skipped = [(str(path), reason) for path, reason in report.bad_files]
    return ds
