"""Host side: a trained Keras model -> its QAT copy: batch norm folded, weights and activations fake-quantised.

``keras.models.clone_model(..., clone_function, call_function, recursive=True)`` rebuilds the graph, nested base
models included (the transfer-learning MobileNets): a convolution or dense layer becomes its ``Quant*`` twin with
the batch norm that follows it folded into its kernel and bias (w' = w g/s, b' = beta + (b - mean) g/s, s =
sqrt(var + eps)), the folded batch norm becomes the identity, and an ``ActivationQuant`` follows every tensor that
an int8 model stores: not the ones an operator passes through unchanged (max-pooling, reshapes, padding, dropout),
and not a convolution's output that only a batch norm or a ReLU reads (the converters fuse those into the
convolution, so the int8 model never stores that tensor). A dense layer with a softmax is split into dense,
quantiser, softmax: every int8 runtime gives the softmax its own fixed output range; any other activation but ReLU
is split the same way (convolution, quantiser, activation, quantiser), since only ReLU fuses into an int8
convolution everywhere (ONNX Runtime runs a convolution followed by tanh in float otherwise). Layers outside ``SUPPORTED``
are refused by name.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgecnn.errors import ModelError

PASS_THROUGH = {
    "MaxPooling1D", "MaxPooling2D", "GlobalMaxPooling2D", "Reshape", "Flatten", "ZeroPadding2D", "Cropping2D",
    "Dropout", "SpatialDropout2D", "GaussianNoise", "Identity", "InputLayer",
}  # fmt: skip
QUANTISED = {
    "AveragePooling2D", "GlobalAveragePooling2D", "Add", "Multiply", "Concatenate", "Rescaling", "Activation", "ReLU",
    "Softmax", "BatchNormalization",
}  # fmt: skip
WEIGHTED = {"Conv2D", "DepthwiseConv2D", "Dense"}
SUPPORTED = PASS_THROUGH | QUANTISED | WEIGHTED | {"Functional"}
ACTIVATIONS = {
    "linear",
    "relu",
    "relu6",
    "softmax",
    "tanh",
    "sigmoid",
    "hard_sigmoid",
    "hard_swish",
    "hard_silu",
    "swish",
    "silu",
}
FUSED = ("linear", "relu", "relu6")  # activations every int8 runtime fuses into the convolution before it
_OPERATIONS = {"Add", "Multiply", "Subtract", "Divide", "TrueDivide"}  # Keras ops on symbolic tensors (x + 3.0 in V3)


def _activation(layer: Any) -> str:
    act = getattr(layer, "activation", None)
    return getattr(act, "__name__", "linear") if act is not None else "linear"


def _walk(model: Any):
    for layer in model.layers:
        yield layer
        if type(layer).__name__ in ("Functional", "Sequential") or (hasattr(layer, "layers") and layer.layers):
            yield from _walk(layer)


def check_supported(model: Any) -> None:
    """Refuse, by name, a layer the QAT rewrite does not know how to quantise."""
    bad = []
    for layer in _walk(model):
        kind = type(layer).__name__
        if kind == "Sequential":
            bad.append(f"{layer.name} (Sequential: rebuild it as a functional model)")
        elif kind not in SUPPORTED:
            bad.append(f"{layer.name} ({kind})")
        elif kind == "DepthwiseConv2D" and layer.depth_multiplier != 1:
            bad.append(f"{layer.name} (DepthwiseConv2D with depth_multiplier {layer.depth_multiplier})")
        elif _activation(layer) not in ACTIVATIONS:
            bad.append(f"{layer.name} (activation '{_activation(layer)}')")
    if bad:
        raise ModelError(
            f"quantisation-aware training does not support {len(bad)} layer(s): {', '.join(bad[:8])}"
            + (" ..." if len(bad) > 8 else ""),
            hint="supported: " + ", ".join(sorted(SUPPORTED - {"Functional"})) + "; or use --keep-float / int16x8",
        )


def _consumers(op: Any) -> list[Any]:
    return [node.operation for node in getattr(op, "_outbound_nodes", [])]


def _producer(layer: Any) -> Any:
    nodes = getattr(layer, "_inbound_nodes", [])
    if len(nodes) != 1 or len(nodes[0].input_tensors) != 1:
        return None
    return nodes[0].input_tensors[0]._keras_history.operation  # noqa: SLF001 - Keras's own graph record


def foldable_pairs(model: Any) -> dict[int, Any]:
    """id(batch norm) -> the convolution or dense layer it folds into (its only reader, with no activation)."""
    pairs = {}
    for layer in _walk(model):
        if type(layer).__name__ != "BatchNormalization" or layer.axis not in (-1, 3, [3], [-1]):
            continue
        prev = _producer(layer)
        if prev is not None and type(prev).__name__ in WEIGHTED and _activation(prev) == "linear" and len(_consumers(prev)) == 1:
            pairs[id(layer)] = prev
    return pairs


def _folded_weights(layer: Any, bn: Any | None) -> list[np.ndarray]:
    kernel = np.asarray(layer.kernel)
    bias = (
        np.asarray(layer.bias)
        if layer.bias is not None
        else np.zeros(kernel.shape[-1 if type(layer).__name__ != "DepthwiseConv2D" else 2], np.float32)
    )
    if bn is None:
        return [kernel, bias]
    gamma = np.asarray(bn.gamma) if bn.gamma is not None else 1.0
    beta = np.asarray(bn.beta) if bn.beta is not None else 0.0
    g = gamma / np.sqrt(np.asarray(bn.moving_variance) + bn.epsilon)
    shape = (1, 1, -1, 1) if type(layer).__name__ == "DepthwiseConv2D" else (*([1] * (kernel.ndim - 1)), -1)
    return [(kernel * g.reshape(shape)).astype(np.float32), (beta + (bias - np.asarray(bn.moving_mean)) * g).astype(np.float32)]


def _fusible(op: Any, folded: dict[int, Any]) -> bool:
    """Whether the int8 model fuses ``op`` into the convolution before it (no tensor stored between them)."""
    kind = type(op).__name__
    if id(op) in folded:
        return True
    if kind == "ReLU":
        return not op.negative_slope and not op.threshold
    return kind == "Activation" and _activation(op) in ("relu", "relu6")


def _stores_output(op: Any, folded: dict[int, Any]) -> bool:
    kind = type(op).__name__
    if kind in PASS_THROUGH or kind in ("Functional", "Sequential") or kind == "Softmax":
        return False
    if kind == "Activation" and _activation(op) in ("softmax", "linear"):
        return False
    readers = _consumers(op)
    return not (len(readers) == 1 and _fusible(readers[0], folded))


class _Rewriter:
    """clone_model's two callbacks, sharing what they learn about the original graph."""

    def __init__(self, model: Any) -> None:
        import keras

        self.keras = keras
        self.folded = foldable_pairs(model)
        self.bn_of = {id(conv): bn for bn_id, conv in self.folded.items() for bn in _walk(model) if id(bn) == bn_id}
        self.origin: dict[int, Any] = {}

    def clone(self, layer: Any) -> Any:
        from edgecnn.host.convert.qat.layers import QUANT_CLASSES

        kind = type(layer).__name__
        config = layer.get_config()
        if kind in QUANT_CLASSES:
            bn = self.bn_of.get(id(layer))
            config["use_bias"] = True
            if _activation(layer) not in FUSED:  # split: the convolution's own output is quantised first
                config["activation"] = "linear"
            new = QUANT_CLASSES[kind].from_config(config)
            new._edgecnn_weights = _folded_weights(layer, bn)  # noqa: SLF001 - set once built
        else:
            new = layer.__class__.from_config(config)
            if hasattr(layer, "get_weights"):  # a Keras op on tensors (x + 3.0) has none
                new._edgecnn_weights = [np.asarray(w) for w in layer.get_weights()]  # noqa: SLF001
            if kind == "BatchNormalization":
                new.trainable = False  # one not folded keeps its statistics (inference mode)
        self.origin[id(new)] = layer
        return new

    def call(self, layer: Any, *args: Any, **kwargs: Any) -> Any:
        from edgecnn.host.convert.qat.layers import ActivationQuant

        old = self.origin.get(id(layer), layer)
        if id(old) in self.folded:
            out = args[0]
        else:
            out = layer(*args, **kwargs)
            pending = getattr(layer, "_edgecnn_weights", None)
            if pending is not None and layer.built:
                layer.set_weights(pending) if len(pending) == len(layer.get_weights()) else self._set_some(layer, pending)
                layer._edgecnn_weights = None  # noqa: SLF001
                if hasattr(layer, "refresh_range"):
                    layer.refresh_range()
        kind = type(old).__name__
        name = getattr(old, "name", "op")
        if kind in WEIGHTED and _activation(old) not in FUSED:
            act = _activation(old)
            out = ActivationQuant(name=f"{name}_linear_quant")(out)
            if act == "softmax":
                return self.keras.layers.Softmax(name=f"{name}_softmax")(out)
            out = self.keras.layers.Activation(act, name=f"{name}_{act}")(out)
        if _stores_output(old, self.folded) and (kind in SUPPORTED or kind in _OPERATIONS):
            out = ActivationQuant(name=f"{name}_quant")(out)
        return out

    @staticmethod
    def _set_some(layer: Any, weights: list[np.ndarray]) -> None:
        """A quantised layer has one more variable than its original (the weight range): kernel and bias first."""
        layer.kernel.assign(weights[0])
        layer.bias.assign(weights[1])


def qat_model(model: Any) -> Any:
    """The QAT copy of ``model`` (weights copied, batch norm folded); ranges still to be calibrated."""
    import keras

    from edgecnn.host.convert.qat.layers import ActivationQuant

    check_supported(model)
    rw = _Rewriter(model)
    body = keras.models.clone_model(model, clone_function=rw.clone, call_function=rw.call, recursive=True)
    inputs = keras.Input(model.inputs[0].shape[1:], name="image")
    x = ActivationQuant(name="input_quant")(inputs)
    return keras.Model(inputs, body(x), name=f"{model.name}_qat")
