"""Host side: the QAT fine-tune: rewrite, equalise, calibrate the activation ranges, fine-tune, refresh the ranges.

The data is the run's own: its training and validation splits, preprocessing and augmentation, read from the
run's ``recipe.resolved.yaml`` exactly as ``edgecnn train`` made them (``train.trainer.prepare``). A bare .keras
file has no run: ``data`` (``--qat-data``) names a labelled image folder (class sub-folders named as the model's
labels), of which ``validation`` is held back for early stopping. The learning rate is low (the run's / 10, else
1e-4), the epochs few (``epochs``, default 5), and early stopping on the validation loss keeps the best epoch; when
no epoch beats the calibrated start on the validation images, the start is kept (``kept`` in the record says which).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.errors import ConfigError, DataError

RECIPE = "recipe.resolved.yaml"
CALIBRATION_IMAGES = 300


@dataclass(frozen=True)
class QATOptions:
    """How to fine-tune. ``data``: a labelled image folder (default: the run's training split)."""

    epochs: int = 5
    learning_rate: float | None = None
    batch_size: int | None = None
    patience: int = 2
    data: str | None = None
    validation: float = 0.15
    equalise: bool = True
    seed: int = 0

    def check(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"--qat-epochs must be at least 1; received {self.epochs}")
        if self.learning_rate is not None and not 0 < self.learning_rate < 1:
            raise ConfigError(f"the QAT learning rate must be in (0, 1); received {self.learning_rate}")
        if not 0 < self.validation < 0.9:
            raise ConfigError(f"the QAT validation fraction must be in (0, 0.9); received {self.validation}")


@dataclass
class _Data:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    source: str
    augmenter: Any = None
    learning_rate: float = 1e-4
    batch_size: int = 32


@dataclass
class QATResult:
    """The fine-tuned QAT Keras model and what it cost."""

    model: Any
    epochs: int
    seconds: float
    data: str
    accuracy: dict[str, float | None]  # float / qat_before / qat_after, on the validation images
    equalised: list[dict[str, Any]] = field(default_factory=list)
    learning_rate: float = 0.0
    kept: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "epochs": self.epochs,
            "seconds": round(self.seconds, 2),
            "data": self.data,
            "learning_rate": self.learning_rate,
            "kept": self.kept,
            "validation_accuracy": self.accuracy,
            "equalised": self.equalised,
        }


def _from_run(run_dir: Path, labels: list[str]) -> _Data:
    from edgecnn.host.data.augment import build_augmenter
    from edgecnn.host.train.recipe import load_recipe
    from edgecnn.host.train.trainer import prepare

    recipe = load_recipe(run_dir / RECIPE)
    prepared = prepare(recipe)
    if list(prepared.class_names) != list(labels):
        raise DataError(f"{run_dir}: the recipe's data has classes {prepared.class_names}, the model {labels}")
    aug = build_augmenter(recipe.augmentation, prepared.spec.input_shape, recipe.seed)
    t = recipe.training
    return _Data(
        prepared.x_train, prepared.y_train, prepared.x_val, prepared.y_val, f"the run's training split ({recipe.data})",
        aug, t.learning_rate / 10, t.batch_size,
    )  # fmt: skip


def _from_folder(folder: str, labels: list[str], spec: Any, opts: QATOptions) -> _Data:
    from edgecnn.host.data import load_dataset
    from edgecnn.preprocess import preprocess_batch

    ds = load_dataset(folder)
    if list(ds.class_names) != list(labels):
        raise DataError(
            f"QAT data {folder}: its classes {ds.class_names} are not the model's labels {labels}",
            hint="one sub-folder per label, named as in labels.txt",
        )
    train, val, _ = ds.split(validation=opts.validation, test=0.0, seed=opts.seed)
    x = [preprocess_batch(part.images, spec, source_order=part.source_order) for part in (train, val)]
    return _Data(x[0], train.labels, x[1], val.labels, f"{folder} ({len(train)} images, {len(val)} for validation)")


def require_data(source: Any, opts: QATOptions) -> None:
    """Refuse, before any work, a fine-tune that has no data: a bare .keras without ``data``, a folder that is
    missing or whose class folders are not the model's labels."""
    opts.check()
    if opts.data:
        folder = Path(opts.data)
        if not folder.is_dir():
            raise ConfigError(f"QAT data {folder}: no such folder", hint="a labelled image folder: one sub-folder per class")
        classes = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
        if classes != sorted(source.labels):
            raise DataError(
                f"QAT data {folder}: its class folders {classes} are not the model's labels {sorted(source.labels)}",
                hint="one sub-folder per label, named as in labels.txt",
            )
    elif source.run_dir is None or not (Path(source.run_dir) / RECIPE).is_file():
        raise ConfigError(
            f"{source.path}: quantisation-aware training needs labelled training images, and a .keras file has none",
            hint="name a labelled image folder (class sub-folders named as the labels): convert --qat-data DIR, "
            "qat --data DIR; or use the edgecnn run folder",
        )


