"""Device side: the ONE preprocessing used everywhere: training, calibration, parity and the device runtime.

Images enter as numpy arrays in a declared channel order (OpenCV gives BGR; scikit-learn and
scikit-image give RGB) and leave as float32 HxWxC tensors in the colour order, size and value
range the model expects: ``x = (pixel * scale - mean) / std``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgecnn.errors import ConfigError, DataError


class ColorOrder(StrEnum):
    RGB = "RGB"
    BGR = "BGR"
    GRAY = "GRAY"


class ResizeMode(StrEnum):
    STRETCH = "stretch"
    CENTER_CROP = "center_crop"
    LETTERBOX = "letterbox"


_INTERPOLATION = {"linear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA, "nearest": cv2.INTER_NEAREST}


@dataclass(frozen=True)
class PreprocessSpec:
    """How raw pixels become the model's input tensor.

    Attributes:
        height, width: model input size in pixels.
        channels: 1 (grayscale) or 3 (colour).
        color_order: channel order the model was trained on (RGB, BGR; GRAY when channels=1).
        scale, mean, std: ``x = (pixel * scale - mean) / std`` per channel.
        resize: stretch, center_crop or letterbox.
        interpolation: linear, area or nearest (OpenCV).
    """

    height: int
    width: int
    channels: int = 3
    color_order: ColorOrder = ColorOrder.RGB
    scale: float = 1.0 / 255.0
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    resize: ResizeMode = ResizeMode.STRETCH
    interpolation: str = "linear"

    def __post_init__(self) -> None:
        if self.height < 1 or self.width < 1:
            raise ConfigError(f"preprocess size must be positive; received {self.height}x{self.width}")
        if self.channels not in (1, 3):
            raise ConfigError(f"preprocess channels must be 1 or 3; received {self.channels}")
        if self.interpolation not in _INTERPOLATION:
            raise ConfigError(f"interpolation must be one of {', '.join(_INTERPOLATION)}; received {self.interpolation!r}")
        for name in ("mean", "std"):
            values = getattr(self, name)
            if len(values) not in (1, self.channels):
                raise ConfigError(f"preprocess {name} needs 1 or {self.channels} values; received {values}")
        if any(s == 0 for s in self.std):
            raise ConfigError("preprocess std must not contain 0")
        if self.channels == 1 and self.color_order != ColorOrder.GRAY:
            object.__setattr__(self, "color_order", ColorOrder.GRAY)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.height, self.width, self.channels)

    def value_range(self) -> tuple[float, float]:
        """The range of model-input values that pixels 0..255 map to (min, max over channels)."""
        lo = [(0.0 * self.scale - m) / s for m, s in zip(self._per_channel(self.mean), self._per_channel(self.std))]
        hi = [(255.0 * self.scale - m) / s for m, s in zip(self._per_channel(self.mean), self._per_channel(self.std))]
        return float(min(lo + hi)), float(max(lo + hi))

    def _per_channel(self, values: tuple[float, ...]) -> tuple[float, ...]:
        return values if len(values) == self.channels else values * self.channels

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["color_order"] = str(self.color_order)
        d["resize"] = str(self.resize)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessSpec:
        from edgecnn import config

        data = dict(data)
        for key in ("mean", "std"):
            if key in data and isinstance(data[key], (int, float)):
                data[key] = [data[key]]
        return config.from_dict(cls, data, source="preprocess")

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> PreprocessSpec:
        path = Path(path)
        try:
            return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read preprocessing spec {path}: {exc}") from None

    # ---- named presets -------------------------------------------------------------------
    @classmethod
    def unit(cls, size: int | tuple[int, int], channels: int = 3) -> PreprocessSpec:
        """Pixels scaled to [0, 1] (LeNet, SqueezeNet, models trained from scratch)."""
        h, w = (size, size) if isinstance(size, int) else size
        return cls(height=h, width=w, channels=channels)

    @classmethod
    def symmetric(cls, size: int | tuple[int, int], channels: int = 3) -> PreprocessSpec:
        """Pixels scaled to [-1, 1] (Keras MobileNet V1/V2/V3 without built-in rescaling)."""
        h, w = (size, size) if isinstance(size, int) else size
        return cls(height=h, width=w, channels=channels, scale=1 / 127.5, mean=(1.0,), std=(1.0,))


def to_uint8_image(image: np.ndarray) -> np.ndarray:
    """Normalise dtype and shape of a raw image to uint8 HxWxC (C in 1, 3, 4) or refuse it."""
    if not isinstance(image, np.ndarray):
        raise DataError(f"expected an image as a numpy array; received {type(image).__name__}")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4) or image.shape[0] < 1 or image.shape[1] < 1:
        raise DataError(f"expected an image of shape HxW, HxWx1, HxWx3 or HxWx4; received shape {image.shape}")
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        # 16-bit sensors/PNGs: keep the top 8 bits (round to nearest), never wrap around.
        return ((image.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if image.dtype == bool:
        return image.astype(np.uint8) * 255
    raise DataError(
        f"expected a uint8 or uint16 image; received dtype {image.dtype}",
        hint="convert floats yourself (e.g. (img * 255).round().astype('uint8')) so the range is explicit",
    )


def _convert_color(image: np.ndarray, source: ColorOrder, spec: PreprocessSpec) -> tuple[np.ndarray, str]:
    """Channel count conversion that must happen before resizing (to gray, drop alpha), and what is left to do after
    it: "reverse" (BGR<->RGB) or "repeat" (gray to 3 channels). Both are exact per-channel operations, so doing them
    on the small resized image gives the same tensor, without copying a strided full-size frame (5-10 ms at 720p)."""
    c = image.shape[2]
    if spec.channels == 1:
        if c == 1:
            return image, ""
        code = {
            (3, ColorOrder.BGR): cv2.COLOR_BGR2GRAY,
            (3, ColorOrder.RGB): cv2.COLOR_RGB2GRAY,
            (4, ColorOrder.BGR): cv2.COLOR_BGRA2GRAY,
            (4, ColorOrder.RGB): cv2.COLOR_RGBA2GRAY,
        }[(c, source if source != ColorOrder.GRAY else ColorOrder.BGR)]
        return cv2.cvtColor(image, code)[:, :, None], ""
    if c == 1:
        return image, "repeat"
    if c == 4:
        image = np.ascontiguousarray(image[:, :, :3])
    if source == ColorOrder.GRAY:
        raise DataError(f"an image declared GRAY has {c} channels")
    return image, ("reverse" if source != spec.color_order else "")


def _resize(image: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    h, w = image.shape[:2]
    interp = _INTERPOLATION[spec.interpolation]
    if (h, w) == (spec.height, spec.width):
        return image
    if spec.resize == ResizeMode.CENTER_CROP:
        target = spec.width / spec.height
        if w / h > target:
            nw = max(1, round(h * target))
            x0 = (w - nw) // 2
            image = image[:, x0 : x0 + nw]
        else:
            nh = max(1, round(w / target))
            y0 = (h - nh) // 2
            image = image[y0 : y0 + nh]
    elif spec.resize == ResizeMode.LETTERBOX:
        ratio = min(spec.width / w, spec.height / h)
        nw, nh = max(1, round(w * ratio)), max(1, round(h * ratio))
        small = cv2.resize(image, (nw, nh), interpolation=interp)
        if small.ndim == 2:
            small = small[:, :, None]
        canvas = np.zeros((spec.height, spec.width, image.shape[2]), dtype=image.dtype)
        y0, x0 = (spec.height - nh) // 2, (spec.width - nw) // 2
        canvas[y0 : y0 + nh, x0 : x0 + nw] = small
        return canvas
    out = cv2.resize(image, (spec.width, spec.height), interpolation=interp)
    return out[:, :, None] if out.ndim == 2 else out


def resize_uint8(image: np.ndarray, spec: PreprocessSpec, *, source_order: str = "BGR") -> np.ndarray:
    """The integer half of preprocessing: channels, colour order and size, still uint8 HxWxC."""
    source = ColorOrder(source_order)
    image = to_uint8_image(image)
    image, after = _convert_color(image, source, spec)
    image = _resize(image, spec)
    if after == "reverse":
        image = image[:, :, ::-1]
    elif after == "repeat":
        image = np.repeat(image, 3, axis=2)
    return image


def _to_float(image: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    x = image.astype(np.float32) * np.float32(spec.scale)
    mean = np.asarray(spec.mean, dtype=np.float32)
    std = np.asarray(spec.std, dtype=np.float32)
    if np.any(mean != 0):
        x -= mean
    if np.any(std != 1):
        x /= std
    return x


def preprocess(image: np.ndarray, spec: PreprocessSpec, *, source_order: str = "BGR") -> np.ndarray:
    """Turn one raw image into the model's float32 HxWxC input.

    Args:
        image: uint8/uint16 array, HxW or HxWxC with C in 1, 3, 4.
        spec: the model's preprocessing.
        source_order: channel order of ``image`` ("BGR" for OpenCV frames, "RGB" for PIL/skimage).
    """
    return _to_float(resize_uint8(image, spec, source_order=source_order), spec)


def quantize_table(spec: PreprocessSpec, scale: float, zero_point: int, dtype: str) -> np.ndarray:
    """For a model with an int8/uint8 input: pixel value -> quantised input value, one row of 256 per channel.

    Every pixel 0..255 goes through exactly the float32 arithmetic of ``preprocess`` and then the runtime's
    quantisation (round(x / scale + zero_point), clipped), so a lookup gives the same tensor as the float path
    without any float work per frame."""
    pixels = np.repeat(np.arange(256, dtype=np.uint8)[:, None], spec.channels, axis=1).reshape(256, 1, spec.channels)
    x = _to_float(pixels, spec)
    info = np.iinfo(dtype)
    q = np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(dtype)
    return np.ascontiguousarray(q.reshape(256, spec.channels).T)  # (channels, 256)


def preprocess_batch(images: list[np.ndarray] | np.ndarray, spec: PreprocessSpec, *, source_order: str = "BGR") -> np.ndarray:
    """Preprocess many images into one float32 NxHxWxC batch."""
    if len(images) == 0:
        raise DataError("no images to preprocess")
    out = np.empty((len(images), *spec.input_shape), dtype=np.float32)
    for i, img in enumerate(images):
        out[i] = preprocess(img, spec, source_order=source_order)
    return out
