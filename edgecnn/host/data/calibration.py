"""One re-iterable calibration set, preprocessed by ``preprocess.py`` like training data."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgecnn.errors import DataError
from edgecnn.preprocess import PreprocessSpec, preprocess_batch


@dataclass
class CalibrationSet:
    """Float32 NHWC samples for post-training quantisation; iterate it as often as needed."""

    samples: np.ndarray
    source: str = ""

    def __post_init__(self) -> None:
        if self.samples.ndim != 4 or len(self.samples) == 0:
            raise DataError(f"calibration data is empty or not NHWC (shape {self.samples.shape}) from {self.source}")

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self.samples)):
            yield self.samples[i : i + 1]

    def check(self, spec: PreprocessSpec) -> CalibrationSet:
        """Refuse data of the wrong shape or value range (e.g. 0-255 pixels for a 0-1 model)."""
        if tuple(self.samples.shape[1:]) != spec.input_shape:
            raise DataError(f"calibration samples have shape {tuple(self.samples.shape[1:])}, the model takes {spec.input_shape}")
        lo, hi = spec.value_range()
        dmin, dmax = float(self.samples.min()), float(self.samples.max())
        span = hi - lo
        if dmax > hi + 0.5 * span or dmin < lo - 0.5 * span:
            raise DataError(
                f"calibration values span [{dmin:g}, {dmax:g}] but the model was trained on [{lo:g}, {hi:g}] "
                f"({self.source}); quantisation ranges would be wrong",
                hint="give raw images (edgecnn preprocesses them) or arrays preprocessed with the model's preprocess.json",
            )
        return self

    @classmethod
    def from_images(cls, images: list[np.ndarray], spec: PreprocessSpec, *, source_order: str, source: str) -> CalibrationSet:
        if not images:
            raise DataError(f"no calibration images in {source}")
        return cls(preprocess_batch(images, spec, source_order=source_order), source)

    @classmethod
    def from_path(cls, path: str | Path, spec: PreprocessSpec, *, limit: int = 300, seed: int = 0) -> CalibrationSet:
        """A folder of images (flat or one sub-folder per class) or a .npy array already preprocessed."""
        path = Path(path)
        if path.suffix == ".npy":
            try:
                arr = np.load(path, allow_pickle=False).astype(np.float32)
            except (OSError, ValueError) as exc:
                raise DataError(f"cannot read calibration array {path}: {exc}") from None
            if arr.ndim == 3 and spec.channels == 1:
                arr = arr[..., None]
            return cls(arr[:limit], str(path)).check(spec)
        if not path.exists():
            raise DataError(f"calibration data not found: {path}")
        if not path.is_dir():
            raise DataError(f"calibration data {path} is neither a folder of images nor a .npy array")
        from edgecnn.images import check_image, image_files

        files = image_files(path)
        rng = np.random.default_rng(seed)
        files = [files[i] for i in sorted(rng.permutation(len(files))[:limit])]
        images = [img for img, reason in map(check_image, files) if reason is None]
        return cls.from_images(images, spec, source_order="BGR", source=str(path)).check(spec)
