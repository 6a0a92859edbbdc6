"""Device side: the OpenVINO backend, CPU / GPU / NPU / AUTO with the latency hint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.errors import RuntimeBackendError
from edgecnn.runtime.base import BackendBase, RuntimeInfo, TensorSpec


def _meaningful(text: str) -> str:
    """OpenVINO's messages start with C++ source locations; keep the first line that says something."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    useful = [ln for ln in lines if not ln.startswith(("Exception from", "Check '", "[ GENERAL_ERROR ]"))]
    return (useful or lines or ["unknown error"])[0][:200]


_ASKED = ["runtime_options", "INFERENCE_PRECISION_HINT"]  # where a bf16 or fp16 artifact's IR asks for its precision


def asked_precision(model: Any) -> str:
    """The inference precision the IR asks for (bf16, f16) when this CPU computes in it, else f32. OpenVINO itself
    would run f16 in bfloat16 on a CPU with BF16 but no FP16 (measured here: LeNet-5's fp16 artifact lost 0.4 points
    that way): an artifact is never run in a precision it was not made for."""
    asked = str(model.get_rt_info(_ASKED).astype(str)) if model.has_rt_info(_ASKED) else "f32"
    if asked == "f32":
        return asked
    from edgecnn.devices import cpu_features, host_facts

    needs = {"bf16": "bf16", "f16": "fp16 arithmetic"}.get(asked)
    has = cpu_features(host_facts(query_gpu=False).flags)
    return asked if needs and has[needs] else "f32"


def _config(device: str, threads: int | None, asked: str = "f32") -> dict[str, Any]:
    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
    if device == "CPU":
        # On a CPU with AVX-512 BF16 or AMX, OpenVINO runs every float operation in bfloat16 unless told otherwise:
        # an fp32 artifact then differs from Keras by up to 7e-3 in probability and fails its gate (README,
        # "Measured here"). The artifact's own precision is what was checked: never lower it silently. A bf16 or
        # fp16 artifact asks for its precision in its IR (convert.openvino.INFERENCE); a CPU without it uses f32.
        config["INFERENCE_PRECISION_HINT"] = asked
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
    return config


def _compile(core: Any, model: Any, device: str, config: dict[str, Any]) -> tuple[Any, Any, list[TensorSpec]]:
    """(its static-batch copy or None, compiled model, port specs) for one IR."""
    static = _static_batch(model, 1)
    compiled = core.compile_model(static or model, device, config)
    ports = [*compiled.inputs, *compiled.outputs]
    pshape = lambda p: tuple(d.get_length() if d.is_static else -1 for d in p.get_partial_shape())  # noqa: E731
    specs = [
        TensorSpec(p.get_any_name() if p.get_names() else f"port{i}", pshape(p), p.get_element_type().to_dtype().name)
        for i, p in enumerate(ports)
    ]
    return static, compiled, specs


# the compiled model's properties that pin threads, precision and streams (benchmark_app -nthreads, -infer_precision,
# -nstreams, -hint, -pin set the same ones)
_PINNING = (
    "PERFORMANCE_HINT",
    "NUM_STREAMS",
    "INFERENCE_NUM_THREADS",
    "INFERENCE_PRECISION_HINT",
    "ENABLE_CPU_PINNING",
    "ENABLE_HYPER_THREADING",
    "SCHEDULING_CORE_TYPE",
)


