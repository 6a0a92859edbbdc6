"""Write real video files from images (for demos and tests of the stream path)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edgecnn.errors import DataError


def write_video(
    images: list[np.ndarray],
    path: str | Path,
    *,
    fps: float = 10.0,
    size: tuple[int, int] = (96, 96),
    source_order: str = "RGB",
    codec: str = "MJPG",
) -> Path:
    """Encode images (uint8, gray or colour) as a video; MJPG/AVI keeps digits crisp and decodes everywhere."""
    path = Path(path)
    if not images:
        raise DataError("no images to write into a video")
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, size)
    if not writer.isOpened():
        raise DataError(f"OpenCV cannot write {path} with codec {codec}")
    try:
        for img in images:
            if img.ndim == 2 or img.shape[2] == 1:
                img = cv2.cvtColor(img.reshape(img.shape[:2]), cv2.COLOR_GRAY2BGR)
            elif source_order == "RGB":
                img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
            writer.write(cv2.resize(img, size, interpolation=cv2.INTER_NEAREST))
    finally:
        writer.release()
    return path
