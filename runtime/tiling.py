"""Fitting images of any size onto the static shapes of a bundle.

An image is laid onto a grid of the bundle's bucket shapes, the grid that
processes the fewest pixels (:func:`choose_grid`), in one of two ways:

* **Windows** (codecs without a raster pass): the image is padded to the
  grid's canvas and every stage graph runs window by window
  (:mod:`licrt.runtime.stages`). Neighbouring windows overlap by twice
  :data:`WINDOW_MARGIN`; each keeps its part of the outputs, away from the
  edges its graphs zero-pad. The transforms g_a and g_s run over the whole
  canvas, so pixels have no seams; the entropy path (hyperprior and context)
  runs region by region (:meth:`TileGrid.regions`, blocks of windows, as
  few as keep within a limit of pixels: :func:`choose_regions`), each region
  coded as one section, so that what a coder holds is bounded by a region
  whatever the image size. An image within the limit is one region: its
  latents, entropy parameters and pixels are those of the whole image.
* **Tiles** (a raster pass cannot run window by window): tiles side by side,
  each padded to its shape where the image ends, coded independently and
  cropped after decoding.

Padding costs time, not bits: a latent whose block of pixels lies wholly in
the padding is not coded (see :class:`ImageArea`); both sides know where the
image lies in each tile from the file's header.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from .errors import ImageError
from .manifest import Padding

MAX_TILES_PER_SIDE = 2**16 - 1
#: How far a window reaches past the part of the canvas it keeps, on each side that has a neighbour (pixels): a
#: multiple of the image stride's half, and where running the stages window by window comes close to one run over
#: the whole image (bench/results/window-margin.json).
WINDOW_MARGIN = 32
#: The largest window a grid of several windows uses (pixels): larger ones run slower per pixel and hold more
#: memory (a 12 MP photo in 1920x1088 windows: 2.8 s/MP and 2.3 GiB; in 512x768 windows: 2.5 s/MP and 1.3 GiB,
#: as many pixels processed). An image one bucket holds is one window of any size.
MAX_WINDOW_PIXELS = 512 * 768
#: What one more tile weighs against padded pixels when a grid is chosen (a 128² square): a tile's borders
#: cost bits (its context and hyperprior start afresh) and its stage graphs a fixed time.
TILE_COST = 128 * 128
#: Sides of the shapes export writes by default besides 512x768, 768x512, 1088x1920 and 1920x1088: every
#: multiple of 64 from 256 up is a sum of them with at most two distinct terms, so a grid of these shapes can
#: pad less than 64 pixels per side (see :func:`choose_grid`, which may pad more to save tiles).
FITTING_SIDES = (256, 320, 384, 448)
DEFAULT_SHAPES = (*((h, w) for h in FITTING_SIDES for w in FITTING_SIDES),
                  (512, 768), (768, 512), (1088, 1920), (1920, 1088))


@dataclass(frozen=True)
class Tile:
    """One tile of a grid: the image slices it holds and the bucket whose shape it is coded at."""

    rows: slice
    cols: slice
    bucket: int
    shape: tuple[int, int]


@dataclass(frozen=True)
class Window:
    """One window of a grid: the canvas pixels it covers, from (``top``, ``left``) over its bucket's ``shape``,
    and the canvas rows and columns [start, stop) whose outputs it keeps."""

    top: int
    left: int
    shape: tuple[int, int]
    bucket: int
    keep_rows: tuple[int, int]
    keep_cols: tuple[int, int]


@dataclass(frozen=True)
class Rect:
    """Canvas rows [top, bottom) and columns [left, right)."""

    top: int
    left: int
    bottom: int
    right: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.bottom - self.top, self.right - self.left


@dataclass(frozen=True)
class Region:
    """A block of a grid's windows whose entropy path is coded as one section: ``rect`` is what their kept
    parts cover."""

    windows: tuple[Window, ...]
    rect: Rect


def kept_rect(windows: tuple[Window, ...] | list[Window]) -> Rect:
    """What the kept parts of a block of windows cover."""
    return Rect(min(w.keep_rows[0] for w in windows), min(w.keep_cols[0] for w in windows),
                max(w.keep_rows[1] for w in windows), max(w.keep_cols[1] for w in windows))


def _groups(count: int, groups: int) -> list[range]:
    """``count`` windows along an axis in ``groups`` groups of consecutive ones, as even as can be."""
    sizes = [count // groups + (index < count % groups) for index in range(groups)]
    starts = [sum(sizes[:index]) for index in range(groups)]
    return [range(start, start + size) for start, size in zip(starts, sizes, strict=True)]


def _spans(sizes: tuple[int, ...], overlap: int) -> list[tuple[int, int, int]]:
    """(start, keep start, keep stop) of windows of ``sizes`` laid along an axis, each overlapping the previous
    by ``overlap`` and keeping up to the middle of each overlap."""
    spans, start = [], 0
    for index, size in enumerate(sizes):
        keep_start = 0 if index == 0 else start + overlap // 2
        keep_stop = start + size - (overlap // 2 if index < len(sizes) - 1 else 0)
        spans.append((start, keep_start, keep_stop))
        start += size - overlap
    return spans


@dataclass(frozen=True)
class TileGrid:
    """How an image of ``height`` × ``width`` is laid onto a bundle's bucket shapes: rows of ``row_heights``,
    columns of ``col_widths``; side by side as tiles (``overlap`` 0), or as windows overlapping their
    neighbours by ``overlap`` pixels."""

    height: int
    width: int
    row_heights: tuple[int, ...]
    col_widths: tuple[int, ...]
    #: The bucket of every tile or window, row-major.
    buckets: tuple[int, ...]
    overlap: int = 0
    #: Rows and columns of regions of a grid of windows (see :meth:`regions`; (1, 1) for tiles).
    region_grid: tuple[int, int] = (1, 1)

    @property
    def windowed(self) -> bool:
        return self.overlap > 0

    @property
    def canvas(self) -> tuple[int, int]:
        """(height, width) the grid covers: the image and its padding."""
        return (sum(self.row_heights) - self.overlap * (self.rows - 1),
                sum(self.col_widths) - self.overlap * (self.cols - 1))

    def borders(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The rows and columns (canvas pixels) where one tile, or one window's kept part, meets the next: the
        first row or column of the later one."""
        return tuple(tuple(stop for _, _, stop in _spans(sizes, self.overlap)[:-1])
                     for sizes in (self.row_heights, self.col_widths))

    def windows(self) -> Iterator[Window]:
        """Every window, row-major."""
        buckets = iter(self.buckets)
        for height, (top, *keep_rows) in zip(self.row_heights, _spans(self.row_heights, self.overlap), strict=True):
            for width, (left, *keep_cols) in zip(self.col_widths, _spans(self.col_widths, self.overlap), strict=True):
                yield Window(top, left, (height, width), next(buckets), tuple(keep_rows), tuple(keep_cols))

    def regions(self) -> list[list[Region]]:
        """A grid of windows' regions (:attr:`region_grid`), in rows: blocks of consecutive windows, the grid's
        rows and columns of windows shared out among them as evenly as can be."""
        windows = list(self.windows())
        region_rows, region_cols = self.region_grid
        return [[Region(block := tuple(windows[row * self.cols + col] for row in rows for col in cols),
                        kept_rect(block))
                 for cols in _groups(self.cols, region_cols)]
                for rows in _groups(self.rows, region_rows)]

    @property
    def region_pixels(self) -> int:
        """Canvas pixels per region, on average."""
        return -(-self.canvas[0] * self.canvas[1] // (self.region_grid[0] * self.region_grid[1]))

    def window_rows(self) -> list[tuple[Window, ...]]:
        """A grid of windows' windows, row by row."""
        windows = list(self.windows())
        return [tuple(windows[row * self.cols : (row + 1) * self.cols]) for row in range(self.rows)]

    @property
    def rows(self) -> int:
        return len(self.row_heights)

    @property
    def cols(self) -> int:
        return len(self.col_widths)

    @property
    def bucket(self) -> int:
        """The first tile's bucket (what a file's header records)."""
        return self.buckets[0]

    @property
    def coded_pixels(self) -> int:
        """Pixels the stage graphs process: the image, its padding, and windows' overlaps as often as they
        are run."""
        return sum(self.row_heights) * sum(self.col_widths)

    def tiles(self) -> Iterator[Tile]:
        """Every tile of a grid of tiles, row-major (edge tiles may hold less than their shape)."""
        buckets = iter(self.buckets)
        top = 0
        for tile_height in self.row_heights:
            left = 0
            for tile_width in self.col_widths:
                yield Tile(slice(top, min(top + tile_height, self.height)),
                           slice(left, min(left + tile_width, self.width)), next(buckets), (tile_height, tile_width))
                left += tile_width
            top += tile_height


def choose_regions(grid: TileGrid, max_pixels: int) -> tuple[int, int]:
    """Rows and columns of regions a grid of windows is coded in: of those that hold ``max_pixels`` canvas
    pixels each at most on average, the ones whose borders are shortest (where regions meet, the hyperprior and
    the context start afresh, which costs bits in proportion: bench/results/regions.json), then the fewest; as
    many as windows at most."""
    height, width = grid.canvas
    candidates = [(rows, -(-height * width // (rows * max_pixels))) for rows in range(1, grid.rows + 1)]
    candidates = [(rows, cols) for rows, cols in candidates if cols <= grid.cols] or [(grid.rows, grid.cols)]
    return min(candidates, key=lambda shape: ((shape[0] - 1) * width + (shape[1] - 1) * height, shape))


def _cover(length: int, main: int, last: int, overlap: int = 0) -> tuple[int, ...] | None:
    """The fewest ``main`` sides, then one ``last``, that cover ``length``, each side overlapping the previous
    by ``overlap`` (None if ``last`` would hold nothing, or ``main`` is no longer than the overlap)."""
    if length <= last:
        return (last,)
    if main <= overlap:  # a window would keep nothing
        return None
    count = -(-(length - last) // (main - overlap))
    return None if count * (main - overlap) + overlap >= length else (main,) * count + (last,)


def _covers(length: int, sides: list[int], overlap: int) -> list[tuple[int, ...]]:
    """Every way to cover ``length`` with :func:`_cover`, in a fixed order."""
    covers = (_cover(length, main, last, overlap) for main, last in itertools.product(sides, sides))
    return list(dict.fromkeys(cover for cover in covers if cover is not None))


@functools.lru_cache(maxsize=1024)  # ~3 ms per image otherwise, on both sides
def choose_grid(height: int, width: int, bucket_shapes: tuple[tuple[int, int], ...], overlap: int = 0) -> TileGrid:
    """Pick the grid for an image: the one that processes the fewest pixels, each tile or window weighing
    :data:`TILE_COST` more (so an image a bucket holds well stays one).

    Rows are some of one height and a last row of another (or the same) height, columns likewise, each
    overlapping the previous by ``overlap`` (0: tiles side by side; windows: ``2 * WINDOW_MARGIN``, of at most
    :data:`MAX_WINDOW_PIXELS` where there are several); every shape a grid uses must be a bucket (one
    bucket's shape alone always qualifies). Encoder and decoder both derive the grid from the image size and
    the bucket shapes.

    Raises:
        ImageError: the image is empty or would need more tiles than the
            container can describe.
    """
    if height < 1 or width < 1:
        raise ImageError(f"the image is empty ({height}x{width})")
    index = {shape: i for i, shape in enumerate(bucket_shapes)}
    heights = sorted({h for h, _ in bucket_shapes})
    widths = sorted({w for _, w in bucket_shapes})
    row_covers = _covers(height, heights, overlap)
    col_covers = _covers(width, widths, overlap)
    best = None
    for row_heights, col_widths in itertools.product(row_covers, col_covers):
        if any((h, w) not in index for h in set(row_heights) for w in set(col_widths)):
            continue
        tiles = len(row_heights) * len(col_widths)
        if overlap and tiles > 1 and max(row_heights) * max(col_widths) > MAX_WINDOW_PIXELS:
            continue
        cost = (sum(row_heights) * sum(col_widths) + TILE_COST * tiles, tiles)
        if best is None or cost < best[0]:
            best = cost, row_heights, col_widths
    _, row_heights, col_widths = best
    if len(row_heights) > MAX_TILES_PER_SIDE or len(col_widths) > MAX_TILES_PER_SIDE:
        raise ImageError(f"the image ({height}x{width}) is too large for this bundle's buckets")
    buckets = tuple(index[h, w] for h in row_heights for w in col_widths)
    return TileGrid(height, width, row_heights, col_widths, buckets, overlap)


@dataclass(frozen=True)
class ImageArea:
    """Where a tile's image pixels lie in its padded, bucket-shaped input: rows [top, top + height), columns
    [left, left + width) of a tile of ``shape``."""

    top: int
    left: int
    height: int
    width: int
    shape: tuple[int, int]

    def within(self, rect: Rect, shape: tuple[int, int]) -> ImageArea:
        """Where this area's image lies in a tile of ``shape`` that holds ``rect`` of this area's tile at its
        top-left."""
        top, left = max(self.top, rect.top), max(self.left, rect.left)
        bottom, right = min(self.top + self.height, rect.bottom), min(self.left + self.width, rect.right)
        return ImageArea(top - rect.top, left - rect.left, bottom - top, right - left, shape)

    def latent_mask(self, rows: int, cols: int) -> np.ndarray:
        """(rows, cols) mask of the latents of a (rows, cols) latent map of this tile that are coded: those
        whose block of pixels overlaps the image. The others lie wholly in the padding: they are not coded and
        read as zero, on both sides."""
        block_height, block_width = self.shape[0] // rows, self.shape[1] // cols
        mask = np.zeros((rows, cols), dtype=bool)
        mask[self.top // block_height : -(-(self.top + self.height) // block_height),
             self.left // block_width : -(-(self.left + self.width) // block_width)] = True
        return mask


def image_area(height: int, width: int, shape: tuple[int, int], padding: Padding) -> ImageArea:
    """Where :func:`pad` puts a (height, width) tile of the image in a tile of ``shape``."""
    return ImageArea(*image_offsets(height, width, shape, padding), height, width, shape)


def image_offsets(height: int, width: int, shape: tuple[int, int], padding: Padding) -> tuple[int, int]:
    """Where :func:`pad` puts the first row and column of a (height, width) image in a tile of ``shape``."""
    return _offsets(height, shape[0], padding)[0], _offsets(width, shape[1], padding)[0]


def _offsets(size: int, target: int, padding: Padding) -> tuple[int, int]:
    before = (target - size) // 2 if padding.anchor == "center" else 0
    return before, target - size - before


def pad(tile: np.ndarray, height: int, width: int, padding: Padding) -> np.ndarray:
    """Pad an (h, w, C) array to (height, width, C) by the bundle's padding rule."""
    top, bottom = _offsets(tile.shape[0], height, padding)
    left, right = _offsets(tile.shape[1], width, padding)
    return pad_by(tile, (top, left), (bottom, right), padding)


def pad_by(tile: np.ndarray, before: tuple[int, int], after: tuple[int, int], padding: Padding) -> np.ndarray:
    """Pad an (h, w, C) array by (rows, columns) ``before`` and ``after`` it, by the bundle's padding mode."""
    if not any(before) and not any(after):
        return tile
    mode = "edge" if padding.mode == "replicate" else "constant"
    return np.pad(tile, ((before[0], after[0]), (before[1], after[1]), (0, 0)), mode=mode)


def crop(padded: np.ndarray, height: int, width: int, padding: Padding) -> np.ndarray:
    """Undo :func:`pad`: cut the (height, width) image out of a padded (H, W, C) array."""
    top, _ = _offsets(height, padded.shape[0], padding)
    left, _ = _offsets(width, padded.shape[1], padding)
    return padded[top : top + height, left : left + width]


def extend_edges(y_hat: np.ndarray, coded: np.ndarray) -> np.ndarray:
    """ŷ (1, M, h, w) as g_s takes it: the latents outside the ``coded`` (h, w) mask (see
    :meth:`ImageArea.latent_mask`) take the value of the nearest coded one, as the padding g_a saw repeats
    the image's edge (bench/results/padding-band.json). Only the decoder runs g_s, so this decides no
    coded symbol."""
    if coded.all():
        return y_hat
    rows, cols = np.flatnonzero(coded.any(axis=1)), np.flatnonzero(coded.any(axis=0))
    inside = y_hat[..., rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    height, width = coded.shape
    return np.pad(inside, ((0, 0), (0, 0), (rows[0], height - 1 - rows[-1]), (cols[0], width - 1 - cols[-1])),
                  mode="edge")
