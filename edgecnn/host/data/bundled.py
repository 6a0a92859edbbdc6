"""Datasets that ship inside packages and work offline.

- ``digits``: scikit-learn's 1,797 real handwritten 8x8 digits (16 grey levels), as uint8.
  Upscaling to LeNet's 32x32 is done by ``preprocess.py`` like any other image.
- ``faces``: scikit-image's ``lfw_subset``: 100 face and 100 not-face 25x25 crops.
"""

from __future__ import annotations

import numpy as np

from edgecnn.errors import DataError, MissingDependencyError
from edgecnn.host.data.dataset import ImageDataset
from edgecnn.registry import Registry

BUNDLED: Registry = Registry("bundled dataset")


@BUNDLED.register("digits")
def digits() -> ImageDataset:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise MissingDependencyError("scikit-learn", "train", purpose="the bundled digits") from None
    d = load_digits()
    images = [np.round(img * (255.0 / 16.0)).astype(np.uint8) for img in d.images]
    return ImageDataset(images, d.target.astype(np.int64), [str(i) for i in range(10)], "GRAY", "digits")


@BUNDLED.register("faces")
def faces() -> ImageDataset:
    try:
        from skimage.data import lfw_subset
    except ImportError:
        raise MissingDependencyError("scikit-image", "train", purpose="the bundled faces") from None
    x = lfw_subset()
    images = [np.round(img * 255).astype(np.uint8) for img in x]
    labels = np.array([0] * 100 + [1] * 100, dtype=np.int64)  # skimage: first 100 faces, then 100 non-faces
    return ImageDataset(images, labels, ["face", "not_face"], "GRAY", "faces")


def load_bundled(name: str) -> ImageDataset:
    ds = BUNDLED.get(name)()
    if len(ds) == 0:
        raise DataError(f"bundled dataset {name} is empty")
    return ds
