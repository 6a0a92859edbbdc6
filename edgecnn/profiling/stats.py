"""Latency statistics."""

from __future__ import annotations

import numpy as np


def summarize(ms: list[float] | np.ndarray) -> dict[str, float]:
    a = np.asarray(ms, dtype=np.float64)
    if a.size == 0:
        return {}
    p50 = float(np.percentile(a, 50))
    return {
        "n": int(a.size),
        "p50": p50,
        "p90": float(np.percentile(a, 90)),
        "p99": float(np.percentile(a, 99)),
        "mean": float(a.mean()),
        "std": float(a.std()),
        "min": float(a.min()),
        "max": float(a.max()),
        "fps": 1000.0 / p50 if p50 > 0 else 0.0,
    }
