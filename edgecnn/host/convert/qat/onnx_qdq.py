"""Host side: a QAT model's ONNX export (tf2onnx: activation fake-quants as QuantizeLinear/DequantizeLinear, kernels
in float on their int8 grid) -> the same model with int8 weight initialisers.

tf2onnx converts ``FakeQuantWithMinMaxVars`` (per tensor) into a Q/DQ pair but has no converter for the per-channel
op, so the QAT model is exported with each kernel already fake-quantised (its values are q * s exactly, s = the
channel's learned range / 127) and this pass stores it as it is meant to be stored: an int8 initialiser and a
DequantizeLinear (per output channel for convolutions, per tensor for matrix products). A convolution's bias becomes
int32 at scale s_input * s_weight, as ONNX Runtime's own quantiser writes it, so that its QDQ fusion turns the
group into one QLinearConv. Where tf2onnx left a pass-through operator (max-pooling, a reshape) between an
activation's DequantizeLinear and a convolution, the same Q/DQ pair is repeated after it: ONNX Runtime fuses only
a DequantizeLinear that feeds the convolution directly. ``check_on_grid`` refuses kernels that are not on their grid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.errors import ConversionError

_PASS = {"MaxPool", "Pad", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Identity"}


class _Graph:
    def __init__(self, model: Any) -> None:
        from onnx import numpy_helper

        self.model, self.graph = model, model.graph
        self.inits = {i.name: numpy_helper.to_array(i) for i in self.graph.initializer}
        self.producer = {o: n for n in self.graph.node for o in n.output}
        self.new_nodes: list[tuple[Any, list[Any]]] = []  # (consumer, nodes to put before it)
        self.counter = 0

    def name(self, base: str) -> str:
        self.counter += 1
        return f"{base}_qat{self.counter}"

    def add_init(self, name: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        self.graph.initializer.append(numpy_helper.from_array(value, name))
        self.inits[name] = value
        return name

    def input_dq(self, node: Any) -> Any:
        """The DequantizeLinear whose output reaches ``node``'s data input through pass-through operators."""
        src = self.producer.get(node.input[0])
        while src is not None and src.op_type in _PASS:
            src = self.producer.get(src.input[0])
        return src if src is not None and src.op_type == "DequantizeLinear" else None


def _requantise_input(g: _Graph, node: Any) -> Any:
    """The activation DequantizeLinear of ``node``'s input, repeated right before it when operators sit between."""
    from onnx import helper

    dq = g.input_dq(node)
    if dq is None:
        raise ConversionError(f"onnx/int8 (QAT): the input of {node.name} has no activation quantiser before it")
    if g.producer.get(node.input[0]) is dq:
        return dq
    q_out, dq_out = g.name(f"{node.name}_in_q"), g.name(f"{node.name}_in_dq")
    q = helper.make_node("QuantizeLinear", [node.input[0], dq.input[1], dq.input[2]], [q_out], name=q_out)
    new_dq = helper.make_node("DequantizeLinear", [q_out, dq.input[1], dq.input[2]], [dq_out], name=dq_out)
    node.input[0] = dq_out
    g.new_nodes.append((node, [q, new_dq]))
    return new_dq


def _weight(g: _Graph, node: Any, per_channel: bool, tolerance: float) -> np.ndarray:
    """Replace ``node``'s float kernel by int8 + DequantizeLinear; the weight scale(s)."""
    from onnx import helper

    w = g.inits[node.input[1]].astype(np.float32)
    axes = tuple(range(1, w.ndim)) if per_channel else None
    wmax = np.abs(w).max(axis=axes) if per_channel else np.abs(w).max()
    scale = (np.maximum(wmax, 1e-12) / 127.0).astype(np.float32)
    shaped = scale.reshape((-1,) + (1,) * (w.ndim - 1)) if per_channel else scale
    q = np.clip(np.round(w / shaped), -127, 127)
    off = float(np.abs(q * shaped - w).max() / max(float(np.max(wmax)), 1e-12))
    if off > tolerance:
        raise ConversionError(f"onnx/int8 (QAT): the kernel of {node.name} is off its int8 grid by {off:.2e} of its range")
    base = g.name(node.name + "_w")
    zp = np.zeros(scale.shape, np.int8)
    inputs = [g.add_init(base + "_int8", q.astype(np.int8)), g.add_init(base + "_scale", scale), g.add_init(base + "_zp", zp)]
    attrs = {"axis": 0} if per_channel else {}
    dq = helper.make_node("DequantizeLinear", inputs, [base + "_dq"], name=base + "_dq", **attrs)
    node.input[1] = base + "_dq"
    g.new_nodes.append((node, [dq]))
    return scale


