"""The model being converted: a run directory or a user's .keras file, with labels and preprocessing."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.errors import ConfigError, ModelError
from edgecnn.manifest import sha256_file
from edgecnn.preprocess import PreprocessSpec


@dataclass
class SourceModel:
    path: Path
    model: Any
    labels: list[str]
    spec: PreprocessSpec
    run_dir: Path | None = None
    sha256: str = ""
    _saved_model: Path | None = field(default=None, repr=False)
    _tmp: Any = field(default=None, repr=False)
    cache: dict[str, Any] = field(default_factory=dict, repr=False)  # per-format intermediates (fp32 ONNX, OpenVINO model)
    _cleanups: list[Any] = field(default_factory=list, repr=False)

    @property
    def name(self) -> str:
        return self.model.name

    def saved_model(self) -> Path:
        """Export once to a SavedModel (Keras 3: model.export, the reliable route to TFLite/ONNX/OpenVINO)."""
        if self._saved_model is None:
            import io
            from contextlib import redirect_stdout

            self._tmp = tempfile.TemporaryDirectory(prefix="edgecnn-export-")
            out = Path(self._tmp.name) / "saved_model"
            with redirect_stdout(io.StringIO()):
                self.model.export(str(out), format="tf_saved_model", verbose=False)
            self._saved_model = out
        return self._saved_model

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict(x, verbose=0, batch_size=64), dtype=np.float32)

    def workdir(self) -> Path:
        return self.saved_model().parent

    def on_cleanup(self, fn: Any) -> None:
        """Call ``fn`` at cleanup (e.g. stop a background job that is no longer needed)."""
        self._cleanups.append(fn)

    def cleanup(self) -> None:
        for fn in self._cleanups:
            try:
                fn()
            except OSError:
                pass
        self._cleanups.clear()
        self.cache.clear()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
            self._saved_model = None


def load_source(
    model: str | Path, *, preprocess: PreprocessSpec | None = None, labels: list[str] | None = None, trust: bool = False
) -> SourceModel:
    """Load an edgecnn run directory (model.keras + labels.txt + preprocess.json) or a .keras file
    (labels.txt and preprocess.json beside it, or given explicitly)."""
    from edgecnn.models.io import load_keras_model

    path = Path(model)
    run_dir = None
    if path.is_dir():
        run_dir = path
        path = path / "model.keras"
        if not path.is_file():
            raise ModelError(f"{run_dir} is not an edgecnn run directory (no model.keras)")
    keras_model = load_keras_model(path, trust=trust)
    if len(keras_model.inputs) != 1 or len(keras_model.outputs) != 1:
        raise ModelError(
            f"{path}: expected one input and one output; found {len(keras_model.inputs)} and {len(keras_model.outputs)}"
        )
    out_shape = keras_model.outputs[0].shape
    if len(out_shape) != 2 or not out_shape[-1] or out_shape[-1] < 2:
        raise ModelError(
            f"{path}: the output is not a class-probability vector (shape {tuple(out_shape)})",
            hint="convert a classifier whose last layer is a softmax over the classes",
        )
    if (
        type(keras_model.layers[-1]).__name__ not in ("Softmax",)
        and getattr(keras_model.layers[-1], "activation", None) is not None
    ):
        act = getattr(keras_model.layers[-1].activation, "__name__", "")
        if act != "softmax":
            raise ModelError(
                f"{path}: the last layer's activation is '{act}', not softmax: outputs are not probabilities",
                hint="add a Softmax layer to the model before converting",
            )
    n = int(out_shape[-1])
    in_shape = tuple(int(d) for d in keras_model.inputs[0].shape[1:] if d is not None)
    if len(in_shape) != 3:
        raise ModelError(f"{path}: expected an image input HxWxC; found {tuple(keras_model.inputs[0].shape)}")
    labels_file = (run_dir or path.parent) / "labels.txt"
    if labels is None and labels_file.is_file():
        labels = [line.strip() for line in labels_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    labels = labels or [f"class_{i}" for i in range(n)]
    if len(labels) != n:
        raise ConfigError(f"{len(labels)} labels given but the model has {n} outputs")
    if preprocess is None:
        pp = (run_dir / "preprocess.json") if run_dir else path.with_name("preprocess.json")
        if pp.is_file():
            preprocess = PreprocessSpec.load(pp)
        else:
            raise ConfigError(
                f"no preprocessing known for {path}",
                hint="put a preprocess.json beside it or pass --input-scale/--input-mean/--input-std",
            )
    if preprocess.input_shape != in_shape:
        raise ConfigError(f"preprocessing makes {preprocess.input_shape} inputs but the model takes {in_shape}")
    return SourceModel(path, keras_model, labels, preprocess, run_dir, sha256_file(path))
