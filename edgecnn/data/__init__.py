"""Datasets: image folders and bundled offline datasets, as uint8 images + integer labels."""

from __future__ import annotations

from edgecnn.data.dataset import ImageDataset, load_dataset

__all__ = ["ImageDataset", "load_dataset"]
