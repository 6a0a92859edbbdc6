"""Device side: the backend Protocol every runtime implements, and the runtime registry.

A runtime is registered by name with its capabilities as data (the formats it reads, the package and extra that
install it, its accelerators); its module is imported only when a model is opened with it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edgecnn.errors import MissingDependencyError, RuntimeBackendError
from edgecnn.formats import FORMATS, Format, formats_read_by
from edgecnn.registry import Registry


@dataclass(frozen=True)
class RuntimeInfo:
    """Capabilities as data: what a runtime reads and what it needs installed."""

    name: str
    module: str  # edgecnn.runtime.<module>:<class>
    package: str  # the Python package that provides it
    extra: str  # pip extra that installs it
    accelerators: tuple[str, ...] = ("CPU",)
    imports: tuple[str, ...] = ()  # what opening a model imports (a child that preloads them answers quickly)

    @property
    def formats(self) -> tuple[Format, ...]:
        return formats_read_by(self.name)

    @property
    def suffixes(self) -> tuple[str, ...]:
        return tuple(FORMATS[f].suffix for f in self.formats)

    @property
    def preload(self) -> tuple[str, ...]:
        """Its backend module and the libraries that module opens models with."""
        return (f"edgecnn.runtime.{self.module.split(':')[0]}", *self.imports)

    def load_class(self) -> type:
        mod, cls = self.module.split(":")
        return getattr(importlib.import_module(f"edgecnn.runtime.{mod}"), cls)

    def missing(self, purpose: str = "") -> MissingDependencyError:
        return MissingDependencyError(self.package, self.extra, purpose=purpose or f"the {self.name} runtime")


RUNTIMES: Registry[RuntimeInfo] = Registry("runtime")
RUNTIMES.add(
    "litert", RuntimeInfo("litert", "litert:LiteRTBackend", "ai-edge-litert", "litert", imports=("ai_edge_litert.interpreter",))
)
RUNTIMES.add(
    "onnxruntime",
    RuntimeInfo(
        "onnxruntime", "onnxrt:ONNXRuntimeBackend", "onnxruntime", "onnx", ("CPU", "CUDA", "TensorRT"), imports=("onnxruntime",)
    ),
)
RUNTIMES.add(
    "openvino",
    RuntimeInfo(
        "openvino", "openvino:OpenVINOBackend", "openvino", "openvino", ("CPU", "GPU", "NPU", "AUTO"), imports=("openvino",)
    ),
)

RUNTIMES.add(  # the sensor itself is read through stream/imx500.py; this runs the artifact's host emulation
    "imx500",
    RuntimeInfo("imx500", "imx500:IMX500EmulationBackend", "ai-edge-litert", "litert", ("CPU",), imports=("ai_edge_litert.interpreter",)),
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
    """What callers use of a runtime backend (each is a small class over ``BackendBase``)."""

    name: str
    input: TensorSpec
    output: TensorSpec

    @classmethod
    def open(
        cls, path: Path, *, info: RuntimeInfo, threads: int | None, accelerator: str, allow_fallback: bool, **options: Any
    ) -> Backend:
        """Load ``path``; a RuntimeBackendError (or MissingDependencyError) names what went wrong."""

    def run(self, x: np.ndarray) -> np.ndarray:
        """Float32 NHWC batch in, float32 probabilities out (quantised models (de)quantised here)."""

    def set_input(self, x: np.ndarray) -> None:
        """Write one input without running (what ``invoke`` then times)."""

    def invoke(self) -> np.ndarray:
        """Run on the input already set; the raw output."""

    def describe(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


class QuantizedInput(Protocol):
    """A backend that takes an int8/uint8 input directly (see preprocess.quantize_table)."""

    def run_quantized(self, q: np.ndarray) -> np.ndarray: ...


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
            "pinning": self.pinning(),
            "input": {"name": self.input.name, "shape": list(self.input.shape), "dtype": self.input.dtype},
            "output": {"name": self.output.name, "shape": list(self.output.shape), "dtype": self.output.dtype},
        }

    def pinning(self) -> dict[str, Any]:
        """How this runtime is pinned, as it reports it where it can: ``threads`` (intra-op threads it runs with),
        ``precision`` (the arithmetic of its float operations), ``streams`` (inferences in flight) and ``how``
        (the settings that pin them, by their own names)."""
        return {"threads": self.threads, "precision": "as the model", "streams": 1, "how": {}}

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
    if path.suffix.lower() not in info.suffixes:
        raise RuntimeBackendError(f"runtime '{runtime}' reads {', '.join(info.suffixes)} files; received {path.name}")
    if accelerator and accelerator not in info.accelerators:
        raise RuntimeBackendError(
            f"runtime '{runtime}' has no accelerator '{accelerator}' (known: {', '.join(info.accelerators)})"
        )
    try:
        cls = info.load_class()
    except MissingDependencyError:
        raise
    except ImportError:
        raise info.missing() from None
    return cls.open(path, info=info, threads=threads, accelerator=accelerator or "CPU", allow_fallback=allow_fallback, **options)
