"""Host side: one conversion's shared state, typed: the source model, the device profile, the data, the scheduler.

It replaces the string-keyed cache the converters used to share: each converter is an object of this session and
keeps its own intermediate results (the fp32 ONNX file, the converted OpenVINO model) as attributes; what they
share is here, named.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.devices import DeviceProfile
from edgecnn.host.convert.base import Converter, ConvertRequest, converter_class
from edgecnn.host.convert.scheduler import Scheduler


class ConversionSession:
    """Use as a context manager: the workers and the temporary export are released on leaving."""

    def __init__(self, source: Any, profile: DeviceProfile) -> None:
        self.source = source
        self.profile = profile
        self.scheduler = Scheduler()
        self.calibration: Any = None  # a CalibrationSet, once the data is prepared
        self.eval_set: Any = None
        self._converters: dict[str, Converter] = {}
        self.say: Any = None  # the conversion's progress callback, for long steps inside a converter
        self.calibration_check: list[str] = []  # warnings about the calibration images (convert/calibration_check.py)
        self._reference: tuple[np.ndarray, np.ndarray] | None = None
        self.qat_options: Any = None  # --qat: the fine-tune's options (convert/qat/finetune.py)
        self.qat: Any = None  # its QATBuild, made when the first QAT artifact is asked for

    def converter(self, fmt: str) -> Converter:
        if fmt not in self._converters:
            self._converters[fmt] = converter_class(fmt)(self)
        return self._converters[fmt]

    @property
    def workdir(self) -> Path:
        """Where intermediate files go: beside the SavedModel, removed with it."""
        return self.source.workdir()

    def start(self, requests: list[ConvertRequest]) -> None:
        """Queue every request's background jobs; the workers start importing their libraries now."""
        for r in requests:
            self.scheduler.add(self.converter(r.format).jobs(r))

    def set_calibration(self, calibration: Any) -> None:
        """The calibration samples, saved once for the workers; the jobs that waited for them are submitted."""
        self.calibration = calibration
        if calibration is not None:
            path = self.workdir / "calibration.npy"
            np.save(path, calibration.samples)
            self.scheduler.calibration = path
        self.scheduler.pump()

    def ready(self, request: ConvertRequest) -> bool:
        """Whether every job ``request`` waits on has answered."""
        self.scheduler.pump()
        return not any(self.scheduler.busy(name) for name in self.converter(request.format).waits_on(request))

    def calibration_reference(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The first ``n`` calibration images and Keras's probabilities on them (what selective quantisation and
        sensitivity are judged on: never the held-out images the gate judges)."""
        if self._reference is None or len(self._reference[0]) != min(n, len(self.calibration.samples)):
            x = self.calibration.samples[:n]
            self._reference = (x, self.source.predict(x))
        return self._reference

    def close(self) -> None:
        for c in self._converters.values():
            c.close()
        if self.qat is not None:
            self.qat.close()
        self.scheduler.close()
        self.source.cleanup()

    def __enter__(self) -> ConversionSession:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
