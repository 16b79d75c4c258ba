"""Reading and writing images and files, safely.

Outputs are written atomically: into a temporary file beside the target,
then renamed over it, so a failure never leaves a half-written file.
"""

from __future__ import annotations

import io
import os
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError, LicrtError, LimitError
from .limits import Limits

#: File extensions taken as images when a folder is listed.
IMAGE_EXTENSIONS = (".bmp", ".jpeg", ".jpg", ".png", ".ppm", ".tif", ".tiff", ".webp")

#: Pillow modes that convert to RGB or gray without losing information, and those of them that are gray.
_CONVERTIBLE_MODES = {"RGB", "L", "P", "CMYK", "YCbCr", "1"}
_GRAY_MODES = {"L", "1"}
#: Pillow's modes of images with an alpha channel.
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
#: 16-bit gray (Pillow reads 16-bit RGB as 8-bit RGB, keeping each sample's high byte; licrt does the same here).
_GRAY_16 = {"I;16", "I;16B", "I;16L", "I"}
#: The EXIF orientation tag, and its values that turn the image a quarter (its width becomes its height).
ORIENTATION = 0x0112
_QUARTER_TURNS = {5, 6, 7, 8}


@dataclass(frozen=True)
class Photo:
    """An image as licrt codes it: 8-bit RGB (H, W, 3) or gray (H, W), and the ICC profile it came with."""

    pixels: np.ndarray
    icc_profile: bytes = b""

    def __post_init__(self):
        object.__setattr__(self, "pixels", check_pixels(self.pixels))

    @property
    def gray(self) -> bool:
        return self.pixels.ndim == 2

    @property
    def rgb(self) -> np.ndarray:
        """The pixels as (H, W, 3), gray as R = G = B."""
        return np.repeat(self.pixels[..., None], 3, axis=2) if self.gray else self.pixels


def read_photo(path: str | Path, check_size: Callable[[int, int], object] | None = None) -> Photo:
    """Read an image file upright, as 8-bit RGB or gray, with its ICC profile.

    As photos come: the EXIF orientation is applied; an alpha channel that is
    opaque everywhere is dropped; 16-bit samples keep their high byte (licrt
    codes 8 bits per sample); gray stays gray.

    Args:
        check_size: Called with the image's height and width as it will be
            coded (oriented), before its pixels are decoded; raises to refuse
            it. By default the pixel count is held to :class:`Limits`' default.

    Raises:
        ImageError: the file is missing or unreadable, has transparent
            pixels, or a pixel mode licrt does not read.
        LimitError: the image is over the limits.
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():  # licrt applies its own limit; Pillow's warning would add noise
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
        with image:
            width, height = image.size
            if image.getexif().get(ORIENTATION) in _QUARTER_TURNS:
                width, height = height, width
            (check_size or Limits().check_pixels)(height, width)
            image.load()
            pixels = _to_rgb_or_gray(ImageOps.exif_transpose(image), path)
            return Photo(np.asarray(pixels, dtype=np.uint8), image.info.get("icc_profile") or b"")
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a directory, not an image") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image file Pillow can read") from None
    except Image.DecompressionBombError as exc:
        raise LimitError(f"{path}: {exc} (Pillow's limit, PIL.Image.MAX_IMAGE_PIXELS)") from None
    except (OSError, ValueError) as exc:
        raise ImageError(f"{path}: cannot read image ({exc})") from None


def read_image(path: str | Path, check_size: Callable[[int, int], object] | None = None) -> np.ndarray:
    """Read an image file as an (H, W, 3) uint8 RGB array (see :func:`read_photo`; gray becomes R = G = B)."""
    return read_photo(path, check_size).rgb


def _to_rgb_or_gray(image: Image.Image, path: Path) -> Image.Image:
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in _ALPHA_MODES:
        low, _ = image.getchannel("A").getextrema()
        if low < 255:
            raise ImageError(f"{path}: the image has transparent pixels, which licrt cannot code; flatten it "
                             "onto a background first")
        image = image.convert("RGB" if image.mode.startswith(("RGB", "P")) else "L")
    if image.mode in _GRAY_16:
        samples = np.asarray(image)
        if samples.min() < 0 or samples.max() > 0xFFFF:  # mode I holds 32-bit integers: not a 16-bit image
            raise ImageError(f"{path}: {image.mode} samples outside 0..65535 are not supported")
        image = Image.fromarray((samples.astype(np.uint32) >> 8).astype(np.uint8), "L")
    if image.mode not in _CONVERTIBLE_MODES:
        raise ImageError(f"{path}: pixel mode {image.mode} is not supported (RGB or gray, 8 or 16 bits)")
    return image.convert("L" if image.mode in _GRAY_MODES else "RGB")


def list_images(folder: str | Path) -> list[Path]:
    """Every image file under folder, recursively, sorted (so runs are reproducible).

    Raises:
        ImageError: the folder is missing or holds no images.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageError(f"{folder} does not exist or is not a folder")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not files:
        raise ImageError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {folder}")
    return files


