"""Device side: edgecnn: from a trained CNN classifier to a camera on a small board.

``import edgecnn`` is cheap: TensorFlow is imported only by the host-side modules that need it.
"""

from __future__ import annotations

__version__ = "0.2.0"

from edgecnn.errors import EdgeCNNError  # noqa: E402

__all__ = ["EdgeCNNError", "__version__"]
