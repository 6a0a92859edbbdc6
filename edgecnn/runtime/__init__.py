"""Device side: inference: numpy + one runtime. Never imports TensorFlow on its normal path."""

from __future__ import annotations

from edgecnn.runtime.base import RUNTIMES, Backend, open_backend
from edgecnn.runtime.classifier import Classifier, Prediction

__all__ = ["RUNTIMES", "Backend", "Classifier", "Prediction", "open_backend"]