def training_data(source: Any, opts: QATOptions) -> _Data:
    """The fine-tune's data: ``opts.data``, else the run's training split."""
    require_data(source, opts)
    if opts.data:
        return _from_folder(opts.data, source.labels, source.spec, opts)
    return _from_run(Path(source.run_dir), source.labels)


def _activation_quantisers(model: Any) -> list[Any]:
    from edgecnn.host.convert.qat.layers import ActivationQuant

    return [layer for layer in model._flatten_layers() if isinstance(layer, ActivationQuant)]  # noqa: SLF001


def calibrate(model: Any, x: np.ndarray, batch: int = 50) -> None:
    """Each activation range = the min/max over ``x`` (what post-training int8 uses), before the fine-tune."""
    quantisers = _activation_quantisers(model)
    for q in quantisers:
        q.calibrating = True
        q.amin.assign(0.0)
        q.amax.assign(0.0)
    for i in range(0, len(x), batch):
        model(x[i : i + batch], training=False)
    for q in quantisers:
        q.calibrating = False


def refresh_ranges(model: Any) -> None:
    for layer in model._flatten_layers():  # noqa: SLF001
        if hasattr(layer, "refresh_range"):
            layer.refresh_range()


def _accuracy(model: Any, x: np.ndarray, y: np.ndarray) -> float | None:
    if len(x) == 0:
        return None
    probs = np.concatenate([np.asarray(model(x[i : i + 64], training=False)) for i in range(0, len(x), 64)])
    return round(float(np.mean(probs.argmax(1) == y)), 4)


def _fit(model: Any, data: _Data, opts: QATOptions, lr: float, batch: int) -> tuple[int, str]:
    """(epochs run, which weights were kept)."""
    import keras
    import tensorflow as tf

    model.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    ds = tf.data.Dataset.from_tensor_slices((data.x_train, data.y_train))
    ds = ds.shuffle(len(data.x_train), seed=opts.seed).batch(batch)
    if data.augmenter is not None:
        aug = data.augmenter
        ds = ds.map(lambda x, y: (aug(x, training=True), y))
    callbacks, val = [], None
    if len(data.x_val):
        val = (data.x_val, data.y_val)
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_loss", patience=opts.patience, restore_best_weights=True))
        start, start_loss = model.get_weights(), _val_loss(model, val)
    history = model.fit(ds.prefetch(2), validation_data=val, epochs=opts.epochs, verbose=0, callbacks=callbacks)
    if val is not None and min(history.history["val_loss"]) >= start_loss:
        model.set_weights(start)
        return len(history.history["loss"]), "the calibrated start (no epoch lowered the validation loss)"
    return len(history.history["loss"]), "the epoch with the lowest validation loss" if val is not None else "the last epoch"


def _val_loss(model: Any, val: tuple[np.ndarray, np.ndarray]) -> float:
    return float(model.evaluate(val[0], val[1], verbose=0, return_dict=True)["loss"])


def fine_tune(source: Any, opts: QATOptions, *, calibration: np.ndarray | None = None, say: Any = None) -> QATResult:
    """The QAT copy of ``source.model``, calibrated and fine-tuned (``source``: a convert ``SourceModel``)."""
    import keras

    from edgecnn.host.convert.qat.equalise import equalise
    from edgecnn.host.convert.qat.rewrite import qat_model

    opts.check()
    say = say or (lambda _m: None)
    data = training_data(source, opts)
    keras.utils.set_random_seed(opts.seed)
    model = qat_model(source.model)
    pairs = equalise(model) if opts.equalise else []
    calib = calibration if calibration is not None else data.x_train[:CALIBRATION_IMAGES]
    calibrate(model, calib)
    before = _accuracy(model, data.x_val, data.y_val)
    lr = opts.learning_rate or data.learning_rate
    batch = opts.batch_size or data.batch_size
    say(f"QAT: fine-tuning on {data.source}: up to {opts.epochs} epochs at learning rate {lr:g}")
    t0 = time.perf_counter()
    epochs, kept = _fit(model, data, opts, lr, batch)
    seconds = time.perf_counter() - t0
    refresh_ranges(model)
    accuracy = {
        "float": _accuracy(source.model, data.x_val, data.y_val),
        "qat_before": before,
        "qat_after": _accuracy(model, data.x_val, data.y_val),
    }
    say(f"QAT: {epochs} epochs in {seconds:.1f} s, kept {kept}; validation accuracy {accuracy}")
    return QATResult(model, epochs, seconds, data.source, accuracy, pairs, lr, kept)
