"""Host side: cross-layer equalisation (Nagel et al. 2019, "Data-free quantization"), before the fine-tune.

Where a convolution A feeds a convolution (or depthwise convolution) B through operators that are positively
homogeneous (ReLU, max-pooling, zero padding, the activation quantiser that is not calibrated yet), scaling A's
output channel c by 1/s_c and B's weights reading it by s_c leaves the float model the same function. Choosing
s_c = sqrt(r_A,c / r_B,c) (the channels' largest |w|) gives both layers' channels equal ranges, which is what
per-tensor activation ranges need: a channel 256 times wider than the rest (``tools/outlier_model.py``) comes back
to the others' width. The fine-tune cannot do this itself in a few epochs: Adam moves each weight by about the
learning rate per step, and those channels' weights are 256 times too large. AIMET applies the same step before
its QAT; it changes no layer the chain does not pass through.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_HOMOGENEOUS = {"MaxPooling2D", "ZeroPadding2D", "Dropout", "ActivationQuant", "SpatialDropout2D", "Identity"}
_TARGETS = ("QuantConv2D", "QuantDepthwiseConv2D")


def _homogeneous(op: Any) -> bool:
    kind = type(op).__name__
    if kind == "ReLU":
        return op.max_value is None and not op.negative_slope and not op.threshold
    if kind == "Activation":
        return getattr(op.activation, "__name__", "") in ("relu", "linear")
    return kind in _HOMOGENEOUS


def _next_weighted(layer: Any) -> Any:
    """The one convolution that reads ``layer``'s output through homogeneous operators only, if any."""
    op = layer
    while True:
        readers = [n.operation for n in getattr(op, "_outbound_nodes", [])]
        if len(readers) != 1:
            return None
        op = readers[0]
        if type(op).__name__ in _TARGETS:
            return op
        if not _homogeneous(op):
            return None


def _act_ok(layer: Any) -> bool:
    return getattr(layer.activation, "__name__", "linear") in ("relu", "linear")


def equalise(model: Any, *, rounds: int = 2) -> list[dict[str, Any]]:
    """Equalise every convolution pair of ``model`` (a QAT model, in place); what was done, pair by pair."""
    done: dict[tuple[str, str], float] = {}
    layers = [layer for layer in model._flatten_layers() if type(layer).__name__ in _TARGETS]  # noqa: SLF001
    for _ in range(rounds):
        for a in layers:
            b = _next_weighted(a)
            if b is None or not _act_ok(a):
                continue
            ratio = _equalise_pair(a, b)
            if ratio is not None:
                done[(a.name, b.name)] = max(done.get((a.name, b.name), 1.0), ratio)
    return [{"layers": [a, b], "widest_before": round(r, 2)} for (a, b), r in done.items()]


def _equalise_pair(a: Any, b: Any) -> float | None:
    ka, ba, kb = np.asarray(a.kernel), np.asarray(a.bias), np.asarray(b.kernel)
    depthwise_a = type(a).__name__ == "QuantDepthwiseConv2D"
    depthwise_b = type(b).__name__ == "QuantDepthwiseConv2D"
    ra = np.abs(ka).max(axis=(0, 1, 3) if depthwise_a else (0, 1, 2))
    rb = np.abs(kb).max(axis=(0, 1, 3) if depthwise_b else (0, 1, 3))
    if ra.shape != rb.shape or np.any(ra <= 0) or np.any(rb <= 0):
        return None
    s = np.sqrt(ra / rb)
    spread = float(ra.max() / np.median(ra))
    a_shape = (1, 1, -1, 1) if depthwise_a else (1, 1, 1, -1)
    a.kernel.assign((ka / s.reshape(a_shape)).astype(np.float32))
    a.bias.assign((ba / s).astype(np.float32))
    b.kernel.assign((kb * s.reshape((1, 1, -1, 1))).astype(np.float32))
    for layer in (a, b):
        layer.refresh_range()
    return spread
