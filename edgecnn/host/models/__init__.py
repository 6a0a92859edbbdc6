"""Host side: the model zoo: every architecture registered by name, built by one factory.

Importing this package is cheap (no TensorFlow); builders import Keras when called.
"""

from __future__ import annotations

from edgecnn.host._tfenv import prepare
from edgecnn.host.models.zoo import MODELS, ModelSpec, create_model, get_spec, min_input_size

prepare()  # before anything below this package imports TensorFlow

__all__ = ["MODELS", "ModelSpec", "create_model", "get_spec", "min_input_size"]
