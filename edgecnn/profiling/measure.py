"""Measure latency the way the reference tools do (``invoke``) and the way a camera does (``fresh-input``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.devices import DeviceProfile
from edgecnn.errors import ConfigError, EdgeCNNError, RuntimeBackendError
from edgecnn.formats import runtime_for
from edgecnn.manifest import Manifest, sha256_file
from edgecnn.profiling import system
from edgecnn.profiling.stats import summarize
from edgecnn.runtime.base import open_backend

SCHEMA = "edgecnn.profile"
SCHEMA_VERSION = 1
# what each latency times, written into every profile
TIMING = {
    "invoke": "the input written once before the loop and unchanged, as litert-benchmark and benchmark_app run: "
    "each run times the runtime's call and the fetch of its output",
    "fresh_input": "a new input written before each run, as a camera gives: writing (and quantising) it is timed too",
    "warmup": "the first inference and --warmup runs before either loop, untimed",
}


@dataclass(frozen=True)
class ProfileOptions:
    runs: int = 200
    min_seconds: float = 10.0
    warmup: int = 20
    threads: int | None = None
    batch: int = 1
    input_shape: tuple[int, ...] | None = None
    stage_runs: int = 50

    def __post_init__(self) -> None:
        if self.runs < 1:
            raise ConfigError(f"--runs must be at least 1; received {self.runs}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"--threads must be at least 1; received {self.threads}")
        if self.warmup < 0 or self.min_seconds < 0 or self.batch < 1:
            raise ConfigError("--warmup and --min-seconds must be >= 0 and --batch >= 1")


@dataclass
class Target:
    backend: Any
    manifest: Manifest | None
    model_file: Path
    load_ms: float
    skipped: list[dict[str, str]]
    self_check: dict[str, Any] | None = None


def open_target(
    path: str | Path,
    profile: DeviceProfile | None,
    *,
    runtime: str | None,
    threads: int | None,
    trust_key: Path | None = None,
    self_check: bool = True,
) -> Target:
    """Open a bare model file, or the artifact the profile's chain picks (signature and self-check first)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"model or artifact not found: {path}")
    t0 = time.perf_counter()
    if path.is_file():
        from edgecnn.formats import sniff_model_file

        sniff_model_file(path)
        name = runtime or runtime_for(path)
        backend = open_backend(name, path, threads=threads)
        return Target(backend, None, path, (time.perf_counter() - t0) * 1e3, [])
    from edgecnn.runtime import Classifier, selfcheck
    from edgecnn.runtime.select import select_runtime

    sel = select_runtime(path, profile, runtime=runtime, threads=threads, trust_key=trust_key)
    load_ms = (time.perf_counter() - t0) * 1e3
    try:
        checked = selfcheck.require(Classifier.from_selection(sel), skip=not self_check)
    except BaseException:
        sel.backend.close()
        raise
    return Target(sel.backend, sel.manifest, sel.manifest.file_path("model"), load_ms, sel.skipped, checked)


def _inputs(backend: Any, manifest: Manifest | None, opts: ProfileOptions, k: int = 8) -> list[np.ndarray]:
    shape = list(opts.input_shape) if opts.input_shape else list(backend.input.shape)
    if not opts.input_shape:
        shape[0] = opts.batch
    if any(d < 1 for d in shape):
        raise ConfigError(
            f"the model input has dynamic dimensions {backend.input.shape}", hint="pass --input-shape, e.g. 1,224,224,3"
        )
    lo, hi = manifest.preprocess.value_range() if manifest else (0.0, 1.0)
    rng = np.random.default_rng(0)
    return [rng.uniform(lo, hi, size=shape).astype(np.float32) for _ in range(k)]


def timed_loop(
    step: Callable[[int], Any],
    opts: ProfileOptions,
    tick: Callable[[float], None] | None,
    after: Callable[[], None] | None = None,
) -> list[float]:
    """Run ``step`` for at least ``opts.runs`` runs and ``opts.min_seconds``; ``after`` runs outside the clock.
    ``tick(fraction)`` says how much of the loop is done (both conditions count)."""
    times: list[float] = []
    start = time.perf_counter()
    i = 0
    while i < opts.runs or (time.perf_counter() - start) < opts.min_seconds:
        t0 = time.perf_counter()
        step(i)
        times.append((time.perf_counter() - t0) * 1e3)
        if after:
            after()
        i += 1
        if tick:
            by_time = (time.perf_counter() - start) / opts.min_seconds if opts.min_seconds else 1.0
            tick(min(1.0, i / opts.runs, by_time))
    return times


