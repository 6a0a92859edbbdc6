"""MobileNet V1/V2/V3 from keras.applications with a replaceable head.

The base is a nested model named ``base`` so transfer learning can freeze it as one unit; the
head (pooling, dropout, dense softmax) is ours. Input scaling is never inside the model:
``preprocess.py`` maps pixels to [-1, 1] (V3's built-in Rescaling is switched off).
"""

from __future__ import annotations

from edgecnn.host.models._keras import application, keras


def _mobilenet(app: str, name: str, *, dropout: float = 0.2, **options):
    """keras.applications.<app> as ``base`` + our head; options: alpha, dropout, bn_momentum (+ minimalistic for V3)."""
    return application(getattr(keras().applications, app), name, dropout=dropout, **options)


def mobilenet_v1(*, dropout: float = 1e-3, **options):
    return _mobilenet("MobileNet", "mobilenet_v1", dropout=dropout, **options)


def mobilenet_v2(**options):
    return _mobilenet("MobileNetV2", "mobilenet_v2", **options)


def mobilenet_v3_small(**options):
    return _mobilenet("MobileNetV3Small", "mobilenet_v3_small", include_preprocessing=False, **options)


def mobilenet_v3_large(**options):
    return _mobilenet("MobileNetV3Large", "mobilenet_v3_large", include_preprocessing=False, **options)
