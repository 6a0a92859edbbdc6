"""Host side: the fake-quantising Keras layers of a QAT model (issue #29).

Weights: one symmetric int8 range per output channel (per tensor for dense layers, below) (narrow range, [-127, 127]: what TFLite, ONNX Runtime and
OpenVINO store for int8 weights), the range being the channel's largest |w|, recomputed at every training step
and kept in a non-trainable variable so that the exported graph reads it as a constant. Activations: one range
per tensor, first the min/max over the calibration images, then an exponential moving average of each training
batch's min/max (TF-MOT's MovingAverageQuantizer), always containing 0. Both use Keras 3's own
``keras.quantizers.fake_quant_with_min_max_vars``, which on TensorFlow is ``tf.quantization.fake_quant_*``: the
ops the TFLite converter folds into int8 tensors, and tf2onnx into QuantizeLinear/DequantizeLinear.

``weights_in_graph = False`` (set on a copy for the ONNX export) leaves the weight fake-quant out of the graph and
expects the kernel to hold its fake-quantised values already: tf2onnx has no converter for the per-channel op.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

EMA = 0.99  # moving-average momentum of the activation ranges during fine-tuning


def fake_quant_kernel(kernel: Any, out_axis: int | None, wmax: Any) -> Any:
    """``kernel`` on the symmetric int8 grid of ``wmax`` (one per output channel along ``out_axis``, or one)."""
    wmax = ops.maximum(wmax, 1e-8)
    return keras.quantizers.fake_quant_with_min_max_vars(kernel, -wmax, wmax, num_bits=8, narrow_range=True, axis=out_axis)


class _WeightQuant:
    """Mixin: a per-output-channel range variable for ``self.kernel``, refreshed in training."""

    out_axis = -1

    def _add_range(self) -> None:
        shape = () if self.out_axis is None else (self.kernel.shape[self.out_axis],)
        self.wmax = self.add_weight(name="kernel_range", shape=shape, initializer="ones", trainable=False)
        self.weights_in_graph = True
        self.refresh_range()

    def _reduce_axes(self) -> tuple[int, ...] | None:
        if self.out_axis is None:
            return None
        rank = len(self.kernel.shape)
        out = self.out_axis % rank
        return tuple(i for i in range(rank) if i != out)

    def kernel_max(self, kernel: Any) -> Any:
        return ops.max(ops.abs(kernel), axis=self._reduce_axes())

    def refresh_range(self) -> None:
        self.wmax.assign(self.kernel_max(self.kernel))

    def save_own_variables(self, store: Any) -> None:
        """Kernel, bias and the weight range (the base classes save the first two only)."""
        for i, v in enumerate((self._kernel, self.bias, self.wmax)):
            store[str(i)] = v

    def load_own_variables(self, store: Any) -> None:
        for i, v in enumerate((self._kernel, self.bias, self.wmax)):
            v.assign(store[str(i)])

    def quantised_kernel(self, training: bool | None) -> Any:
        if not self.weights_in_graph:
            return self.kernel
        if training:
            wmax = ops.stop_gradient(self.kernel_max(self.kernel))
            self.wmax.assign(wmax)
        else:
            wmax = self.wmax
        return fake_quant_kernel(self.kernel, self.out_axis, wmax)


@keras.saving.register_keras_serializable(package="edgecnn_qat")
class QuantConv2D(_WeightQuant, keras.layers.Conv2D):
    """Conv2D whose kernel is fake-quantised per output channel (kernel HWIO: the last axis)."""

    def build(self, input_shape: Any) -> None:
        super().build(input_shape)
        self._add_range()

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        outputs = self.convolution_op(inputs, self.quantised_kernel(training))
        if self.use_bias:
            outputs = ops.add(outputs, self.bias)
        return self.activation(outputs) if self.activation is not None else outputs


@keras.saving.register_keras_serializable(package="edgecnn_qat")
class QuantDepthwiseConv2D(_WeightQuant, keras.layers.DepthwiseConv2D):
    """DepthwiseConv2D, fake-quantised per output channel (kernel H W C 1 with multiplier 1: axis 2)."""

    out_axis = 2

    def build(self, input_shape: Any) -> None:
        super().build(input_shape)
        self._add_range()

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        outputs = ops.depthwise_conv(
            inputs,
            self.quantised_kernel(training),
            strides=self.strides,
            padding=self.padding,
            dilation_rate=self.dilation_rate,
            data_format=self.data_format,
        )
        if self.use_bias:
            outputs = ops.add(outputs, self.bias)
        return self.activation(outputs) if self.activation is not None else outputs


@keras.saving.register_keras_serializable(package="edgecnn_qat")
class QuantDense(_WeightQuant, keras.layers.Dense):
    """Dense, fake-quantised with one range per tensor: TFLite stores a fully-connected kernel transposed
    ([out, in]) and its converter refuses a per-channel axis through that transpose (as TF-MOT, per tensor)."""

    out_axis = None

    def build(self, input_shape: Any) -> None:
        super().build(input_shape)
        self._add_range()

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        x = ops.matmul(inputs, self.quantised_kernel(training))
        if self.bias is not None:
            x = ops.add(x, self.bias)
        return self.activation(x) if self.activation is not None else x


@keras.saving.register_keras_serializable(package="edgecnn_qat")
class ActivationQuant(keras.layers.Layer):
    """Per-tensor fake quantisation of an activation, its range from calibration then a moving average."""

    def __init__(self, momentum: float = EMA, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.momentum = momentum
        self.calibrating = False  # True: pass through and record min/max (set by the calibration pass)

    def build(self, input_shape: Any) -> None:
        self.amin = self.add_weight(name="min", shape=(), initializer="zeros", trainable=False)
        self.amax = self.add_weight(name="max", shape=(), initializer="zeros", trainable=False)

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        if self.calibrating:
            self.amin.assign(ops.minimum(self.amin, ops.min(inputs)))
            self.amax.assign(ops.maximum(self.amax, ops.max(inputs)))
            return inputs
        lo, hi = self.amin, self.amax
        if training:
            m = self.momentum
            lo = m * self.amin + (1 - m) * ops.minimum(ops.stop_gradient(ops.min(inputs)), 0.0)
            hi = m * self.amax + (1 - m) * ops.maximum(ops.stop_gradient(ops.max(inputs)), 0.0)
            self.amin.assign(lo)
            self.amax.assign(hi)
        hi = ops.maximum(hi, lo + 1e-6)
        return keras.quantizers.fake_quant_with_min_max_vars(inputs, lo, hi, num_bits=8, narrow_range=False)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return super().get_config() | {"momentum": self.momentum}


QUANT_CLASSES = {"Conv2D": QuantConv2D, "DepthwiseConv2D": QuantDepthwiseConv2D, "Dense": QuantDense}
