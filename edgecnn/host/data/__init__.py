"""Host side: datasets, image folders and bundled offline datasets, as uint8 images + integer labels."""

from __future__ import annotations

from edgecnn.host.data.dataset import ImageDataset
from edgecnn.host.data.load import load_dataset

__all__ = ["ImageDataset", "load_dataset"]
