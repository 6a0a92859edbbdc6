"""Device side: image files as users and cameras hand them over: what a file really is, and whether it is safe to decode.

Used by dataset validation and training (host) and by image-folder sources (device), so both refuse the same files
for the same reasons. Every check happens before decoding: a lying extension, an empty or truncated file, CMYK,
and a decompression bomb (a small PNG whose header promises 20,000 x 20,000 pixels) are named from the bytes
alone. The pixel limit is ``EDGECNN_MAX_IMAGE_PIXELS`` (default 64 megapixels) or the caller's.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import cv2
import numpy as np

from edgecnn.errors import ConfigError

EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
DEFAULT_MAX_PIXELS = 64_000_000  # a 12-bit-per-channel 8000x8000 photo; about 200 MB decoded as BGR
_MAGIC = {  # what the first bytes say the file really is
    b"\xff\xd8\xff": "jpeg",
    b"\x89PNG\r\n\x1a\n": "png",
    b"BM": "bmp",
    b"GIF8": "gif",
}
_EXT_KIND = {".jpg": "jpeg", ".jpeg": "jpeg", ".png": "png", ".bmp": "bmp", ".webp": "webp"}


def max_pixels(value: int | None = None) -> int:
    """The limit in force: ``value``, else EDGECNN_MAX_IMAGE_PIXELS, else the default."""
    if value is not None:
        return value
    text = os.environ.get("EDGECNN_MAX_IMAGE_PIXELS", "")
    if not text:
        return DEFAULT_MAX_PIXELS
    if not text.isdigit() or int(text) < 1:
        raise ConfigError(f"EDGECNN_MAX_IMAGE_PIXELS must be a positive whole number of pixels; received {text!r}")
    return int(text)


def kind_from_bytes(head: bytes) -> str | None:
    for magic, kind in _MAGIC.items():
        if head.startswith(magic):
            return kind
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


def _jpeg_info(data: bytes) -> tuple[int, int, int] | None:
    """(width, height, components) from the first start-of-frame segment, walking the segment lengths."""
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        length = struct.unpack(">H", data[i + 2 : i + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # SOF0..SOF15 but DHT, JPG, DAC
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            return w, h, data[i + 9]
        i += 2 + length
    return None


def dimensions(data: bytes, kind: str) -> tuple[int, int] | None:
    """(width, height) from the header, without decoding; None where the header does not say."""
    try:
        if kind == "png" and data[12:16] == b"IHDR":
            return struct.unpack(">II", data[16:24])
        if kind == "jpeg":
            info = _jpeg_info(data)
            return info[:2] if info else None
        if kind == "bmp":
            w, h = struct.unpack("<ii", data[18:26])
            return abs(w), abs(h)
        if kind == "webp":
            chunk = data[12:16]
            if chunk == b"VP8X":
                return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
            if chunk == b"VP8L":
                bits = int.from_bytes(data[21:25], "little")
                return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
            if chunk == b"VP8 ":
                w, h = struct.unpack("<HH", data[26:30])
                return w & 0x3FFF, h & 0x3FFF
    except struct.error:
        return None
    return None


def problem(data: bytes, suffix: str, *, limit: int | None = None) -> str | None:
    """Why these bytes must not be decoded as an image, or None. ``suffix``: the file's extension ('' if none)."""
    if not data:
        return "empty file (0 bytes)"
    kind = kind_from_bytes(data[:16])
    if kind is None:
        return "not an image (unknown file signature)"
    if kind == "gif":
        return "GIF (possibly animated) is not supported; convert it to PNG"
    expected = _EXT_KIND.get(suffix.lower())
    if expected and expected != kind:
        return f"extension says {expected} but the file is {kind}"
    return _damage(data, kind) or _too_large(data, kind, limit)


def _damage(data: bytes, kind: str) -> str | None:
    """A truncated file, or a JPEG in CMYK."""
    if kind == "jpeg" and not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
        return "truncated JPEG (no end-of-image marker)"
    if kind == "png" and b"IEND" not in data[-16:]:
        return "truncated PNG (no IEND chunk)"
    if kind == "jpeg" and (_jpeg_info(data) or (0, 0, 3))[2] == 4:
        return "CMYK JPEG; convert it to RGB"
    return None


def _too_large(data: bytes, kind: str, limit: int | None) -> str | None:
    """More pixels once decoded than the limit allows (read from the header, before any decoding)."""
    size = dimensions(data, kind)
    cap = max_pixels(limit)
    if size and size[0] * size[1] > cap:
        return (
            f"{size[0]} x {size[1]} = {size[0] * size[1]:,} pixels once decoded, over the limit of {cap:,} "
            "(a decompression bomb, or a photo to downscale first; EDGECNN_MAX_IMAGE_PIXELS raises the limit)"
        )
    return None


def decode(data: bytes, suffix: str = "", *, limit: int | None = None) -> tuple[np.ndarray | None, str | None]:
    """(image, None) for a sound 8-bit image, else (None, reason); nothing is decoded that fails ``problem``."""
    reason = problem(data, suffix, limit=limit)
    if reason:
        return None, reason
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        return None, "undecodable (corrupt image data)"
    if img.dtype != np.uint8:
        return None, f"{img.dtype} pixels ({img.dtype.itemsize * 8}-bit); convert it to 8-bit"
    return img, None


def check_image(path: Path, *, limit: int | None = None) -> tuple[np.ndarray | None, str | None]:
    """Read and decode one file; return (image, None) or (None, reason)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return None, f"unreadable ({exc.strerror})"
    return decode(data, path.suffix, limit=limit)


def image_files(root: Path) -> list[Path]:
    """Every image file under ``root`` by extension, hidden files and folders left out, in a stable order."""
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in EXTENSIONS and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
