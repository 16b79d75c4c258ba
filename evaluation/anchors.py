"""Classical codecs as anchors for rate-distortion comparisons.

Every option is set explicitly, because library defaults silently move the
operating point: imagecodecs encodes WebP and JPEG XL losslessly unless told
otherwise, and JPEG XL at effort 5; Pillow writes AVIF with 4:2:0 chroma, and
libavif >= 1.4 tunes libaom for a perceptual metric where PSNR anchors need
``tune=psnr``. The sweeps come from the measured reference table.
"""

from __future__ import annotations

import importlib
import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from licrt.runtime.errors import InternalError
from licrt.runtime.images import Photo


@dataclass(frozen=True)
class CodedAnchor:
    """One image coded and decoded by an anchor at one setting."""

    data: bytes
    decoded: np.ndarray
    encode_seconds: float
    decode_seconds: float


@dataclass(frozen=True)
class Anchor:
    """A classical codec with fixed options and a sweep of one setting.

    Attributes:
        name: Short identifier, e.g. ``"jpeg"``.
        label: Human-readable description for plots and tables.
        settings: The values of the sweep, in ascending order.
        setting_name: What the setting is: ``"quality"`` (higher is better)
            or ``"distance"`` (lower is better).
        library: Module imported before timing, so that a first call does
            not count the import as coding time.
        encode: Encodes an (H, W, 3) uint8 image at a setting.
        decode: Decodes the encoder's bytes back to an image.
    """

    name: str
    label: str
    settings: tuple[float, ...]
    setting_name: str
    library: str = field(repr=False)
    encode: Callable[[np.ndarray, float], bytes] = field(repr=False)
    decode: Callable[[bytes], np.ndarray] = field(repr=False)

    def code(self, image: np.ndarray, setting: float) -> CodedAnchor:
        """Encode and decode an image in memory, timing both steps.

        Args:
            image: An (H, W, 3) uint8 RGB image.
            setting: The quality or distance to code at.

        Returns:
            The bitstream, the decoded image and the wall-clock times.

        Raises:
            ImageError: The image is not an (H, W, 3) or (H, W) uint8 array (gray is coded as RGB).
            InternalError: The decoder returned another shape or dtype.
        """
        image = Photo(image).rgb
        importlib.import_module(self.library)
        started = time.perf_counter()
        data = bytes(self.encode(image, setting))
        encode_seconds = time.perf_counter() - started
        started = time.perf_counter()
        decoded = self.decode(data)
        decode_seconds = time.perf_counter() - started
        if decoded.shape != image.shape or decoded.dtype != np.uint8:
            raise InternalError(
                f"{self.name} at {self.setting_name} {setting} decoded to "
                f"{decoded.dtype}{list(decoded.shape)}, expected uint8{list(image.shape)}"
            )
        return CodedAnchor(data, decoded, encode_seconds, decode_seconds)


def _encode_jpeg(image: np.ndarray, quality: float) -> bytes:
    import imagecodecs

    return imagecodecs.jpeg8_encode(image, level=quality, subsampling="420", optimize=True)


def _decode_jpeg(data: bytes) -> np.ndarray:
    import imagecodecs

    return imagecodecs.jpeg8_decode(data)


def _encode_webp(image: np.ndarray, quality: float) -> bytes:
    import imagecodecs

    return imagecodecs.webp_encode(image, level=quality, lossless=False, method=6)


def _decode_webp(data: bytes) -> np.ndarray:
    import imagecodecs

    return imagecodecs.webp_decode(data)


def _encode_avif(image: np.ndarray, quality: float) -> bytes:
    # Pillow rather than imagecodecs: imagecodecs' avif_encode cannot pass
    # codec options, and the default libaom tune of libavif >= 1.4 is perceptual.
    buffer = io.BytesIO()
    Image.fromarray(image).save(
        buffer,
        format="AVIF",
        quality=quality,
        speed=4,
        subsampling="4:4:4",
        codec="aom",
        advanced={"tune": "psnr"},
    )
    return buffer.getvalue()


def _decode_avif(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def _encode_jxl(image: np.ndarray, distance: float) -> bytes:
    import imagecodecs

    return imagecodecs.jpegxl_encode(image, distance=distance, effort=7, lossless=False)


def _decode_jxl(data: bytes) -> np.ndarray:
    import imagecodecs

    return imagecodecs.jpegxl_decode(data)


ANCHORS: dict[str, Anchor] = {
    anchor.name: anchor
    for anchor in (
        Anchor(
            name="jpeg",
            label="JPEG (libjpeg-turbo, 4:2:0, optimised Huffman)",
            settings=(10, 20, 30, 40, 50, 60, 70, 80, 90, 95),
            setting_name="quality",
            library="imagecodecs",
            encode=_encode_jpeg,
            decode=_decode_jpeg,
        ),
        Anchor(
            name="webp",
            label="WebP (libwebp, lossy, method 6)",
            settings=(5, 15, 25, 35, 50, 65, 75, 85, 92, 97),
            setting_name="quality",
            library="imagecodecs",
            encode=_encode_webp,
            decode=_decode_webp,
        ),
        Anchor(
            name="avif",
            label="AVIF (libavif + libaom, 4:4:4, speed 4, tune PSNR)",
            settings=(20, 35, 45, 55, 65, 75, 82, 88, 93),
            setting_name="quality",
            library="PIL.AvifImagePlugin",
            encode=_encode_avif,
            decode=_decode_avif,
        ),
        Anchor(
            name="jxl",
            label="JPEG XL (libjxl, effort 7)",
            settings=(0.5, 0.8, 1.2, 1.8, 2.5, 3.5, 5.0, 7.0, 10.0),
            setting_name="distance",
            library="imagecodecs",
            encode=_encode_jxl,
            decode=_decode_jxl,
        ),
    )
}


def anchor_names() -> list[str]:
    """Names of the anchors, in their canonical order."""
    return list(ANCHORS)


def get_anchor(name: str) -> Anchor:
    """The anchor called ``name``.

    Raises:
        ValueError: No anchor has that name.
    """
    if name not in ANCHORS:
        raise ValueError(f"unknown anchor {name!r}; choose from {', '.join(ANCHORS)}")
    return ANCHORS[name]
