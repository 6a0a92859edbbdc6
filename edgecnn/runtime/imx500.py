"""Device side: the imx500 runtime on a machine without the sensor: the artifact's host emulation.

An ``imx500-int8`` artifact's network runs inside the IMX500 image sensor (``packerOut.zip``, made into
``network.rpk`` on the Pi); its output tensors reach the Pi through Picamera2 (``stream/imx500.py``). No host can
run the sensor's program, so this backend runs the artifact's emulation instead: MCT's quantised model exported
as an int8 TFLite (``imx500_emulation.tflite``, the same weights, thresholds and bit widths the compiler got), fed
what the sensor feeds the network: the frame's 8-bit pixels read with scale 1/256 (not 1/255: the compiled input
is unsigned 8-bit with a power-of-two range). The parity gate, the self-check samples and ``benchmark``'s host row
of an imx500 artifact come from here, and ``describe()`` says so ("imx500 host emulation"); the chip's own
integer arithmetic may differ from LiteRT's by an output quantum.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.errors import ArtifactError
from edgecnn.formats import Format, runtime_for
from edgecnn.runtime.base import RUNTIMES, BackendBase, RuntimeInfo, TensorSpec

EMULATION = "imx500_emulation.tflite"
INTRINSICS = "intrinsics.json"
INPUT_SCALE = 1.0 / 256.0  # the compiled network's input: uint8 pixels, real = q / 256


def read_intrinsics(folder: Path) -> dict[str, Any]:
    """The artifact's network intrinsics (Picamera2's format, with edgecnn's preprocessing under ``edgecnn``)."""
    path = folder / INTRINSICS
    try:
        data = json.loads(path.read_text())
        data["edgecnn"]["preprocess"]  # noqa: B018 - present, or the artifact is not ours
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ArtifactError(f"{folder}: the imx500 artifact's {INTRINSICS} is missing or unreadable ({exc})") from None
    return data


class IMX500EmulationBackend(BackendBase):
    """An imx500 artifact on a host: its emulation TFLite in LiteRT, inputs re-read as the sensor's 1/256 pixels."""

    @classmethod
    def open(cls, path: Path, *, info: RuntimeInfo, threads: int | None = None, **_: Any) -> IMX500EmulationBackend:
        from edgecnn.preprocess import PreprocessSpec
        from edgecnn.runtime.litert import LiteRTBackend

        folder = Path(path).parent
        emulation = folder / EMULATION
        if not emulation.is_file():
            raise ArtifactError(f"{folder}: an imx500 artifact without {EMULATION} (its host emulation)",
                                hint="convert it again with this edgecnn")  # fmt: skip
        intrinsics = read_intrinsics(folder)
        inner = LiteRTBackend.open(emulation, info=RUNTIMES.get(runtime_for(Format.TFLITE)), threads=threads)
        self = cls(
            name=info.name,
            model_path=Path(path),
            threads=threads,
            accelerator="CPU",
            version=f"host emulation ({inner.version})",
            providers=["LiteRT emulation of the sensor"],
        )
        self._inner = inner
        self._spec = PreprocessSpec.from_dict(intrinsics["edgecnn"]["preprocess"])
        shape = tuple(inner.input.shape)
        self.input = TensorSpec("sensor_pixels", shape, "uint8", INPUT_SCALE, 0)  # what the chip's network reads
        self.output = inner.output
        return self

    def to_sensor(self, x: np.ndarray) -> np.ndarray:
        """edgecnn's preprocessed float inputs -> the pixels they came from, read as the sensor reads them (/256)."""
        from edgecnn.runtime.selfcheck import pixels_from_inputs

        return pixels_from_inputs(x, self._spec).astype(np.float32) * np.float32(INPUT_SCALE)

    def run(self, x: np.ndarray) -> np.ndarray:
        return self._inner.run(self.to_sensor(x))

    def set_input(self, x: np.ndarray) -> None:
        self._inner.set_input(self.to_sensor(x))

    def invoke(self) -> np.ndarray:
        return self._inner.invoke()

    def describe(self) -> dict[str, Any]:
        return super().describe() | {"emulation": True, "note": "imx500 host emulation: MCT's quantised model in LiteRT"}

    def close(self) -> None:
        self._inner.close()
