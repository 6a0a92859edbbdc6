"""STAND-IN for Picamera2's IMX500 interface (``picamera2.devices.imx500.IMX500`` and ``picamera2.Picamera2``), for
tests only: the Raspberry Pi AI Camera cannot exist on a test machine. It replays RECORDED frames and output tensors
(what ``IMX500.get_outputs`` and ``IMX500.get_kpi_info`` return for a frame's metadata on a Pi); it computes nothing.
``edgecnn.stream.imx500.INTERFACE`` is pointed at this module by the tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

RECORDING: dict[str, Any] = {"frames": [], "outputs": [], "dnn_ms": []}  # filled by the test
OPENED: list[str] = []  # the .rpk files "loaded into the sensor"


def record(frames: np.ndarray, outputs: np.ndarray, dnn_ms: list[float] | None = None) -> None:
    RECORDING.update(frames=list(frames), outputs=list(outputs), dnn_ms=list(dnn_ms or [3.2] * len(frames)))
    OPENED.clear()


class IMX500:
    def __init__(self, network_file: str) -> None:
        if not Path(network_file).is_file() or not network_file.endswith(".rpk"):
            raise FileNotFoundError(network_file)  # as Picamera2 does for a missing network
        OPENED.append(network_file)
        self.camera_num = 0

    def get_outputs(self, metadata: dict, add_batch: bool = False) -> list[np.ndarray] | None:
        out = metadata.get("CnnOutputTensor")
        return None if out is None else [out[None] if add_batch else out]

    def get_kpi_info(self, metadata: dict) -> tuple[float, float] | None:
        return metadata.get("kpi")


class _Request:
    def __init__(self, image: np.ndarray, metadata: dict) -> None:
        self.image, self.metadata = image, metadata

    def make_array(self, name: str) -> np.ndarray:
        return self.image

    def get_metadata(self) -> dict:
        return self.metadata

    def release(self) -> None:
        pass


class Picamera2:
    def __init__(self, camera_num: int = 0) -> None:
        self.i = 0
        self.started = False

    def create_preview_configuration(self, main: dict | None = None, **kw: Any) -> dict:
        return {"main": main, **kw}

    def configure(self, config: dict) -> None:
        self.config = config

    def start(self) -> None:
        self.started = True

    def capture_request(self) -> _Request:
        i = self.i % len(RECORDING["frames"])
        self.i += 1
        meta = {"CnnOutputTensor": RECORDING["outputs"][i], "kpi": (RECORDING["dnn_ms"][i], 0.5)}
        return _Request(RECORDING["frames"][i], meta)

    def stop(self) -> None:
        self.started = False

    def close(self) -> None:
        pass
