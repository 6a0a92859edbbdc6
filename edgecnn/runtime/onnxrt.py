"""ONNX Runtime backend: providers from the profile; the providers actually in use are checked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.errors import MissingDependencyError, RuntimeBackendError
from edgecnn.runtime.base import BackendBase, TensorSpec
from edgecnn.runtime.base import first_line as _first_line

_PROVIDERS = {"CPU": "CPUExecutionProvider", "CUDA": "CUDAExecutionProvider", "TensorRT": "TensorrtExecutionProvider"}
_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(uint8)": "uint8", "tensor(int8)": "int8"}


class ONNXRuntimeBackend(BackendBase):
    @classmethod
    def open(
        cls,
        path: Path,
        *,
        threads: int | None = None,
        accelerator: str = "CPU",
        allow_fallback: bool = False,
        trt_cache_dir: str | None = None,
        **_: Any,
    ):
        try:
            import onnxruntime as ort
        except ImportError:
            raise MissingDependencyError("onnxruntime", "onnx", purpose="running .onnx models") from None
        wanted = _PROVIDERS[accelerator]
        available = ort.get_available_providers()
        if wanted not in available and not allow_fallback:
            raise RuntimeBackendError(
                f"onnxruntime has no {wanted} here (available: {', '.join(available)})",
                hint='install "edgecnn[gpu]" (onnxruntime-gpu) with a working CUDA, or allow fallback to the CPU',
            )
        providers: list[Any] = []
        if accelerator == "TensorRT":
            opts = {
                "trt_engine_cache_enable": True,
                "trt_engine_cache_path": trt_cache_dir or str(Path.home() / ".cache/edgecnn/trt"),
            }
            providers.append((wanted, opts))
            providers.append("CUDAExecutionProvider")
        elif accelerator == "CUDA":
            providers.append(wanted)
        providers.append("CPUExecutionProvider")
        so = ort.SessionOptions()
        if threads:
            so.intra_op_num_threads = threads
        so.log_severity_level = 3
        try:
            sess = ort.InferenceSession(str(path), sess_options=so, providers=providers)
            in_use = sess.get_providers()
            i, o = sess.get_inputs(), sess.get_outputs()
            shape = lambda s: tuple(d if isinstance(d, int) else -1 for d in s)  # noqa: E731
            specs = [TensorSpec(t.name, shape(t.shape), _DTYPES.get(t.type, t.type)) for t in (*i, *o)]
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf/RuntimeException types
            raise RuntimeBackendError(f"onnxruntime cannot load {path}: {_first_line(exc)}") from None
        if wanted not in in_use and not allow_fallback:
            raise RuntimeBackendError(f"onnxruntime did not enable {wanted} for {path.name} (in use: {', '.join(in_use)})")
        if len(i) != 1 or len(o) != 1:
            raise RuntimeBackendError(f"{path}: expected one input and one output; found {len(i)} and {len(o)}")
        self = cls(
            name="onnxruntime",
            model_path=path,
            threads=threads,
            accelerator=accelerator if wanted in in_use else "CPU",
            version=ort.__version__,
            providers=in_use,
        )
        self._sess = sess
        self._in_name, self._out_name = i[0].name, o[0].name
        self.input, self.output = specs
        self._np_dtype = np.float16 if self.input.dtype == "float16" else np.float32
        return self

    def set_input(self, x: np.ndarray) -> None:
        self._feed = {self._in_name: np.ascontiguousarray(x, dtype=self._np_dtype)}

    def invoke(self) -> np.ndarray:
        return self._sess.run([self._out_name], self._feed)[0]

    def run(self, x: np.ndarray) -> np.ndarray:
        if x.dtype != self._np_dtype:
            x = x.astype(self._np_dtype)
        try:
            return self._sess.run([self._out_name], {self._in_name: x})[0].astype(np.float32, copy=False)
        except Exception as exc:
            raise RuntimeBackendError(f"onnxruntime failed running {self.model_path}: {_first_line(exc)}") from None

    def close(self) -> None:
        self._sess = None
