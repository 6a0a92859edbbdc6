"""Host side: TensorFlow settings, made before TensorFlow is first imported (they are read at import).

Each is a default: a variable the user has set wins.
"""

from __future__ import annotations

import os


def prepare() -> None:
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")  # the only backend our exporters support
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # TensorFlow turns its oneDNN kernels on by itself only on CPUs with AVX-512 VNNI/BF16 or AMX; on an AVX2 CPU
    # they make the parity reference's Keras forward pass much cheaper too (README, "Measured here").
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
