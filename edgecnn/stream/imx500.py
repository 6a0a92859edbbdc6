"""Device side: ``picamera2-imx500:ARTIFACT``: the Raspberry Pi AI Camera, whose network runs inside the sensor.

The IMX500 computes the network on each frame itself; Picamera2 hands its output tensor over in the frame's
metadata (``IMX500.get_outputs``) with the sensor's own DNN time (``IMX500.get_kpi_info``). This source reads both
with the frame (a ``SensorFrame``: the BGR image carrying ``outputs`` and ``kpi``) and ``SensorClassifier`` turns
the outputs into the same ``Prediction`` every other classifier gives, so the classify/serve loop, its sinks and
its health lines are the ones every source uses. ``ARTIFACT`` is an ``imx500-int8`` artifact folder holding the
``network.rpk`` that ``deploy`` made on the board (``imx500-package``), or the ``.rpk`` itself beside it.

Picamera2 exists only on a Pi with the camera: ``INTERFACE`` names the module that provides ``Picamera2`` and
``IMX500``; tests point it at ``tests/stream/imx500_standin.py``, a stand-in that returns recorded tensors.
"""

from __future__ import annotations

import importlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.errors import StreamError
from edgecnn.stream.sources import FrameSource, SourceOptions
from edgecnn.stream.uri import Option, StreamURI

RPK = "network.rpk"
INTRINSICS_NAME = "intrinsics.json"
INTERFACE = {"module": "picamera2.devices.imx500", "camera": "picamera2"}  # where IMX500 and Picamera2 come from


class SensorFrame(np.ndarray):
    """A BGR frame with the sensor's output tensors (``outputs``) and its DNN/DSP times in ms (``kpi``)."""

    outputs: list[np.ndarray] | None = None
    kpi: tuple[float, float] | None = None

    def __array_finalize__(self, obj: Any) -> None:
        self.outputs = getattr(obj, "outputs", None)
        self.kpi = getattr(obj, "kpi", None)


def _classes() -> tuple[Any, Any]:
    try:
        imx = importlib.import_module(INTERFACE["module"])
        cam = importlib.import_module(INTERFACE["camera"])
    except ImportError:
        raise StreamError(
            "picamera2 with IMX500 support is not installed",
            hint="on Raspberry Pi OS: sudo apt install python3-picamera2 imx500-all",
        ) from None
    return cam.Picamera2, imx.IMX500


def find_rpk(target: str) -> Path:
    """The network.rpk of an artifact folder (or the .rpk given); StreamError saying how to make one."""
    path = Path(target)
    rpk = path if path.suffix == ".rpk" else path / RPK
    if not rpk.is_file() and path.is_dir():
        from edgecnn.remote.imx500 import rpk_for

        rpk = rpk_for(path)  # where deploy's imx500-package put it
    if not rpk.is_file():
        raise StreamError(
            f"no {RPK} at {rpk}: the sensor runs the network packaged on the Pi",
            hint="deploy the imx500-int8 artifact with 'edgecnn deploy' (it runs imx500-package on the board)",
        )
    return rpk


class IMX500Source(FrameSource):
    """Frames and the IMX500's output tensors from Picamera2 (``picamera2-imx500:ARTIFACT?size=640x480``)."""

    schemes = ("picamera2-imx500",)
    uri_options = {"size": Option("size", (640, 480), 16, 8192, help="capture size WxH")}

    def __init__(self, uri: StreamURI, options: SourceOptions) -> None:
        super().__init__(uri, options)
        self.rpk = find_rpk(uri.target)
        self.cam: Any = None
        self.imx500: Any = None

    def open(self) -> None:
        Picamera2, IMX500 = _classes()
        self.imx500 = IMX500(str(self.rpk))  # loads the network into the sensor: before Picamera2 opens the camera
        self.cam = Picamera2(self.imx500.camera_num)
        w, h = self.opts["size"]
        self.cam.configure(self.cam.create_preview_configuration(main={"size": (w, h), "format": "BGR888"}, buffer_count=12))
        self.cam.start()

    def read(self) -> np.ndarray | None:
        request = self.cam.capture_request()
        try:
            image = request.make_array("main")
            metadata = request.get_metadata()
        finally:
            request.release()
        frame = np.asarray(image).view(SensorFrame)
        frame.outputs = self.imx500.get_outputs(metadata, add_batch=True)
        kpi = self.imx500.get_kpi_info(metadata)
        frame.kpi = (float(kpi[0]), float(kpi[1])) if kpi else None
        return frame

    def close(self) -> None:
        cam, self.cam = self.cam, None
        if cam is not None:
            cam.stop()
            cam.close()