def measure(target: Target, opts: ProfileOptions, *, tick: Callable[[float], None] | None = None) -> dict[str, Any]:
    """Both latencies, first inference, warm-up, memory; the per-stage split when a manifest is present."""
    b = target.backend
    xs = _inputs(b, target.manifest, opts)
    rss0 = system.rss_mb()
    t0 = time.perf_counter()
    b.set_input(xs[0])
    b.invoke()
    first_ms = (time.perf_counter() - t0) * 1e3
    for i in range(opts.warmup):
        b.set_input(xs[i % len(xs)])
        b.invoke()
    rss_warm = system.rss_mb()
    b.set_input(xs[0])
    internal: list[float] = []

    record = (lambda: internal.append(b.runtime_latency_ms())) if b.runtime_latency_ms() is not None else None
    halves = [(lambda f: tick(f / 2)), (lambda f: tick(0.5 + f / 2))] if tick else [None, None]  # the two modes
    invoke = timed_loop(lambda i: b.invoke(), opts, halves[0], after=record)

    def fresh(i: int) -> None:
        b.set_input(xs[i % len(xs)])
        b.invoke()

    fresh_ms = timed_loop(fresh, opts, halves[1])
    result = {
        "load_ms": target.load_ms,
        "first_inference_ms": first_ms,
        "warmup_runs": opts.warmup,
        "invoke": summarize(invoke),
        "fresh_input": summarize(fresh_ms),
        # OpenVINO times each inference itself (InferRequest.latency, the figure benchmark_app reports); `invoke` is
        # the wall time of the same runs as seen from Python, binding overhead included.
        "invoke_runtime_reported": summarize(internal) if internal else None,
        "memory": {
            "rss_start_mb": rss0,
            "rss_after_warmup_mb": rss_warm,
            "rss_end_mb": system.rss_mb(),
            "peak_rss_mb": system.peak_rss_mb(),
        },
        "raw_ms": {"invoke": invoke, "fresh_input": fresh_ms},
    }
    result["memory"]["growth_mb"] = result["memory"]["rss_end_mb"] - rss_warm
    if target.manifest is not None:
        result["stages"] = _stages(target, opts)
    return result


def _stages(target: Target, opts: ProfileOptions) -> dict[str, Any]:
    """preprocess (a 640x480 camera frame) -> inference -> postprocess (dequantise + top-k), as classify does."""
    from edgecnn.preprocess import preprocess

    m, b = target.manifest, target.backend
    frame = np.random.default_rng(1).integers(0, 256, size=(480, 640, 3), dtype=np.uint8)
    buf = np.empty((1, *m.preprocess.input_shape), np.float32)
    pre, inf, post = [], [], []
    for _ in range(max(5, opts.stage_runs)):
        t0 = time.perf_counter()
        buf[0] = preprocess(frame, m.preprocess, source_order="BGR")
        t1 = time.perf_counter()
        b.set_input(buf)
        raw = b.invoke()
        t2 = time.perf_counter()
        probs = b.dequantize_output(raw)[0]
        np.argsort(-probs)[:3]
        t3 = time.perf_counter()
        pre.append((t1 - t0) * 1e3)
        inf.append((t2 - t1) * 1e3)
        post.append((t3 - t2) * 1e3)
    return {"preprocess": summarize(pre), "inference": summarize(inf), "postprocess": summarize(post)}


def profile(
    path: str | Path,
    *,
    profile: DeviceProfile | None,
    runtime: str | None = None,
    opts: ProfileOptions = ProfileOptions(),
    tick: Callable[[float], None] | None = None,
    trust_key: Path | None = None,
    self_check: bool = True,
) -> dict[str, Any]:
    """Open, measure and describe; returns the schema-versioned result (without raw samples removed).

    An artifact is opened only when its signature verifies (with ``trust_key``) and, unless ``self_check`` is
    False, when this runtime reproduces the host's outputs on its stored images."""
    threads = opts.threads or (profile.threads if profile else None)
    before = system.temperatures()
    target = open_target(path, profile, runtime=runtime, threads=threads, trust_key=trust_key, self_check=self_check)
    try:
        measured = measure(target, opts, tick=tick)
        described = target.backend.describe()
    except EdgeCNNError:
        raise
    except Exception as exc:  # noqa: BLE001 - a runtime that loads a model but cannot run it raises its own kinds
        raise RuntimeBackendError(
            f"{described_name(target)} failed while running {target.model_file}: {type(exc).__name__}: {str(exc)[:200]}"
        ) from exc
    finally:
        target.backend.close()
    m = target.manifest
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "model": {
            "path": str(target.model_file),
            "sha256": sha256_file(target.model_file),
            "format": m.format if m else target.model_file.suffix.lstrip("."),
            "precision": m.precision if m else "unknown",
            "artifact": str(m.directory) if m else None,
        },
        "device_profile": profile.name if profile else None,
        "runtime": described,
        "skipped_runtimes": target.skipped,
        "self_check": target.self_check,
        "threads": threads,
        # how the runtime itself is pinned, read back from it (issue #28): compare with a reference tool at these
        "pinning": described.get("pinning"),
        "timing": TIMING,
        "batch": opts.batch,
        "runs_requested": opts.runs,
        "min_seconds": opts.min_seconds,
        "system": system.cpu_context()
        | {"temperatures_before_c": before, "temperatures_after_c": system.temperatures(), "throttling": system.throttling()}
        | ({"gpus": system.gpu_context()} if described.get("accelerator") in ("CUDA", "TensorRT") else {}),
        **measured,
    }


def described_name(target: Target) -> str:
    return getattr(target.backend, "name", "runtime")
