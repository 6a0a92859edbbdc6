"""Device side: one exception root for everything edgecnn raises on purpose.

The CLI prints an `EdgeCNNError` as a single ``error: ...`` line (plus its hint) and exits 1;
any other exception is a bug and gets a traceback.
"""

from __future__ import annotations


def first_line(exc: BaseException | str, limit: int = 300, *, with_type: bool = False) -> str:
    """The first non-empty line of a (library's) message, stripped and cut to ``limit`` characters.

    Native runtimes and converters raise messages of hundreds of lines (C++ traces, MLIR dumps); one error line
    needs the first one that says something. ``with_type`` prefixes the exception's type (``ValueError: ...``).
    """
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    text = lines[0][:limit] if lines else ""
    if with_type and isinstance(exc, BaseException):
        return f"{type(exc).__name__}: {text or 'no message'}"
    return text


class EdgeCNNError(Exception):
    """Root of all expected edgecnn failures.

    Args:
        message: what was received and what is allowed.
        hint: how to fix it, printed on its own line by the CLI.
    """

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class ConfigError(EdgeCNNError):
    """A recipe, profile or option is malformed (unknown key, wrong type, bad value)."""


class UnknownNameError(ConfigError):
    """A registry lookup failed (model, device, runtime, format, scheme)."""


class ModelError(EdgeCNNError):
    """A model file or architecture cannot be built, loaded or used."""


class DataError(EdgeCNNError):
    """A dataset, image or calibration set is unusable."""


class ArtifactError(EdgeCNNError):
    """An artifact directory or its manifest is missing, invalid or tampered with."""


class DiskFullError(ArtifactError):
    """The file system being written to has no space left; nothing partial was left behind."""


class ConversionError(EdgeCNNError):
    """A converter failed (TensorFlow, tf2onnx, OpenVINO, NNCF) or the parity gate failed."""


class RuntimeBackendError(EdgeCNNError):
    """An inference runtime could not open or run a model."""


class StreamError(EdgeCNNError):
    """A frame source or sink failed (open timeout, read timeout, bad frame)."""


class MissingDependencyError(EdgeCNNError):
    """An optional dependency is not installed."""

    def __init__(self, package: str, extra: str, *, purpose: str = "") -> None:
        what = f" (needed for {purpose})" if purpose else ""
        super().__init__(
            f"the optional package '{package}' is not installed{what}",
            hint=f'pip install "edgecnn[{extra}]"',
        )
        self.package = package
        self.extra = extra
