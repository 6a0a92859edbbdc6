"""Multi-worker training without Model.fit.

Keras 3's ``Model.fit`` cannot consume a MultiWorkerMirroredStrategy dataset (keras-team/keras#20585: every step fails
with "Attempt to convert a value (PerReplica...) to a Tensor"), so ``strategy: multi_worker`` runs this small custom loop:
``strategy.run`` per replica, ``tf.nn.compute_average_loss`` over the global batch, the optimizer's all-reduce, and the same
early stopping (patience on validation loss, restore best) as the single-machine path.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np


def fit_multi_worker(
    model: Any, data: Any, recipe: Any, optimizer: Any, epochs: int, *, strategy: Any, augmenter: Any, stage: str, quiet: bool
) -> list[dict]:
    """Train ``epochs`` epochs (fewer with early stopping) across the strategy's workers; one row per epoch."""
    import tensorflow as tf

    gb = recipe.training.batch_size
    workers = max(1, strategy.num_replicas_in_sync)
    # every worker must run the same number of steps, or the collective ops wait forever
    n = (len(data.x_train) // (gb * workers)) * gb * workers
    if n == 0:
        from edgecnn.errors import DataError

        raise DataError(f"{len(data.x_train)} training images are fewer than one global batch ({gb} x {workers} workers)")
    step = _train_step(model, optimizer, strategy, augmenter, gb)
    stopper = _EarlyStopping(recipe.training.early_stopping, model)
    rows = []
    for epoch in range(epochs):
        t0 = time.perf_counter()
        ds = tf.data.Dataset.from_tensor_slices((data.x_train, data.y_train)).shuffle(len(data.x_train), seed=recipe.seed + epoch)
        ds = ds.take(n).batch(gb, drop_remainder=True)
        total_loss, total_correct, steps = 0.0, 0.0, 0
        for xb, yb in strategy.experimental_distribute_dataset(ds):
            loss, correct = step(xb, yb)
            total_loss, total_correct, steps = total_loss + float(loss), total_correct + float(correct), steps + 1
        row = {"stage": stage, "epoch": epoch + 1, "loss": total_loss / steps, "accuracy": total_correct / n}
        row |= _validate(model, data)
        row["epoch_seconds"] = time.perf_counter() - t0
        rows.append(row)
        if not quiet:
            print(" ".join(f"{key}={v:.4f}" if isinstance(v, float) else f"{key}={v}" for key, v in row.items()), flush=True)
        if stopper.should_stop(row):
            break
    stopper.restore()
    return rows


def _train_step(model: Any, optimizer: Any, strategy: Any, augmenter: Any, global_batch: int) -> Any:
    """One distributed step: each replica's loss averaged over the global batch, gradients all-reduced by the
    optimizer; returns the summed loss and the number of correct predictions."""
    import tensorflow as tf

    from edgecnn.host.models._keras import keras

    loss_fn = keras().losses.SparseCategoricalCrossentropy(reduction="none")  # label smoothing is not applied here yet

    @tf.function
    def step(xb, yb):
        def replica(xb, yb):
            if augmenter is not None:
                xb = augmenter(xb, training=True)
            with tf.GradientTape() as tape:
                p = model(xb, training=True)
                loss = tf.nn.compute_average_loss(loss_fn(yb, p), global_batch_size=global_batch)
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(p, axis=1), tf.cast(yb, tf.int64)), tf.float32))
            return loss, correct

        loss, correct = strategy.run(replica, (xb, yb))
        return strategy.reduce("SUM", loss, axis=None), strategy.reduce("SUM", correct, axis=None)

    return step


def _validate(model: Any, data: Any) -> dict[str, float]:
    """Validation loss and accuracy, in batches of 256; nothing without validation images."""
    if not len(data.x_val):
        return {}
    from edgecnn.host.models._keras import keras

    probs = np.concatenate([model(data.x_val[i : i + 256], training=False).numpy() for i in range(0, len(data.x_val), 256)])
    return {
        "val_loss": float(np.mean(keras().losses.sparse_categorical_crossentropy(data.y_val, probs))),
        "val_accuracy": float((probs.argmax(1) == data.y_val).mean()),
    }


class _EarlyStopping:
    """Patience on validation loss and restore-best, as the single-machine path's Keras callback does."""

    def __init__(self, config: Any, model: Any) -> None:
        self.config, self.model = config, model
        self.best, self.best_weights, self.waited = np.inf, None, 0

    def should_stop(self, row: dict[str, Any]) -> bool:
        if not self.config or "val_loss" not in row:
            return False
        if row["val_loss"] < self.best:
            self.best, self.waited = row["val_loss"], 0
            self.best_weights = [w.copy() for w in self.model.get_weights()] if self.config.restore_best else None
            return False
        self.waited += 1
        return self.waited >= self.config.patience

    def restore(self) -> None:
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)
