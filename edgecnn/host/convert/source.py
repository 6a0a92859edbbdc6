"""The model being converted: a run directory or a user's .keras file, with labels and preprocessing."""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn import cleanup
from edgecnn.errors import ConfigError, ModelError
from edgecnn.preprocess import PreprocessSpec

EXPORT_PREFIX = "edgecnn-export-"  # + pid: a killed conversion's export is removed by the next one


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
    _serving: Any = field(default=None, repr=False)
    export_method: str | None = None  # how saved_model() wrote the SavedModel

    @property
    def name(self) -> str:
        return self.model.name

    def serving_function(self) -> Any:
        """The model's inference call (``training=False``) traced once into a TensorFlow graph, batch dimension free.

        It is what Keras' own ``predict`` and ``export`` trace; tracing it once serves both the Keras reference
        outputs and the SavedModel.
        """
        if self._serving is None:
            import tensorflow as tf

            inp = self.model.inputs[0]
            name = re.sub(r"\W", "_", str(getattr(inp, "name", "") or "input")) or "input"
            spec = tf.TensorSpec((None, *inp.shape[1:]), inp.dtype, name=name)
            model = self.model
            self._serving = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
        return self._serving

    def saved_model(self) -> Path:
        """The SavedModel every converter reads (TFLite, tf2onnx, OpenVINO), written once.

        The traced inference graph with its weights frozen into constants, saved with one ``serving_default``
        signature: several times cheaper than Keras' ``model.export`` (which traces every layer again for the
        checkpoint functions and walks each trackable), and each converter then loads it faster because there are
        no variables to freeze (README, "Measured here"). A model that
        cannot be frozen (a lookup table or other resource, or a graph over protobuf's 2 GB) goes through
        ``model.export`` as before; ``export_method`` says which route was taken.
        """
        if self._saved_model is None:
            self._tmp = cleanup.create_remembered(
                lambda: tempfile.TemporaryDirectory(prefix=f"{EXPORT_PREFIX}{os.getpid()}-"), lambda t: t.name
            )
            out = Path(self._tmp.name) / "saved_model"
            try:
                self._save_frozen(out)
                self.export_method = "frozen graph (tf.saved_model.save)"
            except Exception as exc:  # noqa: BLE001 - any failure here has a slower route that works
                import io
                import shutil
                from contextlib import redirect_stdout

                shutil.rmtree(out, ignore_errors=True)
                with redirect_stdout(io.StringIO()):
                    self.model.export(str(out), format="tf_saved_model", verbose=False)
                self.export_method = f"keras model.export (the frozen graph failed: {type(exc).__name__})"
            self._saved_model = out
        return self._saved_model

    def _save_frozen(self, out: Path) -> None:
        import tensorflow as tf
        from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

        frozen = convert_variables_to_constants_v2(self.serving_function())
        if len(frozen.inputs) != 1 or frozen.captured_inputs:  # a resource it cannot make a constant (a lookup table)
            raise ValueError(f"the frozen graph still takes {len(frozen.inputs) - 1} resources besides the image")
        tf.saved_model.save(tf.Module(), str(out), signatures={"serving_default": frozen})

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The Keras model's probabilities, through the traced inference graph (what ``model.predict`` runs)."""
        import tensorflow as tf

        fn = self.serving_function()

        def run(batch: np.ndarray) -> np.ndarray:
            out = fn(tf.constant(batch))
            if isinstance(out, dict):
                (out,) = out.values()
            elif isinstance(out, list | tuple):
                (out,) = out
            return np.asarray(out, dtype=np.float32)

        n_out = int(self.model.outputs[0].shape[-1])
        # batches of 16 cost less CPU than batches of 64 (README, "Measured here")
        return np.concatenate([np.empty((0, n_out), np.float32)] + [run(x[i : i + 16]) for i in range(0, len(x), 16)])

    def workdir(self) -> Path:
        return self.saved_model().parent

    def cleanup(self) -> None:
        """Remove the temporary SavedModel and what the converters put beside it."""
        if self._tmp is not None:
            self._tmp.cleanup()
            cleanup.forget(self._tmp.name)
            self._tmp = None
            self._saved_model = None


