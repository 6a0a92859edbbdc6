"""The self-check that travels with an artifact: a few held-out images and the outputs the host's runtime gave.

Parity is measured on the build host. The device runs another build of the runtime on another CPU, with other
kernels: before it is trusted there, it classifies the stored images through the same path a camera frame takes
(``Classifier.classify``: the manifest's preprocessing, quantisation table or float path, the runtime) and must
give the same top-1 labels and probabilities within the precision's tolerance. This catches a runtime or a CPU
that computes wrong answers, not only a changed file (the file is covered by the manifest's hashes anyway).

The images are stored as the model-sized uint8 pixels the preprocessing starts from (a quarter of the size of
float inputs, and the device's own preprocessing arithmetic is checked too), at most about 64 KB of them.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.errors import ArtifactError, RuntimeBackendError
from edgecnn.manifest import SELF_CHECK_ROLE as ROLE
from edgecnn.preprocess import PreprocessSpec

FILE_NAME = "selfcheck.npz"
MAX_BYTES = 64 * 1024
MAX_SAMPLES = 8
# max |dp| allowed between the device's outputs and the host's, per precision. fp32 and fp16 as the parity gate;
# int8 and dynamic-range kernels requantise differently on other CPUs (XNNPACK's Arm and x86 paths round
# differently), which moves a probability by a few output quanta (1/256 each), never by more than this.
TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2, "bf16": 2e-2, "dynamic": 0.05, "int8": 0.05}


def tolerance(precision: str) -> float:
    return TOLERANCE.get(precision, 0.05)


def pixels_from_inputs(x: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """The uint8 pixels that ``preprocess`` maps to the float inputs ``x`` (NHWC), by inverting its arithmetic."""
    per = lambda v: np.asarray(v if len(v) == spec.channels else v * spec.channels, np.float64)  # noqa: E731
    p = (x.astype(np.float64) * per(spec.std) + per(spec.mean)) / spec.scale
    return np.clip(np.round(p), 0, 255).astype(np.uint8)


@dataclass
class SelfCheckResult:
    n: int
    agreement: int
    max_abs_dp: float
    tolerance: float
    seconds: float
    runtime: str
    version: str
    cpu: str

    @property
    def passed(self) -> bool:
        return self.agreement == self.n and self.max_abs_dp <= self.tolerance

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"passed": self.passed}

    def line(self) -> str:
        return (
            f"self-check {'passed' if self.passed else 'FAILED'}: top-1 {self.agreement}/{self.n}, max |dp| "
            f"{self.max_abs_dp:.1e} (tolerance {self.tolerance:.0e}) with {self.runtime} {self.version} on {self.cpu} "
            f"in {self.seconds * 1e3:.1f} ms"
        )


def _probabilities(classifier: Any, pixels: np.ndarray) -> np.ndarray:
    order = str(classifier.spec.color_order)
    return np.stack([classifier.classify(p, source_order=order).probabilities for p in pixels]).astype(np.float32)


def record(classifier: Any, candidates: np.ndarray, directory: Path) -> dict[str, Any]:
    """Host side: store the most confidently classified of ``candidates`` (uint8 model-sized pixels) with the
    outputs this runtime gives them; returns the manifest's ``self_check`` record. The file is ``FILE_NAME`` in
    ``directory``; the caller lists it in the manifest's files under ``ROLE``."""
    per_sample = int(np.prod(candidates.shape[1:]))
    k = max(1, min(MAX_SAMPLES, MAX_BYTES // max(1, per_sample), len(candidates)))
    probs = _probabilities(classifier, candidates)
    top2 = np.sort(probs, axis=1)[:, -2:] if probs.shape[1] > 1 else np.concatenate([np.zeros_like(probs), probs], 1)
    margin = top2[:, 1] - top2[:, 0]
    # images whose top-1 cannot flip within the tolerance, most confident first, kept in their held-out order
    chosen = np.sort(np.argsort(-margin, kind="stable")[:k])
    precision = classifier.manifest.precision
    np.savez_compressed(directory / FILE_NAME, pixels=candidates[chosen], probabilities=probs[chosen])
    return {
        "file": FILE_NAME,
        "n": int(len(chosen)),
        "tolerance": tolerance(precision),
        "min_top1_margin": round(float(margin[chosen].min()), 6),
        "recorded_with": {k: classifier.describe().get(k) for k in ("runtime", "version", "accelerator")},
    }


def _cpu() -> str:
    import platform

    from edgecnn.devices import host_facts

    facts = host_facts(query_gpu=False)
    return f"{facts.cpu_model} ({platform.machine()})"


def run(classifier: Any) -> SelfCheckResult:
    """Device side: replay the artifact's stored images through ``classifier`` and compare with the host's outputs."""
    m = classifier.manifest
    if not m.self_check or ROLE not in m.files:
        raise ArtifactError(f"artifact {m.directory} has no self-check samples", hint="convert it again with this edgecnn")
    try:
        with np.load(m.file_path(ROLE), allow_pickle=False) as data:
            pixels, expected = data["pixels"], data["probabilities"]
    except (OSError, KeyError, ValueError) as exc:
        raise ArtifactError(f"artifact {m.directory}: cannot read its self-check file: {exc}") from None
    if pixels.ndim != 4 or tuple(pixels.shape[1:]) != m.preprocess.input_shape or len(expected) != len(pixels):
        raise ArtifactError(f"artifact {m.directory}: the self-check file does not fit the model's input")
    t0 = time.perf_counter()
    got = _probabilities(classifier, pixels)
    seconds = time.perf_counter() - t0
    d = classifier.describe()
    return SelfCheckResult(
        n=len(pixels),
        agreement=int((got.argmax(1) == expected.argmax(1)).sum()),
        max_abs_dp=float(np.abs(got - expected).max()),
        tolerance=float(m.self_check.get("tolerance", tolerance(m.precision))),
        seconds=seconds,
        runtime=d["runtime"],
        version=d["version"],
        cpu=_cpu(),
    )


def require(classifier: Any, *, skip: bool = False) -> dict[str, Any]:
    """Run the self-check before the artifact is trusted here; raise when this runtime or CPU disagrees.

    Returns the record that goes into classify and profile reports (``{"skipped": True}`` with ``skip``)."""
    if skip:
        return {"skipped": True, "why": "--skip-self-check"}
    result = run(classifier)
    if not result.passed:
        raise RuntimeBackendError(
            f"the artifact's self-check failed here: {result.runtime} {result.version} on {result.cpu} gave top-1 "
            f"{result.agreement}/{result.n} and max |dp| {result.max_abs_dp:.2e} against the host's outputs (tolerance "
            f"{result.tolerance:.0e} for {classifier.manifest.precision}): this runtime or CPU computes other answers",
            hint="try another runtime (--runtime) or artifact; --skip-self-check runs anyway (noted in the output)",
        )
    return result.to_dict()
