"""The parity gate: run each artifact through the device runtime code and compare with Keras."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from edgecnn.formats import Precision


@dataclass(frozen=True)
class GateThresholds:
    fp32_agreement: float = 0.999
    fp32_max_dp: float = 1e-4
    fp16_agreement: float = 0.995
    bf16_agreement: float = 0.995  # bfloat16 keeps 8 bits of mantissa: probabilities move by about 1e-2
    bf16_max_dp: float = 0.05
    max_drop_points: float = 1.0  # int8 and dynamic: accuracy drop in percentage points


@dataclass
class ParityResult:
    n: int
    data: str
    agreement: float
    max_abs_dp: float
    keras_accuracy: float | None
    artifact_accuracy: float | None
    per_class_delta: dict[str, float] = field(default_factory=dict)
    passed: bool = True
    reasons: list[str] = field(default_factory=list)
    p50_ms: float | None = None
    runtime: dict[str, Any] = field(default_factory=dict)

    @property
    def accuracy_drop_points(self) -> float | None:
        if self.keras_accuracy is None or self.artifact_accuracy is None:
            return None
        return (self.keras_accuracy - self.artifact_accuracy) * 100

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"accuracy_drop_points": self.accuracy_drop_points}


def _per_class(y: np.ndarray, ref: np.ndarray, got: np.ndarray, labels: list[str]) -> dict[str, float]:
    out = {}
    for c, name in enumerate(labels):
        mask = y == c
        if mask.any():
            out[name] = round(float((got[mask] == c).mean() - (ref[mask] == c).mean()) * 100, 2)
    return out


def check_parity(
    clf: Any,
    keras_probs: np.ndarray,
    eval_set: Any,
    precision: Precision,
    labels: list[str],
    thresholds: GateThresholds,
    *,
    timing_runs: int = 30,
) -> ParityResult:
    """Run the held-out inputs through ``clf``, the same Classifier the device uses, opened on the artifact, and
    measure agreement and accuracy against the Keras probabilities."""
    probs = clf.probabilities(eval_set.x)
    x1 = eval_set.x[:1]
    times = []
    for _ in range(timing_runs):
        t0 = time.perf_counter()
        clf.backend.run(x1)
        times.append((time.perf_counter() - t0) * 1e3)
    described = clf.describe()
    ref_top, got_top = keras_probs.argmax(1), probs.argmax(1)
    res = ParityResult(
        n=len(probs),
        data=eval_set.source,
        agreement=float((ref_top == got_top).mean()),
        max_abs_dp=float(np.abs(keras_probs - probs).max()),
        keras_accuracy=None if eval_set.y is None else float((ref_top == eval_set.y).mean()),
        artifact_accuracy=None if eval_set.y is None else float((got_top == eval_set.y).mean()),
        p50_ms=float(np.median(times[len(times) // 3 :])) if times else None,
        runtime={k: described[k] for k in ("runtime", "version", "providers")},
    )
    if eval_set.y is not None:
        res.per_class_delta = _per_class(eval_set.y, ref_top, got_top, labels)
    res.reasons += _reasons(res, precision, thresholds)
    res.passed = not res.reasons
    return res


def _reasons(res: ParityResult, precision: Precision, t: GateThresholds) -> list[str]:
    """Why ``res`` fails the gate for its precision (empty: it passes). fp32 and bf16 by agreement and max |dp|,
    fp16 by agreement, the integer precisions by the accuracy drop."""
    reasons: list[str] = []
    if precision == Precision.FP32:
        if res.agreement < t.fp32_agreement:
            reasons.append(f"top-1 agreement {res.agreement:.2%} < {t.fp32_agreement:.1%}")
        if res.max_abs_dp > t.fp32_max_dp:
            reasons.append(f"max|dp| {res.max_abs_dp:.2e} > {t.fp32_max_dp:.0e}")
    elif precision == Precision.FP16:
        if res.agreement < t.fp16_agreement:
            reasons.append(f"top-1 agreement {res.agreement:.2%} < {t.fp16_agreement:.1%}")
    elif precision == Precision.BF16:
        if res.agreement < t.bf16_agreement:
            reasons.append(f"top-1 agreement {res.agreement:.2%} < {t.bf16_agreement:.1%}")
        if res.max_abs_dp > t.bf16_max_dp:
            reasons.append(f"max|dp| {res.max_abs_dp:.2e} > {t.bf16_max_dp:.0e}")
    else:
        drop = res.accuracy_drop_points
        if drop is None:
            if res.agreement < 0.9:  # no labels: fall back on agreement with Keras
                reasons.append(f"top-1 agreement {res.agreement:.2%} < 90% (no labelled data for an accuracy check)")
        elif drop > t.max_drop_points:
            reasons.append(f"accuracy drop {drop:.2f} points > {t.max_drop_points} (--max-drop)")
    return reasons
