"""Host side: the stored element type of every kernel of an exported model, per format (not the file size).

A QAT artifact must store its kernels as int8 in every format; ``int8_weight_report`` reads the model file back
with the format's own library, finds the weight input of every convolution and matrix product, follows it back
through dequantisation to the stored tensor, and refuses the artifact when any is not int8.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgecnn.errors import ConversionError
from edgecnn.formats import Format

_TFLITE_WEIGHTED = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
_OV_WEIGHTED = ("Convolution", "GroupConvolution", "MatMul")
_OV_THROUGH = ("Convert", "Subtract", "Multiply", "Reshape", "Transpose", "Unsqueeze", "Squeeze")


def tflite_kernels(path: Path) -> dict[str, str]:
    from edgecnn.runtime.litert import _interpreter_class

    it = _interpreter_class()[0](model_path=str(path))
    out = {}
    for op in it._get_ops_details():  # noqa: SLF001 - the interpreter's own op list
        if op["op_name"] in _TFLITE_WEIGHTED:
            t = it._get_tensor_details(op["inputs"][1], 0)  # noqa: SLF001
            out[t["name"]] = t["dtype"].__name__
    return out


def tflite_ops(path: Path) -> list[str]:
    from edgecnn.runtime.litert import _interpreter_class

    it = _interpreter_class()[0](model_path=str(path))
    return [op["op_name"] for op in it._get_ops_details()]  # noqa: SLF001


def _ov_source(node: Any) -> Any:
    """The largest Constant behind ``node`` through dequantisation and layout operators."""
    best, stack = None, [node]
    while stack:
        n = stack.pop()
        kind = n.get_type_name()
        if kind == "Constant":
            size = int(__import__("numpy").prod(list(n.get_output_shape(0)) or [1]))
            if best is None or size > best[0]:
                best = (size, n)
        elif kind in _OV_THROUGH:
            stack += [i.get_source_output().get_node() for i in n.inputs()]
    return best[1] if best else None


def openvino_kernels(path: Path) -> dict[str, str]:
    import openvino as ov

    model = ov.Core().read_model(str(path))
    out = {}
    for op in model.get_ordered_ops():
        if op.get_type_name() in _OV_WEIGHTED:
            src = _ov_source(op.input(1).get_source_output().get_node())
            if src is not None:
                out[op.get_friendly_name()] = src.get_output_element_type(0).get_type_name()
    return out


def kernel_dtypes(fmt: str, path: Path) -> dict[str, str]:
    """Every kernel's stored element type by name (``int8``/``i8``, ``float32``/``f32`` ...)."""
    if fmt == Format.TFLITE:
        return tflite_kernels(path)
    if fmt == Format.ONNX:
        from edgecnn.host.convert.qat.onnx_qdq import weight_dtypes

        return weight_dtypes(path)
    return openvino_kernels(path)


def int8_weight_report(fmt: str, path: Path) -> dict[str, Any]:
    """How many kernels and of which stored types; ConversionError naming the first ones that are not int8."""
    kinds = kernel_dtypes(fmt, path)
    wide = [name for name, dtype in kinds.items() if dtype not in ("int8", "i8")]
    if not kinds or wide:
        raise ConversionError(
            f"{fmt}/int8 (QAT): {len(wide)} of {len(kinds)} kernels are not stored as int8: {', '.join(wide[:5])}",
            hint="this is a bug in the QAT export: report it with the model",
        )
    return {"kernels": len(kinds), "stored_as": "int8"}
