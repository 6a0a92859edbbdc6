"""Device side: the ONNX Runtime backend; the providers actually in use are checked against those asked for."""

from __future__ import annotations

import contextlib
import io
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.errors import RuntimeBackendError, first_line
from edgecnn.runtime.base import BackendBase, RuntimeInfo, TensorSpec

_PROVIDERS = {"CPU": "CPUExecutionProvider", "CUDA": "CUDAExecutionProvider", "TensorRT": "TensorrtExecutionProvider"}
_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(uint8)": "uint8", "tensor(int8)": "int8"}


def _providers(accelerator: str, trt_cache_dir: str | None) -> list[Any]:
    """The provider list for an accelerator, CPU last (what the session falls back to for unsupported operators)."""
    wanted = _PROVIDERS[accelerator]
    providers: list[Any] = []
    if accelerator == "TensorRT":
        cache = trt_cache_dir or str(Path.home() / ".cache/edgecnn/trt")
        providers += [(wanted, {"trt_engine_cache_enable": True, "trt_engine_cache_path": cache}), _PROVIDERS["CUDA"]]
    elif accelerator == "CUDA":
        providers.append(wanted)
    return [*providers, _PROVIDERS["CPU"]]


class ONNXRuntimeBackend(BackendBase):
    """An ONNX model in an InferenceSession on the CPU, CUDA or TensorRT."""

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        info: RuntimeInfo,
        threads: int | None = None,
        accelerator: str = "CPU",
        allow_fallback: bool = False,
        trt_cache_dir: str | None = None,
        **_: Any,
    ):
        try:
            import onnxruntime as ort
        except ImportError:
            raise info.missing("running .onnx models") from None
        wanted, available = _PROVIDERS[accelerator], ort.get_available_providers()
        notes = _load_cuda_libraries(ort) if accelerator != "CPU" and wanted in available else []
        if wanted not in available and not allow_fallback:
            raise RuntimeBackendError(
                f"onnxruntime has no {wanted} here (available: {', '.join(available)})",
                hint='install "edgecnn[gpu]" (onnxruntime-gpu) with a working CUDA, or allow fallback to the CPU',
            )
        sess, i, o, specs = _session(ort, path, threads, _providers(accelerator, trt_cache_dir))
        in_use = sess.get_providers()
        if wanted not in in_use and not allow_fallback:
            raise RuntimeBackendError(
                f"onnxruntime did not enable {wanted} for {path.name} (in use: {', '.join(in_use)}): "
                + _why_no_cuda(ort, notes),
                hint="nvidia-smi must list the GPU; pip's onnxruntime-gpu needs its CUDA and cuDNN "
                '("onnxruntime-gpu[cuda,cudnn]") or the same CUDA major version installed system-wide',
            )
        if len(i) != 1 or len(o) != 1:
            raise RuntimeBackendError(f"{path}: expected one input and one output; found {len(i)} and {len(o)}")
        self = cls(
            name=info.name,
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

    def pinning(self) -> dict[str, Any]:
        # read back from the session: what it runs with, not what was asked
        if self._sess is None:
            raise RuntimeBackendError(f"{self.model_path.name}: the onnxruntime session is closed")
        so = self._sess.get_session_options()
        threads = so.intra_op_num_threads or None  # 0: onnxruntime's default, one per physical core
        how = {
            "intra_op_num_threads": so.intra_op_num_threads,
            "inter_op_num_threads": so.inter_op_num_threads,
            "execution_mode": str(so.execution_mode).rsplit(".", 1)[-1],
            "graph_optimization_level": str(so.graph_optimization_level).rsplit(".", 1)[-1],
            "providers": list(self.providers),
        }
        precision = "the model's types"  # the CPU execution provider has no precision hint
        cuda = self._sess.get_provider_options().get(_PROVIDERS["CUDA"]) if self.accelerator != "CPU" else None
        if cuda:
            how["cuda"] = {k: cuda[k] for k in ("device_id", "use_tf32", "cudnn_conv_algo_search") if k in cuda}
            if cuda.get("use_tf32") == "1":  # fp32 convolutions and matmuls may round their inputs to TF32 (Ampere on)
                precision = "the model's types; fp32 convolutions and matmuls in TF32 (CUDA use_tf32=1)"
        return {"threads": threads, "precision": precision, "streams": 1, "how": how}

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
            raise RuntimeBackendError(
                f"onnxruntime failed running {self.model_path}: {first_line(exc, 200, with_type=True)}"
            ) from exc

    def close(self) -> None:
        self._sess = None


def _session(ort: Any, path: Path, threads: int | None, providers: list) -> tuple[Any, list, list, list[TensorSpec]]:
    """The InferenceSession, its inputs and outputs, and their specs; one RuntimeBackendError when it cannot load."""
    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    so.log_severity_level = 3
    try:
        sess = ort.InferenceSession(str(path), sess_options=so, providers=providers)
        i, o = sess.get_inputs(), sess.get_outputs()
        specs = [TensorSpec(t.name, tuple(d if isinstance(d, int) else -1 for d in t.shape), _DTYPES.get(t.type, t.type))
                 for t in (*i, *o)]
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf/RuntimeException types
        raise RuntimeBackendError(f"onnxruntime cannot load {path}: {first_line(exc, 200, with_type=True)}") from exc
    return sess, i, o, specs


_PRELOADED: list[str] | None = None


def _load_cuda_libraries(ort: Any) -> list[str]:
    """Let pip's onnxruntime-gpu find CUDA and cuDNN from the nvidia-* wheels: ``preload_dlls()`` (onnxruntime 1.21+)
    loads them, else only a system CUDA or an earlier ``import torch`` makes them found. Once per process; what it
    prints (a library that failed to load) is kept for the error, not printed over a command's output."""
    global _PRELOADED
    if _PRELOADED is None:
        out, preload = io.StringIO(), getattr(ort, "preload_dlls", None)
        if preload is not None:
            with contextlib.redirect_stdout(out):
                try:
                    preload()
                except (RuntimeError, OSError) as exc:  # a folder or library that is not there: said in the error
                    print(first_line(exc, 200, with_type=True))
        plain = re.sub(r"\x1b\[[0-9;]*m", "", out.getvalue())  # its warnings come in terminal colours
        _PRELOADED = [ln.strip() for ln in plain.splitlines() if ln.strip()]
    return _PRELOADED


def _why_no_cuda(ort: Any, notes: list[str]) -> str:
    """One reason why the CUDA provider did not come up: a hidden GPU, its library not loading (the missing CUDA
    or cuDNN library named by the loader), what preload_dlls said, or no GPU that CUDA can use."""
    import ctypes

    if os.environ.get("CUDA_VISIBLE_DEVICES", "unset").strip() in ("", "-1"):
        return f"CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']!r} hides every GPU from CUDA"
    lib = Path(ort.__file__).parent / "capi" / "libonnxruntime_providers_cuda.so"
    if lib.is_file():
        try:
            ctypes.CDLL(str(lib))
        except OSError as exc:
            return f"its CUDA provider does not load: {first_line(exc, 200)}"
    failed = [n for n in notes if n.startswith("Failed to load")]
    if failed:
        return f"{failed[0]} ({len(failed)} CUDA/cuDNN libraries not loaded)"
    return "the CUDA libraries load, so CUDA found no GPU it can use (driver, or a GPU too old for this build)"
