"""Device side: model formats and precisions, and what a model file is from its bytes: the one table both sides read.

Device side (no TensorFlow). Every other module learns format names, suffixes, file roles, the runtime that reads
a format and the precisions it can hold from ``FORMATS``; adding a format is a row here, a converter module and a
runtime backend module, each registered by name.

The runtimes do not promise that a malformed file is safe; a clear error that names the file, what it looks like
and what to do beats a crash deep inside C++.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from edgecnn.errors import ConfigError, ModelError


class Precision(StrEnum):
    FP32 = "fp32"
    FP16 = "fp16"
    DYNAMIC = "dynamic"
    INT8 = "int8"
    INT16X8 = "int16x8"  # int16 activations, int8 weights
    BF16 = "bf16"  # OpenVINO: fp32 weights, run in bfloat16 where the CPU has it (AVX-512 BF16, AMX, Arm bf16)

    @property
    def calibrated(self) -> bool:
        """Whether making it needs calibration images (activation ranges)."""
        return self in (Precision.INT8, Precision.INT16X8)


class Format(StrEnum):
    TFLITE = "tflite"
    ONNX = "onnx"
    OPENVINO = "openvino"
    IMX500 = "imx500"  # Sony IMX500 (Raspberry Pi AI Camera): the network runs inside the image sensor


@dataclass(frozen=True)
class FormatInfo:
    """Facts about one format: its model file, the runtime that reads it, the precisions it holds, its signature."""

    format: Format
    suffix: str  # of the model file
    files: tuple[tuple[str, str], ...]  # (role, file name) in an artifact folder
    runtime: str  # the device runtime that reads it (runtime.base.RUNTIMES)
    precisions: tuple[Precision, ...]
    kind: str  # what its bytes look like (looks_like)
    signature: Callable[[bytes], bool]

    def check(self, precision: str) -> Precision:
        """``precision`` as a Precision this format holds, or a clear error naming the ones it does."""
        try:
            p = Precision(precision)
        except ValueError:
            p = None
        if p not in self.precisions:
            allowed = ", ".join(self.precisions)
            several = [x.strip() for x in precision.split(",") if x.strip()]
            hint = (
                "repeat --precision for each: " + " ".join(f"--precision {x}" for x in several)
                if len(several) > 1
                else f"use --precision {Precision.INT8 if Precision.INT8 in self.precisions else self.precisions[-1]}"
            )
            raise ConfigError(f"precision '{precision}' is not supported by '{self.format}' (supported: {allowed})", hint=hint)
        return p


FORMATS: dict[Format, FormatInfo] = {
    Format.TFLITE: FormatInfo(
        Format.TFLITE,
        ".tflite",
        (("model", "model.tflite"),),
        "litert",
        (Precision.FP32, Precision.FP16, Precision.DYNAMIC, Precision.INT8, Precision.INT16X8),
        "a TFLite flatbuffer",
        lambda head: len(head) >= 8 and head[4:8] == b"TFL3",
    ),
    Format.ONNX: FormatInfo(
        Format.ONNX,
        ".onnx",
        (("model", "model.onnx"),),
        "onnxruntime",
        (Precision.FP32, Precision.FP16, Precision.INT8, Precision.INT16X8),
        "an ONNX protobuf",
        lambda head: head[:1] == b"\x08" and len(head) > 2,
    ),
    Format.OPENVINO: FormatInfo(
        Format.OPENVINO,
        ".xml",
        (("model", "model.xml"), ("weights", "model.bin")),
        "openvino",
        (Precision.FP32, Precision.FP16, Precision.BF16, Precision.INT8),
        "an OpenVINO IR XML",
        lambda head: head.lstrip()[:64].lower().startswith((b"<?xml", b"<net")),
    ),
    # packerOut.zip from imxconv-tf; the Pi's imx500-package turns it into network.rpk. On a host the artifact is
    # run by its emulation (runtime/imx500.py): MCT's quantised model in LiteRT, fed the sensor's 1/256 pixels.
    Format.IMX500: FormatInfo(
        Format.IMX500,
        ".zip",
        (("model", "packerOut.zip"),),
        "imx500",
        (Precision.INT8,),
        "an IMX500 packerOut zip",
        lambda head: head.startswith(b"PK\x03\x04"),
    ),
}
KERAS_KIND = "a Keras zip archive"


def format_of(name: str) -> FormatInfo:
    """The row of a format by name, with the known ones listed when it is not one."""
    from edgecnn.registry import did_you_mean

    try:
        return FORMATS[Format(name)]
    except ValueError:
        known = [str(f) for f in FORMATS]
        raise ConfigError(f"unknown format '{name}' (known: {', '.join(known)}).{did_you_mean(name, known)}") from None


def format_for_suffix(suffix: str) -> FormatInfo | None:
    return next((info for info in FORMATS.values() if info.suffix == suffix.lower()), None)


def formats_read_by(runtime: str) -> tuple[Format, ...]:
    return tuple(info.format for info in FORMATS.values() if info.runtime == runtime)


def runtime_for(what: Format | str | Path) -> str:
    """The device runtime that reads a format or a model file: the one answer to "which runtime reads this".

    Args:
        what: a format (``Format.ONNX`` or its name, ``"onnx"``), or a model file's path (by its suffix:
            ``model.xml`` is OpenVINO's).

    Returns:
        The runtime's registered name (``"litert"``, ``"onnxruntime"``, ``"openvino"``).

    Raises:
        ModelError: a file no runtime reads: a Keras model (convert it first), or an unknown suffix.
    """
    if isinstance(what, str) and what in Format.__members__.values():
        return FORMATS[Format(what)].runtime
    path = Path(what)
    info = format_for_suffix(path.suffix)
    if info is not None:
        return info.runtime
    known = ", ".join(i.suffix for i in FORMATS.values())
    if path.suffix.lower() in (".keras", ".h5"):
        raise ModelError(
            f"{path} is a Keras model: no device runtime reads it (they read {known})",
            hint=f"convert it first: edgecnn convert {path} --device NAME",
        )
    raise ModelError(f"{path} is not a model file a runtime reads (expected {known}, or an artifact folder)")


def parse_pair(text: str) -> tuple[Format, Precision]:
    """``tflite/int8`` (a device profile's entry, a --precision value) checked against the table."""
    fmt, sep, prec = text.partition("/")
    if not sep:
        raise ConfigError(f"'{text}' is not format/precision (e.g. tflite/int8)")
    info = format_of(fmt)
    return info.format, info.check(prec)


def looks_like(head: bytes) -> str:
    """A short description of what the first bytes of a file are."""
    text = head.lstrip()[:64].lower()
    if not head:
        return "an empty file (0 bytes)"
    if head.startswith(b"version https://git-lfs"):
        return "a Git LFS pointer, not the model (run 'git lfs pull')"
    if text.startswith((b"<!doctype html", b"<html", b"<head")):
        return "an HTML page (a failed download or an error page?)"
    if head.startswith(b"PK\x03\x04"):
        return "a zip archive (a .keras model?)"
    if head.startswith(b"\x89HDF"):
        return "an HDF5 file (a legacy .h5 Keras model?)"
    for info in FORMATS.values():
        if info.signature(head):
            return info.kind
    return "unrecognised binary data"


def sniff_model_file(path: str | Path) -> str:
    """Return the file's kind if it matches its suffix; otherwise raise a ModelError that says what it is."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    with open(path, "rb") as f:
        head = f.read(256)
    kind = looks_like(head)
    suffix = path.suffix.lower()
    info = format_for_suffix(suffix)
    expected = info.kind if info else {".keras": KERAS_KIND, ".h5": "an HDF5 file"}.get(suffix)
    if expected is None:
        known = ", ".join([i.suffix for i in FORMATS.values()] + [".keras"])
        raise ModelError(f"{path}: unknown model suffix {suffix!r} (expected one of {known}); the file looks like {kind}")
    if not (
        kind == expected
        or (suffix in (".keras", ".zip") and kind.startswith("a zip")) or (suffix == ".h5" and kind.startswith("an HDF5"))
    ):
        raise ModelError(
            f"{path} should be {expected} but looks like {kind}",
            hint="re-download or re-convert the model (edgecnn convert), and check the file extension",
        )
    for role, name in info.files[1:] if info else ():
        companion = path.with_suffix(Path(name).suffix)
        if not companion.is_file():
            raise ModelError(f"{path}: the {role} file {companion.name} is missing beside it")
    return kind
