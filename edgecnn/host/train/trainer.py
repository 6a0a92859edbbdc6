"""``edgecnn train``: recipe -> data -> model -> (two-stage) training -> run directory."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn import config
from edgecnn.atomic import staged_directory
from edgecnn.errors import ConfigError, DataError, ModelError
from edgecnn.host.data import ImageDataset, load_dataset
from edgecnn.host.train.callbacks import epoch_timer
from edgecnn.host.train.recipe import Recipe
from edgecnn.manifest import write_run_index
from edgecnn.preprocess import PreprocessSpec, preprocess_batch


@dataclass
class PreparedData:
    spec: PreprocessSpec
    class_names: list[str]
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    train_raw: ImageDataset
    skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # bad files left out (--skip-bad)


def select_classes(ds: ImageDataset, recipe: Recipe) -> ImageDataset:
    if recipe.classes:
        missing = [c for c in recipe.classes if c not in ds.class_names]
        if missing:
            raise ConfigError(f"recipe classes {missing} are not in the dataset (has: {', '.join(ds.class_names)})")
        keep_ids = [ds.class_names.index(c) for c in recipe.classes]
        idx = np.flatnonzero(np.isin(ds.labels, keep_ids))
        sub = ds.subset(idx)
        remap = {old: new for new, old in enumerate(keep_ids)}
        sub.labels = np.array([remap[int(v)] for v in sub.labels], dtype=np.int64)
        sub.class_names = list(recipe.classes)
        ds = sub
    return ds


def prepare(recipe: Recipe, data: str | None = None, *, skip_bad: bool = False, max_pixels: int | None = None) -> PreparedData:
    from edgecnn.host.models import get_spec

    loaded = load_dataset(data or recipe.data, skip_bad=skip_bad, max_pixels=max_pixels)
    ds = select_classes(loaded, recipe)
    spec_m = get_spec(recipe.model.name)
    size = recipe.model.input_size or spec_m.default_input[0]
    channels = recipe.model.channels or spec_m.default_input[2]
    spec = spec_m.preprocess_spec((size, size), channels)
    train, val, test = ds.split(validation=recipe.split.validation, test=recipe.split.test, seed=recipe.seed)
    if recipe.max_per_class:
        rng = np.random.default_rng(recipe.seed)
        idx = np.concatenate(
            [rng.permutation(np.flatnonzero(train.labels == c))[: recipe.max_per_class] for c in range(len(ds.class_names))]
        )
        train = train.subset(np.sort(idx), "train")
    if len(train) == 0:
        raise DataError("the training split is empty", hint="use a larger dataset or smaller validation/test fractions")

    def arrays(part: ImageDataset) -> tuple[np.ndarray, np.ndarray]:
        if len(part) == 0:
            return np.zeros((0, *spec.input_shape), np.float32), np.zeros((0,), np.int64)
        return preprocess_batch(part.images, spec, source_order=part.source_order), part.labels

    _check_memory(len(ds), spec, f"{recipe.model.name} at input_size {size}")
    (xt, yt), (xv, yv), (xs, ys) = arrays(train), arrays(val), arrays(test)
    return PreparedData(spec, ds.class_names, xt, yt, xv, yv, xs, ys, train, loaded.skipped)


def _check_memory(images: int, spec: PreprocessSpec, what: str) -> None:
    """Refuse a dataset whose preprocessed float32 copy would not fit in memory, with the estimate."""
    import psutil

    need = images * int(np.prod(spec.input_shape)) * 4
    available = psutil.virtual_memory().available
    if need > 0.8 * available:
        raise DataError(
            f"{what}: {images} preprocessed images of {spec.height}x{spec.width}x{spec.channels} float32 need "
            f"{need / 1e9:.1f} GB, and this machine has {available / 1e9:.1f} GB available",
            hint="use a smaller model.input_size, or fewer images (max_per_class)",
        )


def _strategy(recipe: Recipe):
    import tensorflow as tf

    if recipe.strategy == "mirrored":
        return tf.distribute.MirroredStrategy()
    if recipe.strategy == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()  # configured by TF_CONFIG
    return tf.distribute.get_strategy()


def _optimizer(recipe: Recipe, lr: float, steps: int):
    from edgecnn.host.models._keras import keras

    k = keras()
    t = recipe.training
    if t.schedule == "cosine":
        lr = k.optimizers.schedules.CosineDecay(lr, decay_steps=max(1, steps))
    if t.optimizer == "sgd":
        return k.optimizers.SGD(learning_rate=lr, momentum=t.momentum)
    return k.optimizers.Adam(learning_rate=lr)


def _transfer_weights(src: Any, dst: Any) -> int:
    """Copy weights layer by layer where names and shapes match (the head is skipped)."""
    import keras

    def flat(model):
        out = {}
        for layer in model.layers:
            if isinstance(layer, keras.Model):
                out.update(flat(layer))
            elif layer.weights:
                out[layer.name] = layer
        return out

    s, d = flat(src), flat(dst)
    copied = 0
    for name, layer in d.items():
        if name == "predictions" or name not in s:
            continue
        ws = s[name].get_weights()
        if [w.shape for w in ws] == [w.shape for w in layer.get_weights()]:
            layer.set_weights(ws)
            copied += 1
    return copied


def build_model(recipe: Recipe, data: PreparedData) -> tuple[Any, Any | None]:
    """Build the model; with a transfer stage also return the frozen base."""
    from edgecnn.host.models import create_model

    m = recipe.model
    shape = data.spec.input_shape
    kw = dict(num_classes=len(data.class_names), input_size=shape[:2], channels=shape[2], **m.options)
    if not recipe.transfer:
        return create_model(m.name, weights=m.weights, **kw), None
    base_src = recipe.transfer.base
    if base_src == "imagenet" or base_src.endswith((".h5",)) and not base_src.endswith(".keras"):
        model = create_model(m.name, weights=base_src, **kw)
    else:
        from edgecnn.host.models.io import load_keras_model

        src = load_keras_model(base_src)
        if src.input_shape[-1] != shape[-1]:
            raise ModelError(
                f"base {base_src} takes {src.input_shape[-1]}-channel input, but the recipe asks for {shape[-1]} channels",
                hint="use the same channels as the base (convolutional weights do not depend on the input size, channels do)",
            )
        model = create_model(m.name, weights="none", **kw)
        if _transfer_weights(src, model) == 0:
            raise ModelError(f"base {base_src} shares no layers with {m.name}: its weights do not fit this architecture")
    try:
        base = model.get_layer("base")
    except ValueError:
        base = None
    return model, base


def _freeze(model: Any, base: Any | None, trainable: bool) -> None:
    if base is not None:
        base.trainable = trainable
    else:  # flat models: freeze everything below the head
        for layer in model.layers:
            if layer.name != "predictions":
                layer.trainable = trainable


def _unfreeze_top(base: Any, ft: Any) -> None:
    import keras

    base.trainable = True
    names = [layer.name for layer in base.layers]
    if ft.from_layer:
        if ft.from_layer not in names:
            raise ConfigError(f"fine_tune.from_layer '{ft.from_layer}' is not a layer of the base")
        start = names.index(ft.from_layer)
    else:
        start = max(0, len(names) - ft.layers)
    for i, layer in enumerate(base.layers):
        # batch norm stays frozen (inference mode) while fine-tuning: its statistics came from the big dataset
        layer.trainable = i >= start and not isinstance(layer, keras.layers.BatchNormalization)


def _fit(model, data: PreparedData, recipe: Recipe, lr: float, epochs: int, *, quiet: bool, augmenter, stage: str) -> list[dict]:
    import tensorflow as tf

    from edgecnn.host.models._keras import keras

    k = keras()
    t = recipe.training
    steps = int(np.ceil(len(data.x_train) / t.batch_size)) * epochs
    if recipe.strategy == "multi_worker":
        from edgecnn.host.train.distributed import fit_multi_worker

        return fit_multi_worker(
            model,
            data,
            recipe,
            _optimizer(recipe, lr, steps),
            epochs,
            strategy=tf.distribute.get_strategy(),
            augmenter=augmenter,
            stage=stage,
            quiet=quiet,
        )
    model.compile(
        optimizer=_optimizer(recipe, lr, steps),
        loss=k.losses.CategoricalCrossentropy(label_smoothing=t.label_smoothing)
        if t.label_smoothing
        else "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    n_classes = len(data.class_names)
    y_train = k.utils.to_categorical(data.y_train, n_classes) if t.label_smoothing else data.y_train
    y_val = k.utils.to_categorical(data.y_val, n_classes) if t.label_smoothing else data.y_val
    ds = tf.data.Dataset.from_tensor_slices((data.x_train, y_train)).shuffle(
        len(data.x_train), seed=recipe.seed, reshuffle_each_iteration=True
    )
    ds = ds.batch(t.batch_size)
    if augmenter is not None:
        ds = ds.map(lambda x, y: (augmenter(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    has_val = len(data.x_val) > 0
    val = tf.data.Dataset.from_tensor_slices((data.x_val, y_val)).batch(256) if has_val else None
    timer = epoch_timer()
    callbacks = [timer]
    es = t.early_stopping
    if es and has_val:
        callbacks.append(
            k.callbacks.EarlyStopping(monitor=es.monitor, patience=es.patience, restore_best_weights=es.restore_best)
        )
    hist = model.fit(ds, validation_data=val, epochs=epochs, verbose=0 if quiet else 2, callbacks=callbacks)
    rows = []
    for i in range(len(hist.history["loss"])):
        rows.append(
            {
                "stage": stage,
                "epoch": i + 1,
                "epoch_seconds": timer.seconds[i],
                **{key: float(v[i]) for key, v in hist.history.items()},
            }
        )
    return rows


def check_out(out: Path, *, force: bool) -> None:
    """The run folder can be written: absent (or --force), and its parent takes new entries."""
    from edgecnn.atomic import check_can_create

    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a folder")
    if out.exists() and not force:
        raise ConfigError(f"output folder already exists: {out}", hint="use --force to replace it, or choose another --out")
    check_can_create(out, "run folder")


def _transfer(model: Any, base: Any, prepared: PreparedData, recipe: Recipe, *, quiet: bool, augmenter: Any) -> list[dict]:
    """Stage 1, the new head on the frozen base (on cached features when asked); stage 2, fine-tuning the top."""
    tr = recipe.transfer
    _freeze(model, base, False)
    if tr.cache_features:
        from edgecnn.host.train.features import check_cacheable, fit_head_on_features

        check_cacheable(recipe, base)
        history = fit_head_on_features(
            model, base, prepared, recipe, lr=tr.head_learning_rate, epochs=tr.head_epochs, quiet=quiet
        )
    else:
        history = _fit(
            model, prepared, recipe, tr.head_learning_rate, tr.head_epochs, quiet=quiet, augmenter=augmenter, stage="head"
        )
    if tr.fine_tune:
        if base is None:
            _freeze(model, None, True)
        else:
            _unfreeze_top(base, tr.fine_tune)
        ft = tr.fine_tune
        history += _fit(model, prepared, recipe, ft.learning_rate, ft.epochs, quiet=quiet, augmenter=augmenter, stage="fine_tune")
    return history


def _write_run(
    out: Path, force: bool, model: Any, prepared: PreparedData, recipe: Recipe, data: str | None, history, seconds
) -> None:
    import yaml

    from edgecnn.host.train.report import write_run_reports

    with staged_directory(out, force=force) as tmp:
        model.save(tmp / "model.keras")
        (tmp / "labels.txt").write_text("\n".join(prepared.class_names) + "\n", encoding="utf-8")
        prepared.spec.save(tmp / "preprocess.json")
        resolved = dataclasses.replace(recipe, data=data or recipe.data)
        (tmp / "recipe.resolved.yaml").write_text(yaml.safe_dump(config.to_dict(resolved), sort_keys=False), encoding="utf-8")
        write_run_reports(tmp, model, prepared, history, seconds)
        write_run_index(tmp)  # last: a run folder with an index is complete


def train(
    recipe: Recipe,
    out: str | Path,
    *,
    data: str | None = None,
    force: bool = False,
    quiet: bool = False,
    skip_bad: bool = False,
    max_pixels: int | None = None,
) -> Path:
    """Run a recipe and write the run directory atomically. Returns its path.

    Every check that needs no TensorFlow comes first (the output folder, the data), so that a refusal is quick."""
    out = Path(out)
    check_out(out, force=force)
    prepared = prepare(recipe, data, skip_bad=skip_bad, max_pixels=max_pixels)
    import keras
    import tensorflow as tf

    from edgecnn.host.data.augment import build_augmenter

    keras.utils.set_random_seed(recipe.seed)
    tf.config.experimental.enable_op_determinism()
    started = time.time()
    with _strategy(recipe).scope():
        model, base = build_model(recipe, prepared)
        augmenter = build_augmenter(recipe.augmentation, prepared.spec.input_shape, recipe.seed)
        if recipe.transfer:
            history = _transfer(model, base, prepared, recipe, quiet=quiet, augmenter=augmenter)
        else:
            t = recipe.training
            history = _fit(model, prepared, recipe, t.learning_rate, t.epochs, quiet=quiet, augmenter=augmenter, stage="train")
    _write_run(out, force, model, prepared, recipe, data, history, time.time() - started)
    return out
