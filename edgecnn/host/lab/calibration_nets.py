"""Host side: the small networks ``edgecnn calibrate`` times: each dominated by one kind of layer.

Registered by name; a builder returns a Keras classifier (Keras is imported when one is built).
"""

from __future__ import annotations

from typing import Any

from edgecnn.registry import Registry

NETWORKS: Registry[Any] = Registry("calibration network")


def _keras() -> Any:
    import keras

    return keras


def _L() -> Any:  # noqa: N802 - keras.layers, as the Keras docs write it
    from keras import layers

    return layers


def conv(x, c, k=3, s=1):
    return _L().Conv2D(c, k, strides=s, padding="same", activation="relu")(x)


def pw(x, c):
    return _L().Conv2D(c, 1, activation="relu")(x)


def dw(x, s=1):
    return _L().DepthwiseConv2D(3, strides=s, padding="same", activation="relu")(x)


def model(inp, x):
    out = _L().Dense(10, activation="softmax")(_L().GlobalAveragePooling2D()(x) if len(x.shape) == 4 else x)
    return _keras().Model(inp, out)


@NETWORKS.register("tiny")
def tiny():
    i = _keras().Input((8, 8, 1))
    return model(i, _L().Flatten()(conv(i, 4)))


@NETWORKS.register("conv-64")
def conv64():
    i = _keras().Input((64, 64, 3))
    return model(i, conv(conv(conv(conv(i, 32), 32), 64, s=2), 64))


@NETWORKS.register("conv-128-thin")
def conv128_thin():
    i = _keras().Input((128, 128, 3))
    return model(i, conv(conv(conv(conv(i, 16), 16), 16, s=2), 16))


@NETWORKS.register("conv5x5-48")
def conv5():
    i = _keras().Input((48, 48, 3))
    return model(i, conv(conv(conv(i, 32, k=5), 32, k=5, s=2), 64, k=5))


@NETWORKS.register("pointwise-56")
def pointwise56():
    i = _keras().Input((56, 56, 3))
    return model(i, pw(pw(pw(pw(conv(i, 32), 64), 128), 64), 128))


@NETWORKS.register("pointwise-wide")
def pointwise_wide():
    i = _keras().Input((28, 28, 3))
    return model(i, pw(pw(pw(pw(conv(i, 64, s=2), 256), 512), 512), 256))


@NETWORKS.register("depthwise-112")
def depthwise112():
    i = _keras().Input((112, 112, 3))
    return model(i, dw(dw(dw(dw(conv(i, 32)), s=2))))


@NETWORKS.register("depthwise-wide")
def depthwise_wide():
    i = _keras().Input((56, 56, 3))
    return model(i, dw(dw(dw(dw(pw(conv(i, 96, s=2), 192))))))


@NETWORKS.register("separable-56")
def separable56():
    i = _keras().Input((56, 56, 3))
    x = conv(i, 32)
    x = pw(dw(x), 64)
    x = pw(dw(x), 64)
    return model(i, pw(dw(x, s=2), 128))


@NETWORKS.register("mlp")
def mlp():
    i = _keras().Input((32, 32, 3))
    x = _L().Dense(512, activation="relu")(_L().Flatten()(i))
    return model(i, _L().Dense(256, activation="relu")(x))


@NETWORKS.register("memory-ops")
def memory_ops():
    i = _keras().Input((64, 64, 3))
    x = conv(i, 32)
    x = _L().Add()([x, _L().MaxPooling2D(3, strides=1, padding="same")(x)])
    x = _L().Concatenate()([x, _L().AveragePooling2D(3, strides=1, padding="same")(x)])
    x = _L().MaxPooling2D(2)(_L().ZeroPadding2D(1)(x))
    return model(i, _L().Add()([x, _L().MaxPooling2D(3, strides=1, padding="same")(x)]))


@NETWORKS.register("many-small")
def many_small():
    i = _keras().Input((16, 16, 3))
    x = conv(i, 8)
    for _ in range(16):
        x = pw(x, 8)
    return model(i, x)


@NETWORKS.register("inverted-residual")
def inverted_residual():
    i = _keras().Input((32, 32, 3))
    x = conv(i, 16)
    for _ in range(3):
        x = _L().Add()([x, pw(dw(pw(x, 96)), 16)])
    return model(i, x)


@NETWORKS.register("fire")
def fire():
    i = _keras().Input((56, 56, 3))
    x = conv(i, 64, s=2)
    for c in (16, 32):
        s = pw(x, c)
        x = _L().Concatenate()([pw(s, 4 * c), conv(s, 4 * c)])
    return model(i, _L().MaxPooling2D(3, strides=2)(x))


@NETWORKS.register("average")
def average():
    i = _keras().Input((64, 64, 3))
    x = _L().AveragePooling2D(2)(conv(i, 16))
    x = _L().AveragePooling2D(2)(conv(x, 32))
    return model(i, _L().AveragePooling2D(3, strides=1, padding="same")(conv(x, 32)))


@NETWORKS.register("activations")
def activations():
    i = _keras().Input((48, 48, 3))
    x = _L().Conv2D(16, 3, padding="same", activation="tanh")(i)
    x = _L().Conv2D(16, 3, strides=2, padding="same", activation="sigmoid")(x)
    x = _L().Conv2D(32, 3, padding="same", activation="swish")(x)
    return model(i, _L().Dense(32, activation="tanh")(_L().GlobalAveragePooling2D()(x)))


@NETWORKS.register("small-conv5x5")
def small_conv5():
    i = _keras().Input((32, 32, 3))
    x = _L().AveragePooling2D(2)(_L().Conv2D(8, 5, activation="relu")(i))
    return model(i, _L().AveragePooling2D(2)(_L().Conv2D(16, 5, activation="relu")(x)))


@NETWORKS.register("small-conv3x3")
def small_conv3():
    i = _keras().Input((24, 24, 3))
    return model(i, conv(_L().MaxPooling2D(2)(conv(conv(i, 16), 16)), 32))


@NETWORKS.register("small-tanh")
def small_tanh():
    i = _keras().Input((28, 28, 3))
    x = _L().MaxPooling2D(2)(_L().Conv2D(8, 5, activation="tanh")(i))
    x = _L().MaxPooling2D(2)(_L().Conv2D(16, 3, activation="tanh")(x))
    return model(i, _L().Dense(32, activation="tanh")(_L().Flatten()(x)))


@NETWORKS.register("small-dense")
def small_dense():
    i = _keras().Input((16, 16, 3))
    x = _L().Dense(128, activation="sigmoid")(_L().Flatten()(i))
    return model(i, _L().Dense(64, activation="relu")(x))
