"""MobileNet V1/V2/V3 from keras.applications with a replaceable head.

The base is a nested model named ``base`` so transfer learning can freeze it as one unit; the
head (pooling, dropout, dense softmax) is ours. Input scaling is never inside the model:
``preprocess.py`` maps pixels to [-1, 1] (V3's built-in Rescaling is switched off).
"""

from __future__ import annotations

from edgecnn.models._keras import application, keras


def _wrap(base_fn, name, *, alpha=1.0, **kw):
    return application(base_fn, name, alpha=alpha, **kw)


def mobilenet_v1(*, input_shape, num_classes, imagenet=False, alpha=1.0, dropout=1e-3, bn_momentum=None):
    return _wrap(
        keras().applications.MobileNet,
        "mobilenet_v1",
        input_shape=input_shape,
        num_classes=num_classes,
        imagenet=imagenet,
        alpha=alpha,
        dropout=dropout,
        bn_momentum=bn_momentum,
    )


def mobilenet_v2(*, input_shape, num_classes, imagenet=False, alpha=1.0, dropout=0.2, bn_momentum=None):
    return _wrap(
        keras().applications.MobileNetV2,
        "mobilenet_v2",
        input_shape=input_shape,
        num_classes=num_classes,
        imagenet=imagenet,
        alpha=alpha,
        dropout=dropout,
        bn_momentum=bn_momentum,
    )


def mobilenet_v3_small(*, input_shape, num_classes, imagenet=False, alpha=1.0, dropout=0.2, bn_momentum=None, minimalistic=False):
    return _wrap(
        keras().applications.MobileNetV3Small,
        "mobilenet_v3_small",
        input_shape=input_shape,
        num_classes=num_classes,
        imagenet=imagenet,
        alpha=alpha,
        dropout=dropout,
        bn_momentum=bn_momentum,
        minimalistic=minimalistic,
        include_preprocessing=False,
    )


def mobilenet_v3_large(*, input_shape, num_classes, imagenet=False, alpha=1.0, dropout=0.2, bn_momentum=None, minimalistic=False):
    return _wrap(
        keras().applications.MobileNetV3Large,
        "mobilenet_v3_large",
        input_shape=input_shape,
        num_classes=num_classes,
        imagenet=imagenet,
        alpha=alpha,
        dropout=dropout,
        bn_momentum=bn_momentum,
        minimalistic=minimalistic,
        include_preprocessing=False,
    )
