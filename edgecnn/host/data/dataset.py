"""An in-memory image dataset and its deterministic stratified split.

Images stay raw (uint8, in their source channel order) until ``preprocess.py`` turns them into
model inputs, so training, calibration, parity and the runtime share one code path.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgecnn.errors import DataError


@dataclass
class ImageDataset:
    images: list[np.ndarray]
    labels: np.ndarray
    class_names: list[str]
    source_order: str = "BGR"  # channel order of the raw images (OpenCV gives BGR)
    name: str = ""
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, why) left out with --skip-bad

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, idx: np.ndarray | list[int], name: str = "") -> ImageDataset:
        idx = np.asarray(idx, dtype=int)
        return ImageDataset(
            [self.images[i] for i in idx], self.labels[idx], self.class_names, self.source_order, name or self.name
        )

    def counts(self) -> dict[str, int]:
        return {c: int((self.labels == i).sum()) for i, c in enumerate(self.class_names)}

    def split(
        self, *, validation: float = 0.15, test: float = 0.15, seed: int = 0
    ) -> tuple[ImageDataset, ImageDataset, ImageDataset]:
        """Deterministic stratified train / validation / test split (scikit-learn)."""
        from sklearn.model_selection import train_test_split

        if not 0 <= validation < 1 or not 0 <= test < 1 or validation + test >= 1:
            raise DataError(f"split fractions must be in [0, 1) and sum below 1; received validation={validation}, test={test}")
        idx = np.arange(len(self))
        rest, test_idx = (
            (idx, idx[:0]) if test == 0 else train_test_split(idx, test_size=test, stratify=self.labels, random_state=seed)
        )
        if validation == 0:
            train_idx, val_idx = rest, rest[:0]
        else:
            train_idx, val_idx = train_test_split(
                rest, test_size=validation / (1 - test), stratify=self.labels[rest], random_state=seed
            )
        return (
            self.subset(np.sort(train_idx), "train"),
            self.subset(np.sort(val_idx), "validation"),
            self.subset(np.sort(test_idx), "test"),
        )

    def balanced_sample(self, n: int, *, seed: int = 0) -> ImageDataset:
        """Up to ``n`` images, as equal per class as possible (for calibration)."""
        rng = np.random.default_rng(seed)
        per_class = [rng.permutation(np.flatnonzero(self.labels == c)) for c in range(len(self.class_names))]
        chosen: list[int] = []
        k = 0
        while len(chosen) < min(n, len(self)):
            for ids in per_class:
                if k < len(ids) and len(chosen) < n:
                    chosen.append(int(ids[k]))
            k += 1
        return self.subset(sorted(chosen), "calibration")
