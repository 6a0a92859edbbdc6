"""Registry of zoo models and the one ``create_model`` factory (after timm's ``_factory.py``)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgecnn.errors import ModelError
from edgecnn.preprocess import PreprocessSpec
from edgecnn.registry import Registry


@dataclass(frozen=True)
class ModelSpec:
    """What the zoo knows about one architecture, without building it.

    ``stages`` lists the (kernel, stride) of every 'valid' spatial reduction in order, from
    which the minimum input size follows with O = (W - K)/S + 1; ``min_size`` overrides it.
    ``reference`` holds params and MACs at the default input and 1000 (or 10) classes,
    checked against the built model by the tests.
    """

    name: str
    builder: str  # "module:function" inside edgecnn.host.models, imported lazily
    description: str
    default_input: tuple[int, int, int]
    default_classes: int = 1000
    preprocess: str = "unit"  # unit | symmetric | caffe
    stages: tuple[tuple[int, int], ...] = ()
    min_size: int | None = None
    imagenet: bool = False
    reference: dict[str, int] = field(default_factory=dict)

    def build_fn(self) -> Callable[..., Any]:
        module, func = self.builder.split(":")
        return getattr(importlib.import_module(f"edgecnn.host.models.{module}"), func)

    def preprocess_spec(self, size: tuple[int, int], channels: int) -> PreprocessSpec:
        if self.preprocess == "symmetric":
            return PreprocessSpec.symmetric(size, channels)
        if self.preprocess == "caffe" and channels == 3:
            return PreprocessSpec(
                height=size[0],
                width=size[1],
                channels=3,
                color_order="BGR",
                scale=1.0,
                mean=(103.939, 116.779, 123.68),
                std=(1.0,),
            )
        return PreprocessSpec.unit(size, channels)


MODELS: Registry[ModelSpec] = Registry("model")


def _add(spec: ModelSpec) -> None:
    MODELS.add(spec.name, spec)


_add(
    ModelSpec(
        "lenet5",
        "lenet:lenet5",
        "LeNet-5 (LeCun 1998): 2 tanh convs + avg-pool, 3 dense",
        (32, 32, 1),
        10,
        stages=((5, 1), (2, 2), (5, 1), (2, 2)),
        reference={"params": 61706, "macs": 416520},
    )
)
_add(
    ModelSpec(
        "squeezenet1_0",
        "squeezenet:squeezenet1_0",
        "SqueezeNet 1.0 (Iandola 2016): fire modules, 7x7 stem",
        (224, 224, 3),
        stages=((7, 2), (3, 2), (3, 2), (3, 2)),
        reference={"params": 1248424, "macs": 777221152},
    )
)
_add(
    ModelSpec(
        "squeezenet1_1",
        "squeezenet:squeezenet1_1",
        "SqueezeNet 1.1: 3x3 stem, earlier pooling, 2.4x fewer MACs",
        (224, 224, 3),
        stages=((3, 2), (3, 2), (3, 2), (3, 2)),
        reference={"params": 1235496, "macs": 349151936},
    )
)
_add(
    ModelSpec(
        "mobilenet_v1",
        "mobilenet:mobilenet_v1",
        "MobileNet V1 (Howard 2017): depthwise-separable convs",
        (224, 224, 3),
        preprocess="symmetric",
        min_size=32,
        imagenet=True,
        reference={"params": 4253864, "macs": 568740352},
    )
)
_add(
    ModelSpec(
        "mobilenet_v2",
        "mobilenet:mobilenet_v2",
        "MobileNet V2 (Sandler 2018): inverted residuals, linear bottlenecks",
        (224, 224, 3),
        preprocess="symmetric",
        min_size=32,
        imagenet=True,
        reference={"params": 3538984, "macs": 300774272},
    )
)
_add(
    ModelSpec(
        "mobilenet_v3_small",
        "mobilenet:mobilenet_v3_small",
        "MobileNet V3 Small (Howard 2019): SE, hard-swish, NAS",
        (224, 224, 3),
        preprocess="symmetric",
        min_size=32,
        imagenet=True,
        reference={"params": 1516120, "macs": 55472576},
    )
)
_add(
    ModelSpec(
        "mobilenet_v3_large",
        "mobilenet:mobilenet_v3_large",
        "MobileNet V3 Large (Howard 2019)",
        (224, 224, 3),
        preprocess="symmetric",
        min_size=32,
        imagenet=True,
        reference={"params": 3957352, "macs": 215040960},
    )
)
_add(
    ModelSpec(
        "alexnet",
        "classic:alexnet",
        "AlexNet (Krizhevsky 2012), hand-built, no LRN",
        (227, 227, 3),
        stages=((11, 4), (3, 2), (3, 2), (3, 2)),
        reference={"params": 62378344, "macs": 1135256096},
    )
)
_add(
    ModelSpec(
        "vgg16",
        "classic:vgg16",
        "VGG-16 (Simonyan 2014): 13 3x3 convs, pooled dense head",
        (224, 224, 3),
        preprocess="caffe",
        min_size=32,
        imagenet=True,
        reference={"params": 15227688, "macs": 15347142656},
    )
)
_add(
    ModelSpec(
        "resnet50",
        "classic:resnet50",
        "ResNet-50 (He 2015): bottleneck residual blocks",
        (224, 224, 3),
        preprocess="caffe",
        min_size=32,
        imagenet=True,
        reference={"params": 25636712, "macs": 3857973248},
    )
)
_add(
    ModelSpec(
        "inception_v3",
        "classic:inception_v3",
        "Inception-v3 (Szegedy 2015): factorised inception modules",
        (299, 299, 3),
        preprocess="symmetric",
        min_size=75,
        imagenet=True,
        reference={"params": 23851784, "macs": 5713216096},
    )
)


def get_spec(name: str) -> ModelSpec:
    return MODELS.get(name)


def conv_output_size(size: int, kernel: int, stride: int = 1, padding: float = 0) -> int:
    """The textbook O = (W - K + 2P) / S + 1, rounded down."""
    return int((size - kernel + 2 * padding) // stride) + 1


def min_input_size(spec: ModelSpec) -> int:
    """Smallest square input for which every valid stage still has an output of at least 1."""
    if spec.min_size:
        return spec.min_size
    for w in range(1, 1024):
        size = w
        for k, s in spec.stages:
            size = conv_output_size(size, k, s)
            if size < 1:
                break
        else:
            return w
    raise ModelError(f"cannot find a valid input size for {spec.name}")


def _input_shape(spec: ModelSpec, input_size: int | tuple[int, int] | None, channels: int | None) -> tuple[int, int, int]:
    h, w, c = spec.default_input
    if input_size is not None:
        h, w = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    c = channels if channels is not None else c
    need = min_input_size(spec)
    if min(h, w) < need:
        raise ModelError(
            f"{spec.name} needs an input of at least {need}x{need}; received {h}x{w}",
            hint=f"use --input-size {max(need, 32)} or larger",
        )
    if c not in (1, 3):
        raise ModelError(f"{spec.name}: channels must be 1 or 3; received {c}")
    return int(h), int(w), int(c)


def create_model(
    name: str,
    *,
    num_classes: int | None = None,
    input_size: int | tuple[int, int] | None = None,
    channels: int | None = None,
    weights: str | Path | None = "none",
    **options: Any,
) -> Any:
    """Build a zoo model as a Keras model.

    Args:
        name: zoo name (``edgecnn models`` lists them).
        num_classes: size of the softmax output (default: the model's reference, 1000 or 10).
        input_size: square size or (height, width); default the model's own.
        channels: 1 or 3 input channels.
        weights: ``none``, ``imagenet`` (Keras cache ``~/.keras/models``, offline once cached)
            or a path to a ``.weights.h5`` / ``.keras`` file with the same architecture.
        **options: architecture options (``alpha``, ``dropout``, ``variant``, ``bn_momentum``...).
    """
    spec = get_spec(name)
    shape = _input_shape(spec, input_size, channels)
    classes = spec.default_classes if num_classes is None else int(num_classes)
    if classes < 2:
        raise ModelError(f"num_classes must be at least 2; received {classes}")
    from edgecnn.host.models import weights as weights_mod

    w = weights_mod.normalise(weights)
    if w == "imagenet":
        if not spec.imagenet:
            raise ModelError(f"no ImageNet weights are published for {name}", hint="use weights: none or a weights file")
        if shape[2] != 3:
            raise ModelError(f"ImageNet weights need 3 input channels; {name} was asked for {shape[2]}")
    build = spec.build_fn()
    try:
        model = weights_mod.with_imagenet_errors(
            lambda: build(input_shape=shape, num_classes=classes, imagenet=(w == "imagenet"), **options), name
        )
    except TypeError as exc:
        raise ModelError(f"{name}: invalid option: {exc}") from None
    except ValueError as exc:
        raise ModelError(f"{name} cannot be built with input {shape}: {exc}") from None
    if w not in ("none", "imagenet"):
        weights_mod.load_into(model, Path(w))
    return model
