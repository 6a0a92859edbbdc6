"""The annotated video of a small model reads (issue #31: the demo's was 64x64 with text larger than the frame)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgecnn.stream import overlay
from edgecnn.stream.sinks import open_sink

TOP = [("7", 0.981), ("1", 0.012), ("9", 0.004)]
TIMINGS = {"capture_age": 1.234, "preprocess": 0.051, "inference": 0.213, "postprocess": 0.012}


@pytest.mark.parametrize(("w", "h", "k"), [(64, 64, 8), (32, 32, 15), (96, 64, 8), (640, 480, 1), (1920, 1080, 1)])
def test_small_frames_are_scaled_up_and_the_text_box_fits_inside(w, h, k):
    frame = np.full((h, w, 3), 200, np.uint8)
    out = overlay.draw(frame, TOP, fps=123.4, timings=TIMINGS)
    assert out.shape == (h * k, w * k, 3) and min(out.shape[:2]) >= overlay.MIN_SIDE
    lay = overlay.layout(out.shape[1], out.shape[0], overlay.text_lines(TOP, 123.4, TIMINGS))
    x0, y0, x1, y1 = lay.box
    assert 0 <= x0 < x1 <= out.shape[1] and 0 <= y0 < y1 <= out.shape[0], (lay.box, out.shape)
    assert lay.font >= overlay.MIN_FONT and len(lay.lines) == 5 and not any(t.endswith("...") for t in lay.lines), lay
    # every line's drawn width fits in the box, and the box covers at most a third of the frame
    assert all(x0 + overlay.MARGIN + cv2.getTextSize(t, overlay.FONT, lay.font, lay.thickness)[0][0] <= x1 for t in lay.lines)
    assert (x1 - x0) * (y1 - y0) <= out.shape[0] * out.shape[1] / 3
    # outside the box the frame is untouched; inside it is darkened behind the text
    mask = np.ones(out.shape[:2], bool)
    mask[y0:y1, x0:x1] = False
    assert (out[mask] == 200).all() and out[y0:y1, x0:x1].mean() < 120


def test_a_frame_too_small_for_the_text_still_keeps_it_inside():
    lay = overlay.layout(80, 40, overlay.text_lines(TOP, 12.0, TIMINGS))
    x0, y0, x1, y1 = lay.box
    assert lay.font == overlay.MIN_FONT and 1 <= len(lay.lines) < 5 and x1 <= 80 and y1 <= 40, lay
    assert all(cv2.getTextSize(t, overlay.FONT, lay.font, lay.thickness)[0][0] <= 80 for t in lay.lines)


def test_the_video_of_a_64px_model_is_the_source_scaled_up_with_the_overlay_inside(tmp_path):
    """Write 64x64 frames through the video sink as classify does, decode the file and compare with the source."""
    rng = np.random.default_rng(0)
    frames = [
        cv2.resize(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8), (64, 64), interpolation=cv2.INTER_NEAREST) for _ in range(10)
    ]
    sink = open_sink(str(tmp_path / "annotated.avi"))
    try:
        for i, f in enumerate(frames):
            sink.write(f, {"frame": i + 1, "latency_ms": TIMINGS}, TOP, 30.0)
    finally:
        sink.close()
    cap = cv2.VideoCapture(str(tmp_path / "annotated.avi"))
    ok, got = cap.read()
    assert ok and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 10
    cap.release()
    assert got.shape == (512, 512, 3), got.shape  # 64 x 8: square pixels, at least MIN_SIDE
    lay = overlay.layout(512, 512, overlay.text_lines(TOP, 30.0, TIMINGS))
    x0, y0, x1, y1 = lay.box
    assert x1 <= 512 and y1 <= 512 and (x1 - x0) * (y1 - y0) < 512 * 512 / 3
    want = cv2.resize(frames[0], (512, 512), interpolation=cv2.INTER_NEAREST).astype(int)
    outside = np.ones((512, 512), bool)
    outside[y0:y1, x0:x1] = False
    assert np.abs(got.astype(int) - want)[outside].mean() < 6  # MJPG's loss only
    assert got[y0:y1, x0:x1].mean() < 0.6 * want[y0:y1, x0:x1].mean()  # the box: darkened, text on it
