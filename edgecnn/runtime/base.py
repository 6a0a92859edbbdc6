"""The backend Protocol (open, run, describe, close) and the runtime registry."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edgecnn.errors import MissingDependencyError, RuntimeBackendError
from edgecnn.registry import Registry


def first_line(exc: BaseException) -> str:
    """``Type: first line`` of a runtime's exception, short enough for one error line."""
    lines = [ln for ln in str(exc).splitlines() if ln.strip()]
    return f"{type(exc).__name__}: {lines[0].strip()[:200] if lines else 'no message'}"


@dataclass(frozen=True)
class RuntimeInfo:
    """Capabilities as data: what a runtime reads and what it needs installed."""

    name: str
    module: str  # edgecnn.runtime.<module>:<class>
    formats: tuple[str, ...]
    suffixes: tuple[str, ...]
    extra: str  # pip extra that installs it
    accelerators: tuple[str, ...] = ("CPU",)

    def load_class(self) -> type:
        mod, cls = self.module.split(":")
        return getattr(importlib.import_module(f"edgecnn.runtime.{mod}"), cls)


RUNTIMES: Registry[RuntimeInfo] = Registry("runtime")
RUNTIMES.add("litert", RuntimeInfo("litert", "litert:LiteRTBackend", ("tflite",), (".tflite",), "litert"))
RUNTIMES.add(
    "onnxruntime",
    RuntimeInfo("onnxruntime", "onnxrt:ONNXRuntimeBackend", ("onnx",), (".onnx",), "onnx", ("CPU", "CUDA", "TensorRT")),
)
RUNTIMES.add(
    "openvino",
    RuntimeInfo("openvino", "openvino:OpenVINOBackend", ("openvino",), (".xml",), "openvino", ("CPU", "GPU", "NPU", "AUTO")),
)


@dataclass
class TensorSpec:
    name: str
    shape: tuple[int, ...]  # -1 for dynamic
    dtype: str
    scale: float = 0.0  # quantised tensors: real = scale * (q - zero_point)
    zero_point: int = 0

    @property
    def quantized(self) -> bool:
        return self.scale != 0.0 and self.dtype in ("int8", "uint8")


class Backend(Protocol):
    name: str
    input: TensorSpec
    output: TensorSpec

    def run(self, x: np.ndarray) -> np.ndarray: ...
    def describe(self) -> dict[str, Any]: ...
    def close(self) -> None: ...


@dataclass
class BackendBase:
    """Shared behaviour: (de)quantisation, input checks, describe()."""

    name: str = ""
    input: TensorSpec = field(default=None)  # type: ignore[assignment]
    output: TensorSpec = field(default=None)  # type: ignore[assignment]
    model_path: Path | None = None
    threads: int | None = None
    accelerator: str = "CPU"
    version: str = ""
    providers: list[str] = field(default_factory=list)

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        spec = self.input
        if not spec.quantized:
            return x if x.dtype == np.float32 else x.astype(np.float32)
        info = np.iinfo(spec.dtype)
        q = np.round(x / spec.scale + spec.zero_point)
        return np.clip(q, info.min, info.max).astype(spec.dtype)

    def dequantize_output(self, y: np.ndarray) -> np.ndarray:
        spec = self.output
        if not spec.quantized:
            return y.astype(np.float32, copy=False)
        return (y.astype(np.float32) - spec.zero_point) * np.float32(spec.scale)

    def describe(self) -> dict[str, Any]:
        return {
            "runtime": self.name,
            "version": self.version,
            "accelerator": self.accelerator,
            "providers": list(self.providers),
            "threads": self.threads,
            "input": {"name": self.input.name, "shape": list(self.input.shape), "dtype": self.input.dtype},
            "output": {"name": self.output.name, "shape": list(self.output.shape), "dtype": self.output.dtype},
        }

    def runtime_latency_ms(self) -> float | None:
        """The last inference's time as the runtime itself measured it, where it reports one (OpenVINO)."""
        return None

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_backend(
    runtime: str,
    model_path: str | Path,
    *,
    threads: int | None = None,
    accelerator: str | None = None,
    allow_fallback: bool = False,
    **options: Any,
) -> Any:
    """Open ``model_path`` with the named runtime; raise a clear error when it cannot."""
    info = RUNTIMES.get(runtime)
    path = Path(model_path)
    if path.suffix not in info.suffixes:
        raise RuntimeBackendError(f"runtime '{runtime}' reads {', '.join(info.suffixes)} files; received {path.name}")
    if accelerator and accelerator not in info.accelerators:
        raise RuntimeBackendError(
            f"runtime '{runtime}' has no accelerator '{accelerator}' (known: {', '.join(info.accelerators)})"
        )
    try:
        cls = info.load_class()
    except MissingDependencyError:
        raise
    except ImportError as exc:
        raise MissingDependencyError(exc.name or runtime, info.extra, purpose=f"the {runtime} runtime") from None
    return cls.open(path, threads=threads, accelerator=accelerator or "CPU", allow_fallback=allow_fallback, **options)
