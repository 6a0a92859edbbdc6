"""Import Keras with the TensorFlow backend (the only backend our exporters support)."""

from __future__ import annotations


def keras():
    from edgecnn.host._tfenv import prepare

    prepare()
    import keras as _keras

    return _keras


def classifier_head(x, num_classes: int, *, dropout: float = 0.0, name: str = "predictions"):
    """Global average pooling, optional dropout, dense softmax: the replaceable head."""
    k = keras()
    x = k.layers.GlobalAveragePooling2D(name="head_pool")(x)
    if dropout:
        x = k.layers.Dropout(dropout, name="head_dropout")(x)
    return k.layers.Dense(num_classes, activation="softmax", name=name)(x)


def application(
    base_fn,
    name: str,
    *,
    input_shape,
    num_classes: int,
    imagenet: bool,
    dropout: float = 0.0,
    bn_momentum: float | None = None,
    **kw,
):
    """A keras.applications network without its top as a nested model named ``base``, plus our head."""
    k = keras()
    base = base_fn(input_shape=input_shape, include_top=False, weights="imagenet" if imagenet else None, **kw)
    base = k.Model(base.input, base.output, name="base")
    if bn_momentum is not None:
        # Keras's MobileNets use momentum 0.999: on small data the moving statistics never settle and the
        # model evaluates at chance. A recipe may lower it explicitly (issue #3).
        for layer in base.layers:
            if isinstance(layer, k.layers.BatchNormalization):
                layer.momentum = float(bn_momentum)
    inputs = k.Input(shape=input_shape, name="input")
    outputs = classifier_head(base(inputs), num_classes, dropout=dropout)
    return k.Model(inputs, outputs, name=name)
