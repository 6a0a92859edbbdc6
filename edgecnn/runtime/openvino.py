"""OpenVINO backend: CPU / GPU / NPU / AUTO with the latency hint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.errors import MissingDependencyError, RuntimeBackendError
from edgecnn.runtime.base import BackendBase, TensorSpec


def _meaningful(text: str) -> str:
    """OpenVINO's messages start with C++ source locations; keep the first line that says something."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    useful = [ln for ln in lines if not ln.startswith(("Exception from", "Check '", "[ GENERAL_ERROR ]"))]
    return (useful or lines or ["unknown error"])[0][:200]


class OpenVINOBackend(BackendBase):
    @classmethod
    def open(cls, path: Path, *, threads: int | None = None, accelerator: str = "CPU", allow_fallback: bool = False, **_: Any):
        try:
            import openvino as ov
        except ImportError:
            raise MissingDependencyError("openvino", "openvino", purpose="running OpenVINO IR models") from None
        core = ov.Core()
        devices = core.available_devices
        device = accelerator or "CPU"
        if device not in ("AUTO",) and device not in devices:
            if not allow_fallback:
                raise RuntimeBackendError(f"OpenVINO device {device} is not available here (available: {', '.join(devices)})")
            device = "CPU"
        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
        if threads and device == "CPU":
            config["INFERENCE_NUM_THREADS"] = int(threads)
        try:
            model = core.read_model(str(path))
            compiled = core.compile_model(model, device, config)
        except Exception as exc:  # openvino raises RuntimeError subclasses with long C++ traces
            raise RuntimeBackendError(f"OpenVINO cannot load {path}: {_meaningful(str(exc))}") from None
        if len(compiled.inputs) != 1 or len(compiled.outputs) != 1:
            raise RuntimeBackendError(f"{path}: expected one input and one output")
        self = cls(
            name="openvino",
            model_path=path,
            threads=threads,
            accelerator=device,
            version=ov.get_version(),
            providers=[", ".join(compiled.get_property("EXECUTION_DEVICES"))] if device != "CPU" else ["CPU"],
        )
        self._compiled = compiled
        self._request = compiled.create_infer_request()
        inp, out = compiled.inputs[0], compiled.outputs[0]
        pshape = lambda p: tuple(d.get_length() if d.is_static else -1 for d in p.get_partial_shape())  # noqa: E731
        self.input = TensorSpec(inp.get_any_name(), pshape(inp), inp.get_element_type().to_dtype().name)
        self.output = TensorSpec(out.get_any_name(), pshape(out), out.get_element_type().to_dtype().name)
        return self

    def set_input(self, x: np.ndarray) -> None:
        import openvino as ov

        self._request.set_input_tensor(ov.Tensor(np.ascontiguousarray(x, dtype=np.float32)))

    def invoke(self) -> np.ndarray:
        self._request.infer()
        return self._request.get_output_tensor().data

    def run(self, x: np.ndarray) -> np.ndarray:
        if x.dtype != np.float32:
            x = x.astype(np.float32)
        result = self._request.infer({0: x}, share_inputs=True)
        return np.asarray(result[0], dtype=np.float32)

    def close(self) -> None:
        self._request = None
        self._compiled = None
