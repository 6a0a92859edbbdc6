"""Host side: what a converter is, and the registry that finds one by format.

A converter is one class per format (``tflite.py``, ``onnx.py``, ``openvino.py``) behind this small base: it
declares the background jobs it wants (``jobs``), which of them a request waits on (``waits_on``), and converts one
request into a staged folder (``convert``). Formats, precisions and suffixes come from ``edgecnn.formats``; the
generic scheduler runs the jobs; ``api.convert`` knows no format by name. A new format is one module here, one
row in ``formats.FORMATS`` and one registration.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from edgecnn.devices import DeviceProfile
from edgecnn.formats import FORMATS, Format, Precision, format_of
from edgecnn.host.convert.scheduler import Job, Scheduler
from edgecnn.registry import Registry


@dataclass(frozen=True)
class ConvertRequest:
    """One artifact to make: a format and a precision, and the options that change how."""

    format: Format
    precision: Precision
    int8_weights: str | None = None  # per-channel | per-tensor | None (the converter's default)
    accuracy_control: float | None = None  # OpenVINO int8: NNCF's accuracy control with this budget (points)
    keep_float: tuple[str, ...] = ()  # Keras layers left in float (int8; convert/selective.py)
    sensitivity: bool = False  # also write the per-layer sensitivity report into the artifact
    sensitivity_check: bool = False  # and the brute-force check beside it (each layer alone left in float)
    steps: tuple[dict, ...] = ()  # --keep-float auto: the steps before this one (the manifest records the trade)
    qat: bool = False  # int8 from the quantisation-aware fine-tuned model (convert/qat/)

    @property
    def selective(self) -> bool:
        """Made from one calibration with layers chosen (left in float, or measured one at a time)."""
        return bool(self.keep_float) or self.sensitivity

    @property
    def name(self) -> str:
        return f"{self.format}-{self.precision}"

    @property
    def label(self) -> str:
        return f"{self.format}/{self.precision}"

    @property
    def weights(self) -> str:
        return self.int8_weights or "per-channel"


@dataclass
class ConversionResult:
    """What a converter wrote: the manifest's files (role -> {"path": ...}), the tools' versions and its extra."""

    files: dict[str, dict[str, Any]]
    tools: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


class Session(Protocol):
    """What a converter reads of its conversion: ``convert/session.py``'s ``ConversionSession`` is the one
    implementation. Named here, as a protocol, so that this module needs nothing of that one (which builds the
    converters from this registry): converters depend on what a session offers, not on its class."""

    source: Any  # the SourceModel (convert/source.py)
    profile: DeviceProfile
    scheduler: Scheduler
    calibration: Any  # a CalibrationSet, once the data is prepared
    eval_set: Any
    say: Any  # the conversion's progress callback
    calibration_check: list[str]
    qat_options: Any
    qat: Any

    @property
    def workdir(self) -> Path: ...

    def converter(self, fmt: str) -> Converter: ...

    def calibration_reference(self, n: int) -> tuple[Any, Any]: ...


class Converter(ABC):
    """One format's converter for one conversion session; it keeps its intermediate results as its own state."""

    format: ClassVar[Format]

    selective_class: ClassVar[str | None] = None  # "module:Class" of its Selective (convert/selective.py), if any

    def __init__(self, session: Session) -> None:
        self.session = session
        self._selective: dict[tuple[str, str], Any] = {}

    def selective(self, request: ConvertRequest) -> Any:
        """This format's Selective for the request's precision and weights: calibrated once per conversion."""
        from edgecnn.errors import ConfigError

        if self.selective_class is None or request.precision != Precision.INT8:
            raise ConfigError(f"--keep-float and --sensitivity apply to int8; not to {request.label}")
        key = (str(request.precision), request.weights)
        if key not in self._selective:
            module, cls = self.selective_class.split(":")
            self._selective[key] = getattr(importlib.import_module(f"edgecnn.host.convert.{module}"), cls)(
                self.session, request.precision, request.weights
            )
        return self._selective[key]

    def close(self) -> None:
        for sel in self._selective.values():
            sel.close()

    @property
    def info(self):
        return FORMATS[self.format]

    def files(self) -> dict[str, dict[str, Any]]:
        """A fresh files table (the manifest writes each file's hash into it)."""
        return {role: {"path": name} for role, name in self.info.files}

    def jobs(self, request: ConvertRequest) -> list[Job]:
        """Background jobs for ``request``, submitted when the conversion starts (none by default)."""
        return []

    def waits_on(self, request: ConvertRequest) -> list[str]:
        """The names of the jobs ``convert`` will read for ``request``: it is converted once they have answered."""
        return [job.name for job in self.jobs(request)]

    @abstractmethod
    def convert(self, request: ConvertRequest, out_dir: Path) -> ConversionResult:
        """Write ``request``'s model files into ``out_dir``; ConversionError (one line) when it cannot."""


CONVERTERS: Registry[str] = Registry("format")  # format -> "module:Class", imported when a conversion needs it
CONVERTERS.add(Format.TFLITE, "tflite:TFLiteConverter")
CONVERTERS.add(Format.ONNX, "onnx:ONNXConverter")
CONVERTERS.add(Format.OPENVINO, "openvino:OpenVINOConverter")
CONVERTERS.add(Format.IMX500, "imx500:IMX500Converter")


def converter_class(fmt: str) -> type[Converter]:
    module, cls = CONVERTERS.get(fmt).split(":")
    return getattr(importlib.import_module(f"edgecnn.host.convert.{module}"), cls)


def parse_targets(items: list[str], default: list[str]) -> list[tuple[Format, Precision]]:
    """``--precision`` values: ``int8`` (every format of the profile's list) or ``tflite/int8``; validated against
    the format table. ``default``: the profile's ``format/precision`` list."""
    from edgecnn.formats import parse_pair

    if not items:
        pairs = [parse_pair(d) for d in default]
    else:
        pairs = []
        formats = list(dict.fromkeys(d.partition("/")[0] for d in default)) or [str(f) for f in FORMATS]
        for item in items:
            if "/" in item:
                pairs.append(parse_pair(item))
            else:
                pairs += [(format_of(f).format, format_of(f).check(item)) for f in formats]
    return list(dict.fromkeys(pairs))
