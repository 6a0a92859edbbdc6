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
    import tensorflow as tf

    from edgecnn.models._keras import keras

    k = keras()
    gb = recipe.training.batch_size
    workers = max(1, strategy.num_replicas_in_sync)
    # every worker must run the same number of steps, or the collective ops wait forever
    n = (len(data.x_train) // (gb * workers)) * gb * workers
    if n == 0:
        from edgecnn.errors import DataError

        raise DataError(f"{len(data.x_train)} training images are fewer than one global batch ({gb} x {workers} workers)")
    loss_fn = k.losses.SparseCategoricalCrossentropy(reduction="none")  # label smoothing is not applied on this path yet

    @tf.function
    def step(xb, yb):
        def replica(xb, yb):
            if augmenter is not None:
                xb = augmenter(xb, training=True)
            with tf.GradientTape() as tape:
                p = model(xb, training=True)
                per_example = loss_fn(yb, p)
                loss = tf.nn.compute_average_loss(per_example, global_batch_size=gb)
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(p, axis=1), tf.cast(yb, tf.int64)), tf.float32))
            return loss, correct

        loss, correct = strategy.run(replica, (xb, yb))
        return strategy.reduce("SUM", loss, axis=None), strategy.reduce("SUM", correct, axis=None)

    es = recipe.training.early_stopping
    best, best_weights, waited, rows = np.inf, None, 0, []
    for epoch in range(epochs):
        t0 = time.perf_counter()
        ds = tf.data.Dataset.from_tensor_slices((data.x_train, data.y_train)).shuffle(len(data.x_train), seed=recipe.seed + epoch)
        ds = ds.take(n).batch(gb, drop_remainder=True)
        total_loss, total_correct, steps = 0.0, 0.0, 0
        for xb, yb in strategy.experimental_distribute_dataset(ds):
            loss, correct = step(xb, yb)
            total_loss, total_correct, steps = total_loss + float(loss), total_correct + float(correct), steps + 1
        row = {"stage": stage, "epoch": epoch + 1, "loss": total_loss / steps, "accuracy": total_correct / n}
        if len(data.x_val):
            probs = np.concatenate(
                [model(data.x_val[i : i + 256], training=False).numpy() for i in range(0, len(data.x_val), 256)]
            )
            row["val_loss"] = float(np.mean(k.losses.sparse_categorical_crossentropy(data.y_val, probs)))
            row["val_accuracy"] = float((probs.argmax(1) == data.y_val).mean())
        row["epoch_seconds"] = time.perf_counter() - t0
        rows.append(row)
        if not quiet:
            print(" ".join(f"{key}={v:.4f}" if isinstance(v, float) else f"{key}={v}" for key, v in row.items()), flush=True)
        if es and "val_loss" in row:
            if row["val_loss"] < best:
                best, waited = row["val_loss"], 0
                best_weights = [w.copy() for w in model.get_weights()] if es.restore_best else None
            else:
                waited += 1
                if waited >= es.patience:
                    break
    if best_weights is not None:
        model.set_weights(best_weights)
    return rows
