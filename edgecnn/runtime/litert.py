"""Device side: the LiteRT (TFLite) backend; ai_edge_litert, else tflite_runtime, else tensorflow.lite."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.errors import RuntimeBackendError, first_line
from edgecnn.runtime.base import BackendBase, RuntimeInfo, TensorSpec


def _interpreter_class(info: RuntimeInfo | None = None) -> tuple[Any, str, str]:
    try:
        import ai_edge_litert
        from ai_edge_litert import interpreter as mod

        return mod.Interpreter, "ai-edge-litert", getattr(ai_edge_litert, "__version__", "")
    except ImportError:
        pass
    try:
        import tflite_runtime
        from tflite_runtime import interpreter as mod

        return mod.Interpreter, "tflite-runtime", getattr(tflite_runtime, "__version__", "")
    except ImportError:
        pass
    # Third choice (issue #5): TensorFlow's own copy, but only where TensorFlow is already loaded (the host, e.g. the
    # parity check inside `edgecnn convert`). The runtime never imports TensorFlow itself: on a device without a
    # runtime package this is a clear "install ai-edge-litert", not a multi-second import of the host toolchain.
    tf = sys.modules.get("tensorflow")
    if tf is not None and hasattr(tf, "lite"):
        return tf.lite.Interpreter, "tensorflow.lite", tf.__version__
    from edgecnn.formats import Format, runtime_for
    from edgecnn.runtime.base import RUNTIMES

    raise (info or RUNTIMES.get(runtime_for(Format.TFLITE))).missing("running .tflite models")


def _spec(detail: dict) -> TensorSpec:
    scale, zp = detail.get("quantization", (0.0, 0))
    return TensorSpec(
        detail["name"],
        tuple(int(d) for d in detail.get("shape_signature", detail["shape"])),
        np.dtype(detail["dtype"]).name,
        float(scale),
        int(zp),
    )


def _load_error(package: str, version: str, path: Path, exc: BaseException) -> RuntimeBackendError:
    hint = None
    if "Didn't find op for builtin opcode" in str(exc):  # an operator version newer than this runtime
        hint = (
            f"the model uses an operator version {package} {version} predates: install a newer LiteRT "
            '(pip install "edgecnn[litert]"), or convert for a device profile whose litert_floor names this runtime'
        )
    return RuntimeBackendError(f"{package} cannot load {path}: {first_line(exc, 200, with_type=True)}", hint=hint)


class LiteRTBackend(BackendBase):
    """A TFLite model in a LiteRT interpreter (XNNPACK on the CPU)."""

    @classmethod
    def open(cls, path: Path, *, info: RuntimeInfo, threads: int | None = None, accelerator: str = "CPU", **_: Any):
        Interpreter, package, version = _interpreter_class(info)
        try:
            interp = Interpreter(model_path=str(path), num_threads=threads)
            interp.allocate_tensors()
            ins, outs = interp.get_input_details(), interp.get_output_details()
            specs = [_spec(d) for d in ins + outs]
        except Exception as exc:  # ValueError/RuntimeError from the C++ side; anything else from a malformed file
            raise _load_error(package, version, path, exc) from exc
        if len(ins) != 1 or len(outs) != 1:
            raise RuntimeBackendError(f"{path}: expected one input and one output; found {len(ins)} and {len(outs)}")
        self = cls(
            name=info.name,
            model_path=path,
            threads=threads,
            accelerator="CPU",
            version=f"{package} {version}",
            providers=["XNNPACK" if package != "tensorflow.lite" else "builtin+XNNPACK"],
        )
        self._interp = interp
        self._in_idx, self._out_idx = ins[0]["index"], outs[0]["index"]
        self.input, self.output = specs
        self._batch = int(ins[0]["shape"][0])
        self._in_dtype = np.dtype(ins[0]["dtype"])
        return self

    def pinning(self) -> dict[str, Any]:
        # XNNPACK runs float operations in fp32 (fp16 weights are widened at load) and quantised ones in int8; one
        # interpreter runs one inference at a time on a pool of num_threads (the caller and num_threads - 1 workers)
        threads = self.threads or 1  # Interpreter(num_threads=None) is LiteRT's default: one thread
        how = {"Interpreter(num_threads)": self.threads, "delegate": self.providers[0], "float ops": "fp32"}
        return {"threads": threads, "precision": "f32", "streams": 1, "how": how}

    def set_input(self, x: np.ndarray) -> None:
        """Write an input (quantised if the model wants int8/uint8) without running."""
        self._set_raw(self.quantize_input(x))

    def _set_raw(self, x: np.ndarray) -> None:
        if x.shape[0] != self._batch:
            self._interp.resize_tensor_input(self._in_idx, list(x.shape), strict=False)
            self._interp.allocate_tensors()
            self._batch = x.shape[0]
        self._interp.set_tensor(self._in_idx, x)

    def invoke(self) -> np.ndarray:
        """Run on the input already set (what benchmark_model times) and return the raw output."""
        self._interp.invoke()
        return self._interp.get_tensor(self._out_idx)

    def run(self, x: np.ndarray) -> np.ndarray:
        """Run a float32 NHWC batch; returns float32 probabilities, one row per image."""
        return self.run_quantized(self.quantize_input(x))  # a no-op conversion for float models

    def run_quantized(self, q: np.ndarray) -> np.ndarray:
        """Run an input already in the model's input type (int8/uint8: see preprocess.quantize_table)."""
        try:
            self._set_raw(q)
            self._interp.invoke()
            return self.dequantize_output(self._interp.get_tensor(self._out_idx))
        except Exception as exc:
            raise RuntimeBackendError(f"LiteRT failed running {self.model_path}: {first_line(exc, 200, with_type=True)}") from exc

    def close(self) -> None:
        self._interp = None
