"""The host side's TensorFlow settings, made before TensorFlow is first imported (they are read at import).

Each is a default: a variable the user has set wins.
"""

from __future__ import annotations

import os


def prepare() -> None:
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")  # the only backend our exporters support
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # TensorFlow turns its oneDNN kernels on by itself only on CPUs with AVX-512 VNNI/BF16 or AMX. On an AVX2 CPU
    # (this 2-core AMD EPYC) they cut the Keras forward pass of the parity reference, 200 MobileNetV2 images, from
    # 10.5 to 6.6 CPU-seconds (three interleaved pairs of runs).
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
