"""Classify a stream with an artifact: open it with the device's runtime chain, run its self-check, classify the
source's frames into the sinks (``edgecnn.classify_stream`` and ``edgecnn classify`` both call ``classify_artifact``)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edgecnn.runtime import Classifier, selfcheck
from edgecnn.stream.loop import classify_stream
from edgecnn.stream.sources import FrameSource, SourceOptions, open_source


def classify_artifact(
    artifact: str | Path | Classifier,
    source: str | FrameSource,
    sinks: Sequence[str] = (),
    *,
    device: str | None = None,
    runtime: str | None = None,
    accelerator: str | None = None,
    threads: int | None = None,
    top_k: int = 3,
    allow_fallback: bool = True,
    trust_key: str | Path | None = None,
    self_check: bool = True,
    source_options: SourceOptions | None = None,
    max_frames: int | None = None,
    duration: float | None = None,
    health: tuple[str, float] | None = None,
    on_ready: Callable[[Classifier, dict[str, Any]], None] | None = None,
    on_prediction: Callable[..., Any] | None = None,
    say: Callable[[str], None] | None = None,
    stop: threading.Event | None = None,
) -> dict[str, Any]:
    """The report of one classify run (counts, FPS, latency per stage, ``runtime``, ``self_check``).

    ``artifact`` is opened here (and closed at the end) unless it is a ``Classifier`` already open, whose owner
    closes it. ``source``: a URI (``synthetic:``, a video file, a folder, ``rtsp://``, a camera index) or a
    FrameSource not yet opened. ``on_ready(classifier, self_check)`` runs once the artifact is open and checked,
    before the first frame."""
    from edgecnn.devices import detect, load_profile
    from edgecnn.runtime.select import check_runtime_request
    from edgecnn.signing import trust_key_from

    check_runtime_request(runtime, accelerator, no_fallback=not allow_fallback)
    if isinstance(source, str):
        source = open_source(source, source_options)  # checked, not opened yet
    owned = not isinstance(artifact, Classifier)
    from edgecnn.stream.imx500 import sensor_classifier, sensor_kpi

    sensor = sensor_classifier(source, artifact, top_k=top_k) if owned else None  # the AI Camera: its sensor's outputs
    clf = artifact if not owned else sensor or Classifier(
        artifact, profile=load_profile(device or detect()[0]), runtime=runtime, accelerator=accelerator, threads=threads,
        top_k=top_k, allow_fallback=allow_fallback, trust_key=trust_key_from(str(trust_key) if trust_key else None),
    )  # fmt: skip
    try:
        if sensor is None:
            checked = selfcheck.require(clf, skip=not self_check)
        else:  # Picamera2 offers no tensor injection to replay the samples through the sensor
            checked = {"skipped": True, "why": "the IMX500 computes in the sensor (no tensor injection in Picamera2)"}
        if on_ready is not None:
            on_ready(clf, checked)
        report = classify_stream(clf, source, list(sinks), max_frames=max_frames, duration=duration, health=health,
                                 stop=stop, on_prediction=on_prediction, say=say)
        report |= {"runtime": clf.describe(), "self_check": checked}  # while open: pinning is read from the runtime
    finally:
        if owned:
            clf.close()
    if sensor is not None:  # the IMX500's own DNN time per frame (get_kpi_info)
        report["sensor"] = sensor_kpi(sensor.dnn_ms)
    return report
