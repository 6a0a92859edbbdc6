"""Videos whose frames change class at known frames: digits from the bundled set, the ones the model under test
classifies right and surely after the video's own JPEG compression, scaled up with square pixels."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

SIZE = 64  # the video's frame size (the digits are 32 px in the model; scaled by whole numbers)
# 30 fps: 3 from frame 1, a one-frame 7 at 31 (held), 3 again, 7 from frame 61 (the change), a two-frame 1 at 91 (held)
PLAN = [("3", 30), ("7", 1), ("3", 29), ("7", 30), ("1", 2), ("7", 28)]


def sure_digits(classify, labels: list[str], min_p: float = 0.9) -> dict[str, np.ndarray]:
    """One BGR frame per label that ``classify`` (BGR image -> Prediction) gets right with at least ``min_p`` after a
    JPEG round trip at the video's quality."""
    from edgecnn.host.data import load_dataset

    ds = load_dataset("bundled:digits")
    found: dict[str, tuple[float, np.ndarray]] = {}
    for img, y in zip(ds.images, ds.labels):
        label = labels[int(y)]
        frame = to_frame(img)
        ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 95])
        pred = classify(cv2.imdecode(buf, cv2.IMREAD_COLOR))
        if pred.label == label and pred.confidence >= min_p and pred.confidence > found.get(label, (0.0, None))[0]:
            found[label] = (pred.confidence, frame)
    return {k: v[1] for k, v in found.items()}


def to_frame(img: np.ndarray) -> np.ndarray:
    img = img if img.ndim == 3 else img[:, :, None]
    img = cv2.resize(img, (SIZE, SIZE), interpolation=cv2.INTER_NEAREST)
    return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) if img.ndim == 2 or img.shape[2] == 1 else img


def write_video(path: Path, frames: list[np.ndarray], fps: float = 30.0) -> Path:
    """An MJPG .avi of ``frames`` at ``fps`` (MJPG: every frame is a key frame; no codec blurs one into the next)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (SIZE, SIZE))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path}")
    for f in frames:
        writer.write(f)
    writer.release()
    return path


def schedule(digits: dict[str, np.ndarray], plan: list[tuple[str, int]]) -> list[np.ndarray]:
    """Frames from a plan of (label, how many frames)."""
    return [digits[label] for label, n in plan for _ in range(n)]