def check_pixels(array: np.ndarray) -> np.ndarray:
    """Return array as a contiguous (H, W, 3) RGB or (H, W) gray uint8 array, or raise ImageError."""
    array = np.asarray(array)
    if array.dtype != np.uint8 or not (array.ndim == 2 or array.ndim == 3 and array.shape[2] == 3):
        raise ImageError(
            f"expected an (H, W, 3) RGB or (H, W) gray uint8 array, got {array.dtype}{list(array.shape)}"
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ImageError(f"the image is empty ({array.shape[0]}x{array.shape[1]})")
    return np.ascontiguousarray(array)


def encode_image(photo: Photo, path: str | Path) -> bytes:
    """Encode a photo in the format the file name asks for (PNG, JPEG, ...), with its ICC profile where the
    format holds one."""
    buffer = io.BytesIO()
    options = {"icc_profile": photo.icc_profile} if photo.icc_profile else {}
    try:
        Image.fromarray(photo.pixels, "L" if photo.gray else "RGB").save(
            buffer, format=image_format(Path(path)), **options)
    except (KeyError, ValueError, OSError) as exc:
        raise ImageError(f"{path}: cannot write this image format ({exc})") from None
    return buffer.getvalue()


def image_format(path: Path) -> str:
    """Pillow's format name for a file name's extension, or ImageError."""
    extension = path.suffix.lower()
    formats = Image.registered_extensions()
    if extension not in formats:
        raise ImageError(
            f"{path}: unknown image extension {extension or '(none)'}; use e.g. .png"
        )
    return formats[extension]


def check_output(output: Path, source: Path, force: bool = False) -> None:
    """Before any work: refuse an output that is the source, that exists (unless ``force``), or whose folder
    is missing or not writable.

    Raises:
        LicrtError: saying which.
    """
    if output.exists() and source.exists() and os.path.samefile(output, source):
        raise LicrtError(f"{output} is the input file; write the output elsewhere")
    if output.is_dir():
        raise LicrtError(f"{output} is a folder; give a file name")
    if output.exists() and not force:
        raise LicrtError(f"{output} exists; add --force to overwrite it")
    folder = output.parent
    if not folder.is_dir():
        raise LicrtError(f"cannot write {output}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise LicrtError(f"cannot write {output}: folder {folder} is not writable")


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write bytes to path via a temporary file and a rename.

    The file gets the permissions a plain ``open(path, "wb")`` would give it.

    Raises:
        LicrtError: the directory does not exist or is not writable.
    """
    path = Path(path)
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as exc:
        raise LicrtError(f"cannot write {path}: {exc.strerror}") from None
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, path)
    except BaseException as exc:
        os.unlink(temporary)
        if isinstance(exc, OSError):
            raise LicrtError(f"cannot write {path}: {exc.strerror}") from None
        raise
