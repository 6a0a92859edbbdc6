"""Frame hygiene: every frame handed on is uint8 BGR HxWx3, or it is refused with a reason."""

from __future__ import annotations

import cv2
import numpy as np

from edgecnn.errors import StreamError


def normalise_frame(frame: np.ndarray, *, order: str = "BGR") -> np.ndarray:
    """Convert grayscale, BGRA and 16-bit frames to uint8 BGR; refuse anything else clearly."""
    if not isinstance(frame, np.ndarray) or frame.size == 0:
        raise StreamError("empty frame")
    if frame.dtype == np.uint16:
        frame = ((frame.astype(np.uint32) + 128) // 257).astype(np.uint8)
    elif frame.dtype != np.uint8:
        raise StreamError(f"unsupported frame dtype {frame.dtype} (expected uint8 or uint16)")
    if frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] == 1):
        return cv2.cvtColor(frame.reshape(frame.shape[:2]), cv2.COLOR_GRAY2BGR)
    if frame.ndim != 3 or frame.shape[2] not in (3, 4):
        raise StreamError(f"unsupported frame shape {frame.shape} (expected HxW, HxWx3 or HxWx4)")
    if frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR if order == "BGR" else cv2.COLOR_RGBA2BGR)
    return frame if order == "BGR" else np.ascontiguousarray(frame[:, :, ::-1])
