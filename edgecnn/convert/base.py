"""Formats, precisions and converter capabilities as data; one generic request check."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from edgecnn.errors import ConfigError
from edgecnn.registry import Registry


class Precision(StrEnum):
    FP32 = "fp32"
    FP16 = "fp16"
    DYNAMIC = "dynamic"
    INT8 = "int8"


class Format(StrEnum):
    TFLITE = "tflite"
    ONNX = "onnx"
    OPENVINO = "openvino"


@dataclass(frozen=True)
class ConverterInfo:
    format: Format
    module: str  # edgecnn.convert.<module>:<function>
    suffix: str
    precisions: tuple[Precision, ...]
    runtime: str  # the device runtime that reads it (parity runs through it)
    needs: tuple[str, ...]  # python packages
    extra: str = "train"

    def check(self, precision: str) -> Precision:
        try:
            p = Precision(precision)
        except ValueError:
            p = None
        if p not in self.precisions:
            allowed = ", ".join(self.precisions)
            raise ConfigError(
                f"precision '{precision}' is not supported by '{self.format}' (supported: {allowed})",
                hint=f"use --precision {self.precisions[-1]}",
            )
        return p

    def load(self):
        mod, fn = self.module.split(":")
        return getattr(importlib.import_module(f"edgecnn.convert.{mod}"), fn)


class ConvertFn(Protocol):
    def __call__(
        self, source: Any, precision: Precision, out_dir: Path, *, calibration: Any, profile: Any, **kw: Any
    ) -> dict[str, Any]: ...


CONVERTERS: Registry[ConverterInfo] = Registry("format")
CONVERTERS.add(
    "tflite",
    ConverterInfo(
        Format.TFLITE,
        "tflite:convert",
        ".tflite",
        (Precision.FP32, Precision.FP16, Precision.DYNAMIC, Precision.INT8),
        "litert",
        ("tensorflow",),
    ),
)
CONVERTERS.add(
    "onnx",
    ConverterInfo(
        Format.ONNX,
        "onnx:convert",
        ".onnx",
        (Precision.FP32, Precision.FP16, Precision.INT8),
        "onnxruntime",
        ("tf2onnx", "onnx", "onnxruntime"),
    ),
)
CONVERTERS.add(
    "openvino",
    ConverterInfo(
        Format.OPENVINO,
        "openvino:convert",
        ".xml",
        (Precision.FP32, Precision.FP16, Precision.INT8),
        "openvino",
        ("openvino", "nncf"),
    ),
)


def parse_targets(items: list[str], default: list[tuple[str, str]]) -> list[tuple[str, Precision]]:
    """``--precision`` values: ``int8`` (every format of the profile) or ``tflite/int8``; validated."""
    if not items:
        pairs = default
    else:
        pairs = []
        for item in items:
            if "/" in item:
                fmt, prec = item.split("/", 1)
                pairs.append((fmt, prec))
            else:
                fmts = list(dict.fromkeys(f for f, _ in default)) or list(CONVERTERS)
                pairs += [(f, item) for f in fmts]
    out = []
    for fmt, prec in pairs:
        info = CONVERTERS.get(fmt)
        out.append((fmt, info.check(prec)))
    return list(dict.fromkeys(out))


def die_with_parent() -> None:
    """preexec_fn for conversion children: on Linux they get SIGKILL when edgecnn dies, instead of running on.

    (PR_SET_PDEATHSIG follows the thread that started the child: start them from a thread that outlives them.)"""
    import ctypes
    import signal
    import sys

    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
