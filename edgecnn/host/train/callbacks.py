"""Host side: Keras callbacks the trainers share."""

from __future__ import annotations

import time


def epoch_timer():
    """A Keras callback recording wall-clock seconds per epoch in ``.seconds`` (Keras is imported on first use)."""
    from edgecnn.host.models._keras import keras

    class EpochTimer(keras().callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self._t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self._t)

    return EpochTimer()
