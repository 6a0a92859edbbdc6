"""SqueezeNet 1.0 and 1.1 (Iandola et al. 2016) built from fire modules."""

from __future__ import annotations

from edgecnn.host.models._keras import keras

# (squeeze, expand) per fire module; "M" = 3x3/2 max-pool
_V10 = [("conv", 96, 7), "M", (16, 64), (16, 64), (32, 128), "M", (32, 128), (48, 192), (48, 192), (64, 256), "M", (64, 256)]
_V11 = [("conv", 64, 3), "M", (16, 64), (16, 64), "M", (32, 128), (32, 128), "M", (48, 192), (48, 192), (64, 256), (64, 256)]


def fire(x, squeeze: int, expand: int, name: str):
    """Squeeze 1x1 -> (expand 1x1 || expand 3x3), concatenated on channels."""
    L = keras().layers
    s = L.Conv2D(squeeze, 1, activation="relu", name=f"{name}_squeeze1x1")(x)
    e1 = L.Conv2D(expand, 1, activation="relu", name=f"{name}_expand1x1")(s)
    e3 = L.Conv2D(expand, 3, padding="same", activation="relu", name=f"{name}_expand3x3")(s)
    return L.Concatenate(name=f"{name}_concat")([e1, e3])


def _squeezenet(plan, name, *, input_shape, num_classes, dropout=0.5, bn_momentum=None):
    k = keras()
    L = k.layers
    inputs = k.Input(shape=input_shape, name="input")
    x = inputs
    fire_id, pool_id = 2, 1
    for item in plan:
        if item == "M":
            x = L.MaxPooling2D(3, 2, name=f"pool{pool_id}")(x)
            pool_id += 1
        elif item[0] == "conv":
            x = L.Conv2D(item[1], item[2], strides=2, activation="relu", name="conv1")(x)
        else:
            x = fire(x, *item, name=f"fire{fire_id}")
            if bn_momentum is not None:  # optional: helps training from scratch on small data
                x = L.BatchNormalization(momentum=bn_momentum, name=f"fire{fire_id}_bn")(x)
            fire_id += 1
    if dropout:
        x = L.Dropout(dropout, name="drop9")(x)
    x = L.Conv2D(num_classes, 1, activation="relu", name="conv10")(x)
    x = L.GlobalAveragePooling2D(name="pool10")(x)
    outputs = L.Softmax(name="predictions")(x)
    return k.Model(inputs, outputs, name=name)


def squeezenet1_0(*, input_shape, num_classes, imagenet=False, **options):
    return _squeezenet(_V10, "squeezenet1_0", input_shape=input_shape, num_classes=num_classes, **options)


def squeezenet1_1(*, input_shape, num_classes, imagenet=False, **options):
    return _squeezenet(_V11, "squeezenet1_1", input_shape=input_shape, num_classes=num_classes, **options)
