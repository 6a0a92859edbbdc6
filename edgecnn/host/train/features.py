"""Cached-feature head training: when the base stays frozen, run it over the training set once and train
the head on the stored features (the classic speed-up for transfer learning's first stage)."""

from __future__ import annotations

import time
from typing import Any

from edgecnn.errors import ConfigError


def check_cacheable(recipe: Any, base: Any) -> None:
    a = recipe.augmentation
    if base is None:
        raise ConfigError(
            f"cache_features needs a model with a separate base; {recipe.model.name} has none",
            hint="set transfer.cache_features: false",
        )
    if a.flip != "none" or any(
        getattr(a, k) for k in ("rotation", "translation", "zoom", "crop", "brightness", "contrast", "noise")
    ):
        raise ConfigError(
            "cache_features needs augmentation switched off: augmented images change every epoch, so their "
            "features cannot be cached",
            hint="remove the augmentation block or set transfer.cache_features: false",
        )


def head_model(model: Any, base: Any) -> Any:
    """A model of the layers after ``base``, sharing their weights with ``model``."""
    import keras

    layers = model.layers[model.layers.index(base) + 1 :]
    inp = keras.Input(shape=tuple(base.output.shape[1:]))
    x = inp
    for layer in layers:
        x = layer(x)
    return keras.Model(inp, x, name="head")


def fit_head_on_features(model: Any, base: Any, data: Any, recipe: Any, *, lr: float, epochs: int, quiet: bool) -> list[dict]:
    from edgecnn.host.models._keras import keras

    k = keras()
    t0 = time.perf_counter()
    f_train = base.predict(data.x_train, batch_size=64, verbose=0)
    f_val = base.predict(data.x_val, batch_size=64, verbose=0) if len(data.x_val) else None
    extract_s = time.perf_counter() - t0
    head = head_model(model, base)
    head.compile(optimizer=k.optimizers.Adam(lr), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    from edgecnn.host.train.callbacks import epoch_timer

    timer = epoch_timer()
    callbacks: list[Any] = [timer]
    es = recipe.training.early_stopping
    if es and f_val is not None:
        callbacks.append(
            k.callbacks.EarlyStopping(monitor=es.monitor, patience=es.patience, restore_best_weights=es.restore_best)
        )
    hist = head.fit(
        f_train,
        data.y_train,
        batch_size=recipe.training.batch_size,
        epochs=epochs,
        verbose=0 if quiet else 2,
        validation_data=(f_val, data.y_val) if f_val is not None else None,
        callbacks=callbacks,
        shuffle=True,
    )
    rows = []
    for i in range(len(hist.history["loss"])):
        rows.append(
            {
                "stage": "head_cached",
                "epoch": i + 1,
                "epoch_seconds": timer.seconds[i],
                **{key: float(v[i]) for key, v in hist.history.items()},
            }
        )
    if rows:
        rows[0]["feature_extraction_seconds"] = extract_s
    return rows
