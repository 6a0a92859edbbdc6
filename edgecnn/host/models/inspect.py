"""Layer-by-layer analysis of a Keras model: output shape, parameters, MACs, activation bytes.

MACs come from each layer's hyper-parameters with the textbook formulas, not from a profiler:
a convolution costs O_h * O_w * K_h * K_w * (C_in / groups) * C_out multiply-accumulates, where
O = (W - K + 2P) / S + 1; a depthwise one K_h * K_w * C_in * multiplier per output pixel; a dense
layer in * out. Pooling, normalisation and activations are counted as 0 MACs (the usual
convention; they are memory-bound, which the roofline estimate accounts for via bytes).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from edgecnn.host.models.zoo import conv_output_size

BYTES_PER_VALUE = 4  # float32 activations


@dataclass
class LayerInfo:
    name: str
    type: str
    output_shape: tuple[int, ...]
    params: int
    macs: int
    activation_bytes: int
    detail: str = ""
    input_bytes: int = 0  # all inputs together (an Add reads two), float32
    activation: str = ""  # the activation function applied by this layer, if any (relu, tanh, hard_swish...)
    input_channels: int = 0  # last dimension of the (first) input


@dataclass
class ModelReport:
    name: str
    input_shape: tuple[int, ...]
    layers: list[LayerInfo] = field(default_factory=list)

    @property
    def total_params(self) -> int:
        return sum(layer.params for layer in self.layers)

    @property
    def total_macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    @property
    def weight_bytes(self) -> int:
        return self.total_params * BYTES_PER_VALUE

    @property
    def peak_activation(self) -> LayerInfo:
        return max(self.layers, key=lambda layer: layer.activation_bytes)

    def to_dict(self) -> dict[str, Any]:
        peak = self.peak_activation
        return {
            "name": self.name,
            "input_shape": list(self.input_shape),
            "total_params": self.total_params,
            "total_macs": self.total_macs,
            "peak_activation": {"layer": peak.name, "bytes": peak.activation_bytes},
            "layers": [asdict(layer) | {"output_shape": list(layer.output_shape)} for layer in self.layers],
        }


def _shape(t: Any) -> tuple[int, ...]:
    return tuple(int(d) if d is not None else -1 for d in t.shape[1:])


def _pad_total(size: int, kernel: int, stride: int, dilation: int = 1) -> int:
    k = (kernel - 1) * dilation + 1
    out = math.ceil(size / stride)
    return max((out - 1) * stride + k - size, 0)


def conv_geometry(in_hw: tuple[int, int], kernel, strides, padding: str, dilation=(1, 1)) -> tuple[int, int]:
    """Output (H, W) of a convolution or pooling window by O = (W - K + 2P)/S + 1."""
    out = []
    for size, k, s, d in zip(in_hw, kernel, strides, dilation):
        k_eff = (k - 1) * d + 1
        two_p = _pad_total(size, k, s, d) if padding == "same" else 0
        out.append(conv_output_size(size, k_eff, s, two_p / 2))
    return tuple(out)  # type: ignore[return-value]


def _layer_macs(layer: Any, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> tuple[int, str]:
    kind = type(layer).__name__
    if kind in ("Conv2D", "DepthwiseConv2D", "SeparableConv2D") and len(in_shape) == 3:
        kh, kw = layer.kernel_size
        oh, ow = conv_geometry(in_shape[:2], layer.kernel_size, layer.strides, layer.padding, layer.dilation_rate)
        cin = in_shape[2]
        detail = f"k={kh}x{kw} s={layer.strides[0]} {layer.padding} -> {oh}x{ow}"
        if kind == "Conv2D":
            groups = getattr(layer, "groups", 1) or 1
            return oh * ow * kh * kw * (cin // groups) * layer.filters, detail
        mult = layer.depth_multiplier
        dw = oh * ow * kh * kw * cin * mult
        if kind == "DepthwiseConv2D":
            return dw, detail + " depthwise"
        return dw + oh * ow * cin * mult * layer.filters, detail + " separable"
    if kind == "Dense":
        lead = math.prod(in_shape[:-1]) if len(in_shape) > 1 else 1
        return lead * in_shape[-1] * layer.units, f"{in_shape[-1]} -> {layer.units}"
    if kind in ("MaxPooling2D", "AveragePooling2D") and len(in_shape) == 3:
        oh, ow = conv_geometry(in_shape[:2], layer.pool_size, layer.strides, layer.padding)
        return 0, f"pool {layer.pool_size[0]}x{layer.pool_size[1]} s={layer.strides[0]} -> {oh}x{ow}"
    return 0, ""


def _activation_name(layer: Any) -> str:
    if type(layer).__name__ == "ReLU":
        return "relu"
    fn = getattr(layer, "activation", None)
    name = getattr(fn, "__name__", "") if fn is not None else ""
    return "" if name == "linear" else name


def _walk(model: Any, report: ModelReport, prefix: str = "") -> None:
    import keras

    # ``operations``, not ``layers``: in a functional model arithmetic on tensors (MobileNet V3's hard-sigmoid is
    # ``ReLU6(x + 3) * (1/6)``) is an operation without a layer, and it costs time like one.
    for layer in getattr(model, "operations", model.layers):
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, keras.Model):
            _walk(layer, report, prefix=f"{prefix}{layer.name}/")
            continue
        in_t = layer.input
        ins = list(in_t) if isinstance(in_t, (list, tuple)) else [in_t]
        in_shape = _shape(ins[0])
        out_t = layer.output
        out_shape = _shape(out_t[0] if isinstance(out_t, (list, tuple)) else out_t)
        macs, detail = _layer_macs(layer, in_shape, out_shape)
        report.layers.append(
            LayerInfo(
                name=prefix + layer.name,
                type=type(layer).__name__,
                output_shape=out_shape,
                params=int(layer.count_params()) if getattr(layer, "built", False) else 0,
                macs=int(macs),
                activation_bytes=int(math.prod(d for d in out_shape if d > 0) * BYTES_PER_VALUE),
                detail=detail,
                activation=_activation_name(layer),
                input_channels=in_shape[-1] if in_shape else 0,
                input_bytes=sum(int(math.prod(d for d in _shape(t) if d > 0)) for t in ins) * BYTES_PER_VALUE,
            )
        )


def analyse(model: Any) -> ModelReport:
    """Per-layer report of a built Keras model (nested sub-models are flattened)."""
    report = ModelReport(name=model.name, input_shape=_shape(model.inputs[0]))
    _walk(model, report)
    return report
