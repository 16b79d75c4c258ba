"""Fitting images of any size onto the static shapes of a bundle.

An image that fits a bucket is padded to the smallest such bucket (by area)
and cropped after decoding. An image larger than every bucket is cut into a
grid of tiles of one bucket's shape, the bucket that wastes the fewest padded
pixels; edge tiles are padded like small images. Tiles are coded
independently, so memory stays bounded by one tile whatever the image size.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from .errors import ImageError
from .manifest import Padding

MAX_TILES_PER_SIDE = 2**16 - 1


@dataclass(frozen=True)
class TileGrid:
    """How an image of ``height`` × ``width`` is laid onto one bucket's shape."""

    height: int
    width: int
    bucket: int
    tile_height: int
    tile_width: int
    rows: int
    cols: int

    def regions(self) -> Iterator[tuple[slice, slice]]:
        """Image slices of every tile, row-major (edge tiles may be smaller)."""
        for r in range(self.rows):
            for c in range(self.cols):
                top, left = r * self.tile_height, c * self.tile_width
                yield (
                    slice(top, min(top + self.tile_height, self.height)),
                    slice(left, min(left + self.tile_width, self.width)),
                )


def choose_grid(height: int, width: int, bucket_shapes: Sequence[tuple[int, int]]) -> TileGrid:
    """Pick the bucket and tile grid for an image.

    Raises:
        ImageError: the image is empty or would need more tiles than the
            container can describe.
    """
    if height < 1 or width < 1:
        raise ImageError(f"the image is empty ({height}x{width})")
    holding = [
        (bh * bw, index)
        for index, (bh, bw) in enumerate(bucket_shapes)
        if bh >= height and bw >= width
    ]
    if holding:
        _, index = min(holding)
    else:

        def padded_area(index: int) -> tuple[int, int]:
            bh, bw = bucket_shapes[index]
            tiles = math.ceil(height / bh) * math.ceil(width / bw)
            return tiles * bh * bw, tiles

        index = min(range(len(bucket_shapes)), key=padded_area)
    bh, bw = bucket_shapes[index]
    rows, cols = math.ceil(height / bh), math.ceil(width / bw)
    if rows > MAX_TILES_PER_SIDE or cols > MAX_TILES_PER_SIDE:
        raise ImageError(f"the image ({height}x{width}) is too large for this bundle's buckets")
    return TileGrid(height, width, index, bh, bw, rows, cols)


def _offsets(size: int, target: int, padding: Padding) -> tuple[int, int]:
    before = (target - size) // 2 if padding.anchor == "center" else 0
    return before, target - size - before


def pad(tile: np.ndarray, height: int, width: int, padding: Padding) -> np.ndarray:
    """Pad an (h, w, C) array to (height, width, C) by the bundle's padding rule."""
    top, bottom = _offsets(tile.shape[0], height, padding)
    left, right = _offsets(tile.shape[1], width, padding)
    mode = "edge" if padding.mode == "replicate" else "constant"
    return np.pad(tile, ((top, bottom), (left, right), (0, 0)), mode=mode)


def crop(padded: np.ndarray, height: int, width: int, padding: Padding) -> np.ndarray:
    """Undo :func:`pad`: cut the (height, width) image out of a padded (H, W, C) array."""
    top, _ = _offsets(height, padded.shape[0], padding)
    left, _ = _offsets(width, padded.shape[1], padding)
    return padded[top : top + height, left : left + width]
