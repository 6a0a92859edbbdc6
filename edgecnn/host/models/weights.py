"""Where weights come from: none, ImageNet through Keras's cache, or a file."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgecnn.errors import ModelError


def normalise(weights: str | Path | None) -> str:
    if weights is None or str(weights).lower() in ("none", "null", "", "random"):
        return "none"
    if str(weights).lower() == "imagenet":
        return "imagenet"
    path = Path(weights).expanduser()
    if not path.is_file():
        raise ModelError(f"weights file not found: {path}", hint="give weights: none, imagenet or an existing file")
    return str(path)


def keras_cache_dir() -> Path:
    import os

    base = os.environ.get("KERAS_HOME") or str(Path("~/.keras").expanduser())
    return Path(base) / "models"


def with_imagenet_errors(build: Callable[[], Any], name: str) -> Any:
    """Run a builder; turn Keras's failed ImageNet download into a 'put this file there' error."""
    try:
        return build()
    except Exception as exc:  # Keras raises a bare Exception("URL fetch failure on ...")
        text = str(exc)
        m = re.search(r"(https?://\S+?\.h5)", text)
        if "fetch failure" not in text and not m:
            raise
        url = m.group(1) if m else "(see Keras's applications page)"
        fname = url.rsplit("/", 1)[-1] if m else "the weights file"
        raise ModelError(
            f"cannot download ImageNet weights for {name} (offline?): {fname}",
            hint=f"on a machine with network download {url} and copy it to {keras_cache_dir() / fname}",
        ) from None


def load_into(model: Any, path: Path) -> None:
    """Load a weights file into ``model``; a file for another architecture is a clear error."""
    try:
        if path.suffix == ".keras":
            from edgecnn.host.models.io import load_keras_model

            src = load_keras_model(path)
            if len(src.weights) != len(model.weights) or any(
                tuple(a.shape) != tuple(b.shape) for a, b in zip(src.weights, model.weights)
            ):
                raise ValueError("layer count or weight shapes differ")
            model.set_weights(src.get_weights())
        else:
            model.load_weights(str(path))
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - h5py/Keras raise many kinds on a file that does not fit
        raise ModelError(
            f"weights file {path} does not fit {model.name} (input {tuple(model.input_shape[1:])}, "
            f"{model.count_params():,} parameters): {str(exc).splitlines()[0][:200]}",
            hint="use weights made for the same architecture, input channels and number of classes",
        ) from None
