"""Draw the top labels, FPS and per-stage latency onto a frame (a copy), sized to the frame so that it stays readable.

A small model's frames are small (the demo's digits are 64x64): text drawn at any legible size would be larger than
the frame itself (issue #31). So a frame narrower than ``MIN_SIDE`` px is first scaled up by a whole factor, pixels
kept square and sharp (nearest neighbour), and the text is then laid out for the frame it is drawn on: the font
shrinks until the widest line fits, never below ``MIN_FONT`` (below that, lines are cut to fit instead), on a dark
box behind the text that never leaves the frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

MIN_SIDE = 480  # px: the short side of a frame the overlay is drawn on (smaller frames are scaled up by a whole factor)
MIN_FONT = 0.45  # cv2 Hershey simplex scale: about 10 px tall capitals, the smallest that reads on a video
MAX_FONT = 1.2
FONT = cv2.FONT_HERSHEY_SIMPLEX
MARGIN = 6  # px between the box and the text, and between the box and the frame's edge


@dataclass(frozen=True)
class Layout:
    """Where the overlay goes on a frame of a given size: the font scale, the lines (cut to fit) and their
    baselines, and the text box ``(x0, y0, x1, y1)`` (pixels, end exclusive), always inside the frame."""

    font: float
    thickness: int
    lines: tuple[str, ...]
    baselines: tuple[int, ...]
    box: tuple[int, int, int, int]


def upscale_factor(width: int, height: int) -> int:
    """The whole factor that brings the short side to at least MIN_SIDE px (1 for frames already that large)."""
    short = max(1, min(width, height))
    return max(1, -(-MIN_SIDE // short))


def upscaled(frame: np.ndarray) -> np.ndarray:
    """``frame`` scaled up by ``upscale_factor`` with square, sharp pixels (the frame itself when large enough)."""
    k = upscale_factor(frame.shape[1], frame.shape[0])
    if k == 1:
        return frame
    return cv2.resize(frame, (frame.shape[1] * k, frame.shape[0] * k), interpolation=cv2.INTER_NEAREST)


def text_lines(top: list[tuple[str, float]], fps: float, timings: dict[str, float]) -> list[str]:
    """The overlay's lines: one per label, the frame rate, then the stage timings (a line of their own: on a
    narrow frame they are the first thing cut)."""
    lines = [f"{label}: {p:.1%}" for label, p in top]
    lines.append(f"{fps:.1f} FPS")
    if timings:
        names = {"capture_age": "age", "preprocess": "pre", "inference": "infer", "postprocess": "post"}
        lines.append("  ".join(f"{names.get(k, k[:5])} {v:.1f}ms" for k, v in timings.items()))
    return lines


def layout(width: int, height: int, lines: list[str]) -> Layout:
    """Fit ``lines`` to a ``width`` x ``height`` frame: the largest font up to MAX_FONT whose widest line fits,
    at least MIN_FONT; lines still too wide are cut (with '...'), lines that do not fit below are left out."""
    room = max(1, width - 4 * MARGIN)
    widest = max((cv2.getTextSize(t, FONT, 1.0, 1)[0][0] for t in lines), default=1)
    font = min(MAX_FONT, max(MIN_FONT, room / max(widest, 1)), max(MIN_FONT, width / 640 * 0.8))
    thickness = 2 if font >= 0.9 else 1
    (_, h), base = cv2.getTextSize("Ag", FONT, font, thickness)
    step = h + base + 4
    fitted: list[str] = []
    for text in lines:
        if 2 * MARGIN + (len(fitted) + 1) * step > height:
            break
        fitted.append(_cut(text, font, thickness, room))
    if not fitted:
        return Layout(font, thickness, (), (), (0, 0, 0, 0))
    text_w = max(cv2.getTextSize(t, FONT, font, thickness)[0][0] for t in fitted)
    baselines = tuple(MARGIN + MARGIN // 2 + h + i * step for i in range(len(fitted)))
    box = (MARGIN, MARGIN, min(width, 3 * MARGIN + text_w), min(height, 2 * MARGIN + len(fitted) * step))
    return Layout(font, thickness, tuple(fitted), baselines, box)


def _cut(text: str, font: float, thickness: int, room: int) -> str:
    if cv2.getTextSize(text, FONT, font, thickness)[0][0] <= room:
        return text
    while len(text) > 1 and cv2.getTextSize(text + "...", FONT, font, thickness)[0][0] > room:
        text = text[:-1]
    return text.rstrip() + "..."


def draw(frame: np.ndarray, top: list[tuple[str, float]], *, fps: float, timings: dict[str, float]) -> np.ndarray:
    """A copy of ``frame`` (scaled up when small, see the module) with the overlay on a dark box in its top left."""
    out = upscaled(frame).copy()
    lay = layout(out.shape[1], out.shape[0], text_lines(top, fps, timings))
    if not lay.lines:
        return out
    x0, y0, x1, y1 = lay.box
    region = out[y0:y1, x0:x1]
    region[:] = (region.astype(np.float32) * 0.35).astype(out.dtype)  # darken behind the text: it reads on any picture
    for i, (text, y) in enumerate(zip(lay.lines, lay.baselines)):
        color = (0, 255, 0) if i == 0 and top else (255, 255, 255)
        cv2.putText(out, text, (x0 + MARGIN, y), FONT, lay.font, color, lay.thickness, cv2.LINE_AA)
    return out
