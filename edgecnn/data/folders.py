"""Image-folder datasets (one sub-folder per class) and their validation.

Every file is opened once up front: a dataset that would crash mid-epoch is refused with the
full list of bad files before training starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edgecnn.data.dataset import ImageDataset
from edgecnn.errors import DataError

EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
_MAGIC = {  # what the first bytes say the file really is
    b"\xff\xd8\xff": "jpeg",
    b"\x89PNG\r\n\x1a\n": "png",
    b"BM": "bmp",
    b"GIF8": "gif",
}
_EXT_KIND = {".jpg": "jpeg", ".jpeg": "jpeg", ".png": "png", ".bmp": "bmp", ".webp": "webp"}
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


def _kind_from_bytes(head: bytes) -> str | None:
    for magic, kind in _MAGIC.items():
        if head.startswith(magic):
            return kind
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


def check_image(path: Path) -> tuple[np.ndarray | None, str | None]:
    """Decode one file; return (image, None) or (None, reason)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return None, f"unreadable ({exc.strerror})"
    if not data:
        return None, "empty file (0 bytes)"
    kind = _kind_from_bytes(data[:16])
    if kind is None:
        return None, "not an image (unknown file signature)"
    if kind == "gif":
        return None, "GIF (possibly animated) is not supported; convert it to PNG"
    expected = _EXT_KIND.get(path.suffix.lower())
    if expected and expected != kind:
        return None, f"extension says {expected} but the file is {kind}"
    if kind == "jpeg" and not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
        return None, "truncated JPEG (no end-of-image marker)"
    if kind == "png" and b"IEND" not in data[-16:]:
        return None, "truncated PNG (no IEND chunk)"
    if kind == "jpeg" and _jpeg_is_cmyk(data):
        return None, "CMYK JPEG; convert it to RGB"
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        return None, "undecodable (corrupt image data)"
    if img.dtype != np.uint8:
        return None, f"{img.dtype} pixels ({img.dtype.itemsize * 8}-bit); convert it to 8-bit"
    return img, None


def _jpeg_is_cmyk(data: bytes) -> bool:
    # SOF0..SOF2 segment: FF C0/C1/C2, length(2), precision(1), h(2), w(2), components(1)
    for marker in (b"\xff\xc0", b"\xff\xc1", b"\xff\xc2"):
        i = data.find(marker)
        if i != -1 and i + 9 < len(data):
            return data[i + 9] == 4
    return False


def _class_dirs(root: Path) -> list[Path]:
    if not root.exists():
        raise DataError(f"data folder not found: {root}")
    if not root.is_dir():
        raise DataError(f"data path is not a folder: {root}", hint="give a folder with one sub-folder per class")
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def validate_folder(root: str | Path) -> tuple[ValidationReport, ImageDataset | None]:
    """Check every file; return the report and, if anything loads, the dataset of good files."""
    root = Path(root)
    report = ValidationReport(root)
    dirs = _class_dirs(root)
    images, labels, names = [], [], []
    for d in dirs:
        files = sorted(p for p in d.rglob("*") if p.is_file() and not p.name.startswith("."))
        good = 0
        for f in files:
            if f.suffix.lower() not in EXTENSIONS:
                report.bad_files.append(
                    (f, f"not an image extension ({f.suffix or 'none'}); allowed: {', '.join(sorted(EXTENSIONS))}")
                )
                continue
            img, reason = check_image(f)
            if reason:
                report.bad_files.append((f, reason))
                continue
            images.append(img)
            labels.append(len(names))
            good += 1
        if good == 0:
            report.problems.append(f"{d}: class folder '{d.name}' has no usable images")
        report.classes[d.name] = good
        names.append(d.name)
    if not dirs:
        report.problems.append(f"{root}: no class sub-folders (expected one folder per class)")
    elif len(dirs) == 1:
        report.problems.append(f"{root}: only one class ('{dirs[0].name}'); a classifier needs at least two")
    nonzero = [n for n in report.classes.values() if n]
    if len(nonzero) >= 2 and max(nonzero) / min(nonzero) > IMBALANCE_RATIO:
        report.warnings.append(f"strong class imbalance: largest/smallest = {max(nonzero)}/{min(nonzero)}")
    # keep only classes with images so labels stay contiguous
    if not images:
        return report, None
    keep = [i for i, n in enumerate(names) if report.classes[n] > 0]
    remap = {old: new for new, old in enumerate(keep)}
    ds = ImageDataset(
        images, np.array([remap[lab] for lab in labels], dtype=np.int64), [names[i] for i in keep], "BGR", root.name
    )
    return report, ds


def load_folder(root: Path, *, skip_bad: bool = False) -> ImageDataset:
    report, ds = validate_folder(root)
    if report.problems or ds is None or len(ds.class_names) < 2:
        raise DataError(f"dataset {root} cannot be used for training:\n  " + "\n  ".join(report.lines() or ["no images"]))
    if report.bad_files and not skip_bad:
        raise DataError(
            f"dataset {root} has {len(report.bad_files)} bad file(s):\n  " + "\n  ".join(report.lines()),
            hint="fix or remove them, or pass --skip-bad to train without them",
        )
    return ds
