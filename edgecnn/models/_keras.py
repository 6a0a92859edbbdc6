"""Import Keras with the TensorFlow backend (the only backend our exporters support)."""

from __future__ import annotations

import os


def keras():
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras as _keras

    return _keras


def classifier_head(x, num_classes: int, *, dropout: float = 0.0, name: str = "predictions"):
    """Global average pooling, optional dropout, dense softmax: the replaceable head."""
    k = keras()
    x = k.layers.GlobalAveragePooling2D(name="head_pool")(x)
    if dropout:
        x = k.layers.Dropout(dropout, name="head_dropout")(x)
    return k.layers.Dense(num_classes, activation="softmax", name=name)(x)