def _bias(g: _Graph, node: Any, w_scale: np.ndarray, x_scale: float) -> None:
    from onnx import helper

    b = g.inits[node.input[2]].astype(np.float64)
    scale = (np.float64(x_scale) * w_scale.astype(np.float64)).astype(np.float32)
    q = np.clip(np.round(b / scale), -(2**31) + 1, 2**31 - 1).astype(np.int32)
    base = g.name(node.name + "_b")
    inputs = [
        g.add_init(base + "_int32", q),
        g.add_init(base + "_scale", scale),
        g.add_init(base + "_zp", np.zeros(q.shape, np.int32)),
    ]
    node.input[2] = base + "_dq"
    g.new_nodes.append((node, [helper.make_node("DequantizeLinear", inputs, [base + "_dq"], name=base + "_dq", axis=0)]))


def int8_weights(src: Path, dst: Path, *, tolerance: float = 1e-3) -> dict[str, Any]:
    """Rewrite ``src`` (tf2onnx's export of a QAT model) into ``dst`` with int8 kernels; what was stored."""
    import onnx

    model = onnx.load(str(src))
    g = _Graph(model)
    counts = {"conv": 0, "matmul": 0}
    for node in list(g.graph.node):
        if node.op_type == "Conv" and node.input[1] in g.inits:
            dq = _requantise_input(g, node)
            w_scale = _weight(g, node, True, tolerance)
            if len(node.input) > 2 and node.input[2] in g.inits:
                _bias(g, node, w_scale, float(g.inits[dq.input[1]]))
            counts["conv"] += 1
        elif node.op_type == "MatMul" and node.input[1] in g.inits:
            _requantise_input(g, node)
            _weight(g, node, False, tolerance)
            counts["matmul"] += 1
    _insert(g)
    _drop_unused(g)
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))
    return {"int8_kernels": counts["conv"] + counts["matmul"], "how": "int8 initialisers + DequantizeLinear; int32 conv biases"}


def _insert(g: _Graph) -> None:
    nodes = list(g.graph.node)
    before: dict[int, list[Any]] = {}
    for consumer, extra in g.new_nodes:
        before.setdefault(id(consumer), []).extend(extra)
    ordered = []
    for n in nodes:
        ordered += before.get(id(n), []) + [n]
    del g.graph.node[:]
    g.graph.node.extend(ordered)


def _drop_unused(g: _Graph) -> None:
    used = {i for n in g.graph.node for i in n.input} | {o.name for o in g.graph.output}
    keep = [i for i in g.graph.initializer if i.name in used]
    del g.graph.initializer[:]
    g.graph.initializer.extend(keep)


def weight_dtypes(path: Path) -> dict[str, str]:
    """Every initialiser that a Conv/MatMul/Gemm reads as its weight (directly or through a DequantizeLinear), by
    name -> its stored element type (``int8``, ``float32`` ...): what the tests and the manifest check."""
    import onnx
    from onnx import helper

    model = onnx.load(str(path))
    inits = {i.name: i for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    out = {}
    for node in model.graph.node:
        if node.op_type not in ("Conv", "MatMul", "Gemm") or len(node.input) < 2:
            continue
        name = node.input[1]
        src = producer.get(name)
        if src is not None and src.op_type == "DequantizeLinear":
            name = src.input[0]
        if name in inits:
            out[name] = helper.tensor_dtype_to_np_dtype(inits[name].data_type).name
    return out
