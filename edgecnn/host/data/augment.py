"""Training-only augmentation as Keras preprocessing layers, configured by the recipe."""

from __future__ import annotations

from typing import Any


def build_augmenter(aug: Any, input_shape: tuple[int, int, int], seed: int = 0) -> Any | None:
    """A Sequential of random layers, or None when the recipe asks for none."""
    from edgecnn.host.models._keras import keras

    k = keras()
    L = k.layers
    layers = []
    if aug.flip != "none":
        layers.append(L.RandomFlip(aug.flip, seed=seed))
    if aug.rotation:
        layers.append(L.RandomRotation(aug.rotation, fill_mode="constant", seed=seed))
    if aug.translation:
        layers.append(L.RandomTranslation(aug.translation, aug.translation, fill_mode="constant", seed=seed))
    if aug.zoom:
        layers.append(L.RandomZoom(aug.zoom, fill_mode="constant", seed=seed))
    if aug.crop:
        h, w = input_shape[:2]
        layers.append(L.RandomCrop(max(1, round(h * (1 - aug.crop))), max(1, round(w * (1 - aug.crop))), seed=seed))
        layers.append(L.Resizing(h, w))
    if aug.brightness:
        layers.append(L.RandomBrightness(aug.brightness, value_range=(0, 1), seed=seed))
    if aug.contrast:
        layers.append(L.RandomContrast(aug.contrast, seed=seed))
    if aug.noise:
        layers.append(L.GaussianNoise(aug.noise, seed=seed))
    return k.Sequential(layers, name="augmentation") if layers else None
