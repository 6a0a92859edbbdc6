"""Host side: a dataset by name: ``bundled:NAME`` or an image folder."""

from __future__ import annotations

from pathlib import Path

from edgecnn.host.data.dataset import ImageDataset


def load_dataset(source: str | Path, *, skip_bad: bool = False, seed: int = 0, max_pixels: int | None = None) -> ImageDataset:
    """Load ``bundled:NAME`` or an image folder (one sub-folder per class; images over ``max_pixels`` refused)."""
    text = str(source)
    if text.startswith("bundled:"):
        from edgecnn.host.data.bundled import load_bundled

        return load_bundled(text.split(":", 1)[1])
    from edgecnn.host.data.folders import load_folder

    return load_folder(Path(text), skip_bad=skip_bad, max_pixels=max_pixels)