@dataclass(frozen=True)
class InputFlags:
    """Preprocessing given on the command line for a bare .keras file; its size comes from the model once loaded."""

    scale: float
    mean: float = 0.0
    std: float = 1.0
    color_order: str = "RGB"

    def spec(self, shape: tuple[int, int, int]) -> PreprocessSpec:
        h, w, c = shape
        return PreprocessSpec(
            height=h,
            width=w,
            channels=c,
            color_order=self.color_order if c == 3 else "GRAY",
            scale=self.scale,
            mean=(self.mean,),
            std=(self.std,),
        )


def image_input_shape(keras_model: Any, path: Path) -> tuple[int, int, int]:
    """(H, W, C) of a model whose one input is an image of known size; a clear error naming the shape otherwise."""
    shape = tuple(keras_model.inputs[0].shape)
    if len(shape) != 4:
        raise ModelError(
            f"{path}: the input has shape {shape}, not an image (batch, height, width, channels)",
            hint="edgecnn converts image classifiers whose input is NxHxWxC",
        )
    if any(d is None for d in shape[1:]):
        raise ModelError(
            f"{path}: the input has unknown dimensions {shape}: edgecnn needs a fixed image size to preprocess and convert",
            hint="rebuild the model with keras.Input((height, width, channels)) and load its weights",
        )
    if shape[3] not in (1, 3):
        raise ModelError(f"{path}: the input has {shape[3]} channels {shape}; edgecnn handles grey (1) or colour (3) images")
    return int(shape[1]), int(shape[2]), int(shape[3])


def check_classifier(keras_model: Any, path: Path) -> int:
    """The number of classes of a model with one input and one softmax output; a clear error otherwise."""
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
    last = keras_model.layers[-1]
    act = getattr(getattr(last, "activation", None), "__name__", "softmax")
    if type(last).__name__ != "Softmax" and act != "softmax":
        raise ModelError(
            f"{path}: the last layer's activation is '{act}', not softmax: outputs are not probabilities",
            hint="add a Softmax layer to the model before converting",
        )
    return int(out_shape[-1])


def _labels(given: list[str] | None, folder: Path, n: int) -> list[str]:
    """The labels given, else labels.txt in ``folder``, else class_0..; they must be as many as the outputs."""
    from edgecnn.text import read_lines

    labels_file = folder / "labels.txt"
    labels = given if given is not None else read_lines(labels_file, "labels file") if labels_file.is_file() else None
    labels = labels or [f"class_{i}" for i in range(n)]
    if len(labels) != n:
        raise ConfigError(f"{len(labels)} labels given but the model has {n} outputs")
    return labels


def _preprocess(given: PreprocessSpec | InputFlags | None, file: Path, path: Path, shape: tuple[int, int, int]) -> PreprocessSpec:
    """The preprocessing given, completed from the model's input, else ``file`` (preprocess.json)."""
    spec = given.spec(shape) if isinstance(given, InputFlags) else given
    if spec is None:
        if not file.is_file():
            raise ConfigError(
                f"no preprocessing known for {path}",
                hint="put a preprocess.json beside it or pass --input-scale/--input-mean/--input-std",
            )
        spec = PreprocessSpec.load(file)
    if spec.input_shape != shape:
        raise ConfigError(f"preprocessing makes {spec.input_shape} inputs but the model takes {shape}")
    return spec


def load_source(
    model: str | Path,
    *,
    preprocess: PreprocessSpec | InputFlags | None = None,
    labels: list[str] | None = None,
    trust: bool = False,
    located: Any = None,
) -> SourceModel:
    """Load an edgecnn run directory (model.keras + labels.txt + preprocess.json, verified against its index) or
    a .keras file (labels.txt and preprocess.json beside it, or given explicitly). ``located``: the
    ``output.locate_source`` answer for ``model`` when the caller has it already."""
    from edgecnn.host.convert.output import locate_source
    from edgecnn.host.models.io import load_keras_model

    located = located or locate_source(model)
    path, run_dir = located.path, located.run_dir
    keras_model = load_keras_model(path, trust=trust)
    n = check_classifier(keras_model, path)
    shape = image_input_shape(keras_model, path)
    folder = run_dir or path.parent
    spec = _preprocess(preprocess, folder / "preprocess.json", path, shape)
    return SourceModel(path, keras_model, _labels(labels, folder, n), spec, run_dir, located.sha256)
