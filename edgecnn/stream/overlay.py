"""Draw top-k labels, FPS and per-stage latency onto a frame (a copy)."""

from __future__ import annotations

import cv2
import numpy as np


def draw(frame: np.ndarray, top: list[tuple[str, float]], *, fps: float, timings: dict[str, float]) -> np.ndarray:
    out = frame.copy()
    scale = max(0.4, min(out.shape[1] / 640, 1.5))
    lines = [f"{label}: {p:.1%}" for label, p in top]
    lines.append(f"{fps:.1f} FPS  " + "  ".join(f"{k[:4]} {v:.1f}ms" for k, v in timings.items()))
    y = int(22 * scale)
    for i, text in enumerate(lines):
        color = (0, 255, 0) if i == 0 else (255, 255, 255)
        cv2.putText(out, text, (6, y), cv2.FONT_HERSHEY_SIMPLEX, 0.5 * scale, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(out, text, (6, y), cv2.FONT_HERSHEY_SIMPLEX, 0.5 * scale, color, 1, cv2.LINE_AA)
        y += int(20 * scale)
    return out
