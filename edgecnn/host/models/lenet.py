"""LeNet-5 (LeCun et al. 1998) as the classic Keras rendition, plus a modern variant."""

from __future__ import annotations

from edgecnn.errors import ModelError
from edgecnn.host.models._keras import keras


def lenet5(*, input_shape, num_classes: int, imagenet: bool = False, variant: str = "classic", dropout: float = 0.25):
    """Classic: Conv(6,5x5,tanh) AvgPool Conv(16,5x5,tanh) AvgPool Flatten Dense120 Dense84 Dense softmax.

    ``variant: modern`` swaps in ReLU, max-pooling, batch norm and dropout.
    """
    k = keras()
    L = k.layers
    if variant not in ("classic", "modern"):
        raise ModelError(f"lenet5 variant must be 'classic' or 'modern'; received {variant!r}")
    inputs = k.Input(shape=input_shape, name="input")
    if variant == "classic":
        x = L.Conv2D(6, 5, activation="tanh", name="c1")(inputs)
        x = L.AveragePooling2D(2, name="s2")(x)
        x = L.Conv2D(16, 5, activation="tanh", name="c3")(x)
        x = L.AveragePooling2D(2, name="s4")(x)
        x = L.Flatten(name="flatten")(x)
        x = L.Dense(120, activation="tanh", name="f5")(x)
        x = L.Dense(84, activation="tanh", name="f6")(x)
    else:
        x = L.Conv2D(6, 5, use_bias=False, name="c1")(inputs)
        x = L.BatchNormalization(name="c1_bn")(x)
        x = L.ReLU(name="c1_relu")(x)
        x = L.MaxPooling2D(2, name="s2")(x)
        x = L.Conv2D(16, 5, use_bias=False, name="c3")(x)
        x = L.BatchNormalization(name="c3_bn")(x)
        x = L.ReLU(name="c3_relu")(x)
        x = L.MaxPooling2D(2, name="s4")(x)
        x = L.Flatten(name="flatten")(x)
        x = L.Dense(120, activation="relu", name="f5")(x)
        x = L.Dropout(dropout, name="f5_dropout")(x)
        x = L.Dense(84, activation="relu", name="f6")(x)
    outputs = L.Dense(num_classes, activation="softmax", name="predictions")(x)
    return k.Model(inputs, outputs, name="lenet5" if variant == "classic" else "lenet5_modern")
