"""Loading user Keras files safely, with clear errors."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

from edgecnn.errors import ModelError


def check_keras_file(path: str | Path) -> Path:
    """Refuse, without importing Keras, a path that is not a Keras model file (missing, a folder, not a zip)."""
    path = Path(path)
    if path.is_dir():
        raise ModelError(f"{path} is a folder, not a Keras model file", hint="give a .keras file or an edgecnn run folder")
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    if path.suffix == ".keras" and not zipfile.is_zipfile(path):
        from edgecnn.formats import looks_like

        with open(path, "rb") as f:
            kind = looks_like(f.read(256))
        raise ModelError(
            f"{path} is not a Keras model (a .keras file is a zip archive; this one looks like {kind})",
            hint="pass a file saved with model.save('name.keras')",
        )
    if path.suffix not in (".keras", ".h5"):
        raise ModelError(f"{path} is not a Keras model file (expected .keras or .h5); received suffix {path.suffix!r}")
    if path.suffix == ".keras":
        try:
            with zipfile.ZipFile(path) as z:
                names = set(z.namelist())
        except (zipfile.BadZipFile, OSError) as exc:
            raise ModelError(f"{path} is not a Keras model archive (a damaged zip: {exc})") from None
        if "config.json" not in names:
            raise ModelError(
                f"{path} is not a Keras model archive: a zip without config.json (holds {', '.join(sorted(names)[:3]) or 'nothing'})",
                hint="pass a file saved with model.save('name.keras')",
            )
    return path


def load_keras_model(path: str | Path, *, trust: bool = False) -> Any:
    """Load a ``.keras`` (or legacy ``.h5``) model in Keras safe mode unless ``trust`` is set."""
    path = check_keras_file(path)
    import keras

    try:
        return keras.saving.load_model(path, compile=False, safe_mode=not trust)
    except ValueError as exc:
        text = str(exc)
        if "safe_mode" in text or "Lambda" in text:
            raise ModelError(
                f"{path} contains a Lambda layer or other code that Keras safe mode refuses to load",
                hint="only if you trust the file's author, add --trust-model",
            ) from None
        raise ModelError(f"cannot load {path} as a Keras model: {text.splitlines()[0][:300]}") from None
    except Exception as exc:  # noqa: BLE001 - a junk or hostile file makes Keras raise anything
        raise ModelError(f"cannot load {path} as a Keras model: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}") from None