class SensorClassifier:
    """The sensor's output tensor of each ``SensorFrame`` as a ``Prediction`` (labels and softmax from the
    artifact's intrinsics); a frame that came without one (the network still loading) is refused per frame."""

    def __init__(self, artifact: str | Path, *, top_k: int = 3) -> None:
        from edgecnn.manifest import Manifest
        from edgecnn.runtime.imx500 import read_intrinsics

        folder = Path(artifact)
        self.manifest = Manifest.load(folder)
        net = read_intrinsics(folder)["intrinsics"]
        self.labels = list(net["labels"])
        self.softmax = bool(net.get("softmax"))
        self.spec = self.manifest.preprocess
        self.top_k = max(1, min(top_k, len(self.labels)))
        self.dnn_ms: list[float] = []  # the sensor's own DNN time per frame (get_kpi_info)

    def classify(self, image: np.ndarray, *, source_order: str = "BGR") -> Any:
        from edgecnn.runtime.classifier import Prediction

        t0 = time.perf_counter()
        outputs = getattr(image, "outputs", None)
        if not outputs:
            raise StreamError("a frame without the IMX500's output tensor (is the network loaded? check dmesg)")
        logits = np.asarray(outputs[0], np.float32).reshape(-1)
        if logits.size != len(self.labels):
            raise StreamError(f"the sensor's output has {logits.size} values; the artifact has {len(self.labels)} labels")
        probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum() if self.softmax else logits
        idx = np.argsort(-probs)[: self.top_k]
        timings = {"postprocess": (time.perf_counter() - t0) * 1e3}
        kpi = getattr(image, "kpi", None)
        if kpi:
            timings["sensor_dnn"] = kpi[0]
            self.dnn_ms.append(kpi[0])
        return Prediction([(self.labels[i], float(probs[i])) for i in idx], probs, timings)

    def describe(self) -> dict[str, Any]:
        return {"runtime": "imx500", "version": "sensor", "accelerator": "IMX500", "providers": [], "threads": None,
                "artifact": str(self.manifest.directory), "format": "imx500", "precision": "int8"}  # fmt: skip

    def close(self) -> None:
        pass

    def __enter__(self) -> SensorClassifier:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def sensor_classifier(source: Any, artifact: str | Path, *, top_k: int = 3) -> SensorClassifier | None:
    """For a ``picamera2-imx500:`` source, the classifier of its sensor's outputs (``artifact``: the imx500-int8
    artifact, or a conversion folder holding one); None for any other source."""
    if not isinstance(source, IMX500Source):
        return None
    folder = Path(artifact)
    if not (folder / INTRINSICS_NAME).is_file() and (folder / "imx500-int8" / INTRINSICS_NAME).is_file():
        folder = folder / "imx500-int8"
    return SensorClassifier(folder, top_k=top_k)


def sensor_kpi(dnn_ms: list[float]) -> dict[str, Any]:
    """``profile``'s record of the sensor's own DNN time (ms) over the frames it ran."""
    if not dnn_ms:
        return {"frames": 0}
    a = np.asarray(dnn_ms)
    return {"frames": int(a.size), "p50_ms": float(np.median(a)), "p90_ms": float(np.percentile(a, 90)),
            "source": "IMX500.get_kpi_info (the sensor's DNN runtime)"}  # fmt: skip


def write_intrinsics(folder: Path, data: dict[str, Any]) -> None:
    (folder / "intrinsics.json").write_text(json.dumps(data, indent=2))


def profile_sensor(uri: str, frames: int) -> dict[str, Any]:
    """``edgecnn profile --sensor picamera2-imx500:...``: the sensor's own DNN and DSP times over ``frames`` frames
    (``IMX500.get_kpi_info``), the network's time inside the chip rather than a runtime's on the CPU."""
    from edgecnn.stream.sources import open_source

    source = open_source(uri)
    if not isinstance(source, IMX500Source):
        raise StreamError(f"--sensor reads a picamera2-imx500: source; received {source.uri}")
    dnn, dsp = [], []
    source.open()
    try:
        while len(dnn) < frames:
            frame = source.read()
            if frame is not None and frame.kpi:
                dnn.append(frame.kpi[0])
                dsp.append(frame.kpi[1])
    finally:
        source.close()
    return {"sensor": sensor_kpi(dnn), "dsp_p50_ms": float(np.median(dsp)), "rpk": str(source.rpk), "source": source.uri}
