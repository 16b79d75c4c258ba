"""How much work a file or an image may ask for, checked before the work starts.

A compressed file states its image size and tile grid in its header, and an
image file states its size before its pixels are decoded; both are checked
against :class:`Limits` first, so a hostile input is refused in a moment with
a few bytes read, whatever it claims. The defaults are generous for real
photos: 2²⁸ pixels is a 16384×16384 image.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import LimitError

DEFAULT_MAX_PIXELS = 2**28
DEFAULT_MAX_TILES = 2**14
#: Images up to 16 MP are one region (see :meth:`licrt.runtime.tiling.TileGrid.regions`).
DEFAULT_MAX_REGION_PIXELS = 2**24


@dataclass(frozen=True)
class Limits:
    """Upper bounds on what one image may cost.

    Args:
        max_pixels: Pixels of the image (height × width); the decoded image
            takes 3 bytes per pixel.
        max_tiles: Tiles or windows the image is coded in; each costs one
            pass through every stage graph at its bucket's size, so this
            bounds time.
        max_region_pixels: Pixels of a region of windows, on average (see
            :meth:`licrt.runtime.tiling.TileGrid.regions`): a coder holds one
            region's latents, entropy parameters and symbols at a time, ~28
            bytes per pixel, so this bounds memory. An encoder codes an image
            in as few regions as keep within it; where regions meet, the
            hyperprior and the context start afresh, which costs bits.
    """

    max_pixels: int = DEFAULT_MAX_PIXELS
    max_tiles: int = DEFAULT_MAX_TILES
    max_region_pixels: int = DEFAULT_MAX_REGION_PIXELS

    def __post_init__(self):
        if self.max_pixels < 1 or self.max_tiles < 1 or self.max_region_pixels < 1:
            raise ValueError(f"limits must be positive: {self}")

    def check_pixels(self, height: int, width: int, what: str = "the image") -> None:
        """Raise :class:`LimitError` if an image of height × width is over the pixel limit."""
        if height * width > self.max_pixels:
            raise LimitError(f"{what} is {width}x{height} ({height * width:,} pixels), more than the limit of "
                             f"{self.max_pixels:,} pixels (max_pixels, --max-pixels)")

    def check_tiles(self, tiles: int, what: str = "the image", parts: str = "tiles") -> None:
        """Raise :class:`LimitError` if an image is coded in more tiles (or windows: ``parts``) than allowed."""
        if tiles > self.max_tiles:
            raise LimitError(f"{what} is coded in {tiles:,} {parts}, more than the limit of {self.max_tiles:,} "
                             "(max_tiles, --max-tiles)")

    def check_region(self, pixels: int, what: str = "the file's image") -> None:
        """Raise :class:`LimitError` if an image is coded in regions of more pixels than allowed."""
        if pixels > self.max_region_pixels:
            raise LimitError(f"{what} is coded in regions of {pixels:,} pixels, more than the limit of "
                             f"{self.max_region_pixels:,} (max_region_pixels, --max-region-pixels)")