class OpenVINOBackend(BackendBase):
    """An OpenVINO IR compiled for a device (CPU by default) with the latency hint and a static batch of 1."""

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        info: RuntimeInfo,
        threads: int | None = None,
        accelerator: str = "CPU",
        allow_fallback: bool = False,
        **_: Any,
    ):
        try:
            import openvino as ov
        except ImportError:
            raise info.missing("running OpenVINO IR models") from None
        core = ov.Core()
        device = accelerator or "CPU"
        if device != "AUTO" and device not in core.available_devices:
            if not allow_fallback:
                raise RuntimeBackendError(
                    f"OpenVINO device {device} is not available here (available: {', '.join(core.available_devices)})"
                )
            device = "CPU"
        try:
            model = core.read_model(str(path))
            config = _config(device, threads, asked_precision(model))
            static, compiled, specs = _compile(core, model, device, config)
            executing = compiled.get_property("EXECUTION_DEVICES") if device != "CPU" else ["CPU"]
            inference_precision = compiled.get_property("INFERENCE_PRECISION_HINT").to_string()
            request = compiled.create_infer_request()
        except Exception as exc:  # openvino raises RuntimeError subclasses with long C++ traces
            raise RuntimeBackendError(f"OpenVINO cannot load {path}: {_meaningful(str(exc))}") from exc
        if len(compiled.inputs) != 1 or len(compiled.outputs) != 1:
            raise RuntimeBackendError(
                f"{path}: expected one input and one output; found {len(compiled.inputs)} and {len(compiled.outputs)}"
            )
        self = cls(
            name=info.name,
            model_path=path,
            threads=threads,
            accelerator=device,
            version=ov.get_version(),
            providers=[", ".join(executing)],
        )
        self.inference_precision = inference_precision
        self._core, self._model, self._device, self._config = core, model, device, config
        self._requests = {1: request} if static is not None else {}
        self._compiled, self._request = compiled, request
        self._batch = 1 if static is not None else None
        self.input, self.output = specs
        return self

    def describe(self) -> dict[str, Any]:
        return super().describe() | {"inference_precision": self.inference_precision}

    def pinning(self) -> dict[str, Any]:
        """Read back from the compiled model (what benchmark_app prints as its compiled model's properties)."""
        how: dict[str, Any] = {}
        for key in _PINNING:
            try:
                value = self._compiled.get_property(key)
            except Exception:  # noqa: BLE001 - a device without the property (GPU, NPU) simply does not report it
                continue
            how[key] = value.to_string() if hasattr(value, "to_string") else str(value).rsplit(".", 1)[-1]
        threads = int(how["INFERENCE_NUM_THREADS"]) if how.get("INFERENCE_NUM_THREADS", "0").isdigit() else None
        streams = int(how["NUM_STREAMS"]) if how.get("NUM_STREAMS", "").isdigit() else None
        how["api"] = "one InferRequest, start_async + wait"
        return {"threads": threads or None, "precision": self.inference_precision, "streams": streams, "how": how}

    def _use_batch(self, batch: int) -> None:
        """A batch the compiled model was not made for: compile (once) a model reshaped to it."""
        if self._batch is None or batch == self._batch:
            return
        if batch not in self._requests:
            reshaped = _static_batch(self._model, batch)
            compiled = self._core.compile_model(reshaped, self._device, self._config)
            self._requests[batch] = compiled.create_infer_request()
        self._request, self._batch = self._requests[batch], batch

    def set_input(self, x: np.ndarray) -> None:
        import openvino as ov

        self._use_batch(x.shape[0])
        self._request.set_input_tensor(ov.Tensor(np.ascontiguousarray(x, dtype=np.float32)))

    def invoke(self) -> np.ndarray:
        # start_async + wait, not infer(): with ENABLE_CPU_PINNING (the CPU plugin's default), a synchronous infer()
        # runs on the calling thread beside the pinned stream threads, and on a loaded machine its median was 3x the
        # same request's asynchronous one and erratic (README, "Measured here"); benchmark_app times this path
        self._request.start_async()
        self._request.wait()
        return self._request.get_output_tensor().data

    def runtime_latency_ms(self) -> float | None:
        return float(self._request.latency)  # InferRequest.latency: what benchmark_app reports, in ms

    def run(self, x: np.ndarray) -> np.ndarray:
        if x.dtype != np.float32:
            x = x.astype(np.float32)
        try:
            self._use_batch(x.shape[0])
            self._request.start_async({0: x}, share_inputs=True)  # as invoke(), and why
            self._request.wait()
            return np.array(self._request.get_output_tensor().data, dtype=np.float32)  # a copy: the next run reuses it
        except Exception as exc:
            raise RuntimeBackendError(f"OpenVINO failed running {self.model_path}: {_meaningful(str(exc))}") from exc

    def close(self) -> None:
        self._request = None
        self._requests = {}
        self._compiled = self._model = None


def _static_batch(model: Any, batch: int) -> Any:
    """``model`` with its dynamic batch dimension fixed to ``batch``, or None when that cannot apply.

    OpenVINO's CPU plugin runs a static shape faster than a dynamic one (README, "Measured here"); our IRs keep the batch
    dynamic so that one file serves every batch size, and the runtime picks the static shape it is asked for.
    """
    if len(model.inputs) != 1:
        return None
    pshape = model.input().get_partial_shape()
    if pshape.rank.is_dynamic or not all(d.is_static for d in list(pshape)[1:]):
        return None
    if pshape[0].is_static:
        return None  # already static: nothing to choose
    reshaped = model.clone()
    reshaped.reshape([batch, *[d.get_length() for d in list(pshape)[1:]]])
    return reshaped
