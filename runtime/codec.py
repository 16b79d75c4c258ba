"""The public entry point: turn pixels into bytes and back with a bundle.

Example:
    >>> from licrt.runtime import Codec
    >>> codec = Codec.open("bundle")                         # doctest: +SKIP
    >>> data = codec.compress("photo.png")                   # doctest: +SKIP
    >>> image = codec.decompress(data)   # (H, W, 3) uint8   # doctest: +SKIP
    >>> smaller = codec.compress("photo.png", quality=1)     # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import BinaryIO

import numpy as np
from tqdm import tqdm

from .backends import Backend, open_backend
from .bundle import DEFAULT_BUNDLE, Bundle
from .container import GRAY, MAX_HEADER_SIZE, MAX_ICC_PROFILE, RGB, Container, Header, TileSection, section_framing
from .errors import BitstreamError, ImageError, LicrtError
from .images import Photo, read_photo
from .limits import Limits
from .regions import RegionCoder
from .scheduler import CodedTile, TileCoder
from .stages import BucketStages, Convert, Pixels
from .tiling import (WINDOW_MARGIN, ImageArea, Rect, Tile, TileGrid, choose_grid, choose_regions, crop, image_area,
                     image_offsets)

#: Ends the profile a file records when it was encoded without the guard.
UNGUARDED = " guard=off"
#: Coders of grids a codec keeps (one per image size seen lately).
MAX_CODERS = 64


@dataclass(frozen=True)
class FileReport:
    """What a compressed file holds, as decoded with a bundle."""

    container: Container
    grid: TileGrid
    #: −Σ log2 p per pass name, summed over tiles.
    bits_per_pass: dict[str, float]
    symbols_per_pass: dict[str, int]
    #: What the guard's side streams cost per pass, in bits, and how many decisions they record.
    side_bits_per_pass: dict[str, float]
    guarded_per_pass: dict[str, int]

    @property
    def side_bits(self) -> float:
        """What the file's side streams cost, in bits."""
        return sum(self.side_bits_per_pass.values())

    @property
    def guarded(self) -> int:
        """How many decisions the file's side streams record."""
        return sum(self.guarded_per_pass.values())


class Codec:
    """Compresses images with one bundle on one backend.

    Args:
        bundle: An opened :class:`Bundle`; its level is the quality used when none is asked for.
        backend: The backend that runs its stage graphs.
        limits: What one image may cost; checked before any work, for images
            to compress and files to decompress alike.
        guard: Record the coding decisions that another backend could take
            differently (see :mod:`licrt.runtime.guard`), so that files decode
            on every backend. Off, a file decodes only where the floats agree
            with the encoder's; for measuring what the guard prevents.
    """

    def __init__(self, bundle: Bundle, backend: Backend, limits: Limits | None = None, guard: bool = True):
        self.bundle = bundle
        self.backend = backend
        self.limits = Limits() if limits is None else limits
        self.guard = guard
        self._stages: dict[tuple[int, int], BucketStages] = {}
        self._coders: dict[tuple[int, int | TileGrid], TileCoder | RegionCoder] = {}
        self._overlap = grid_overlap(bundle)

    @classmethod
    def open(
        cls, bundle: str | Path | Bundle | None = None, backend: str | Backend = "auto", limits: Limits | None = None,
        guard: bool = True,
    ) -> Codec:
        """Open a bundle directory (or take an opened one) on a backend by name.

        ``None`` opens the default bundle shipped with licrt.
        """
        if not isinstance(bundle, Bundle):
            bundle = Bundle.open(DEFAULT_BUNDLE if bundle is None else bundle)
        if not isinstance(backend, Backend):
            backend = open_backend(backend)
        return cls(bundle, backend, limits, guard)

    @property
    def qualities(self) -> list[str]:
        """The bundle's quality levels by name; ``quality=N`` asks for the N-th (1: the lowest rate)."""
        return [level.name for level in self.bundle.manifest.levels]

    def _level(self, quality: int | None) -> int:
        """The level index of a quality (1-based; None: the bundle's level)."""
        if quality is None:
            return self.bundle.level
        levels = self.qualities
        if not 1 <= quality <= len(levels):
            names = ", ".join(f"{index} ({name})" for index, name in enumerate(levels, 1))
            raise LicrtError(f"quality {quality} is not one of this bundle's levels: {names}")
        return quality - 1

    def _bucket_stages(self, level: int, bucket: int) -> BucketStages:
        if (level, bucket) not in self._stages:
            self._stages[level, bucket] = BucketStages(self.bundle.at_level(level),
                                                       self.bundle.manifest.buckets[bucket], self.backend)
        return self._stages[level, bucket]

    def _coder(self, level: int, key: int | TileGrid) -> TileCoder | RegionCoder:
        """The coder of a bucket's tiles, or of a grid of windows."""
        if (level, key) not in self._coders:
            if len(self._coders) >= MAX_CODERS:  # a long-running codec sees ever new image sizes
                self._coders = {k: coder for k, coder in self._coders.items() if isinstance(k[1], int)}
            bundle = self.bundle.at_level(level)
            if isinstance(key, int):
                coder = TileCoder(bundle, self._bucket_stages(level, key), self.guard)
            else:
                area = image_area(key.height, key.width, key.canvas, self.bundle.manifest.padding)
                coder = RegionCoder(bundle, key, area, partial(self._bucket_stages, level), self.guard)
            self._coders[level, key] = coder
        return self._coders[level, key]

    def _tiles(self, grid: TileGrid, level: int) -> list[tuple[Tile, ImageArea, TileCoder]]:
        """Every tile of a grid of tiles, row-major, with where the image lies in it and its coder."""
        padding = self.bundle.manifest.padding
        return [(tile, image_area(tile.rows.stop - tile.rows.start, tile.cols.stop - tile.cols.start, tile.shape,
                                  padding), self._coder(level, tile.bucket)) for tile in grid.tiles()]

    def _max_payloads(self, grid: TileGrid, level: int) -> list[int]:
        """The most bytes each section's payload can hold."""
        if grid.windowed:
            return self._coder(level, grid).max_payloads
        return [coder.max_payload for _, _, coder in self._tiles(grid, level)]

    def grid(self, height: int, width: int, what: str = "the image") -> TileGrid:
        """The grid an image of height × width is coded on: windows in as few regions as the limits allow, or
        tiles (see :func:`grid_overlap`).

        Raises:
            LimitError: the image is over the limits (``what`` names it).
        """
        grid = self._grid(height, width, what)
        if not grid.windowed:
            return grid
        grid = dataclasses.replace(grid, region_grid=choose_regions(grid, self.limits.max_region_pixels))
        self.limits.check_region(grid.region_pixels, what)  # a limit below one window's part
        return grid

    def _grid(self, height: int, width: int, what: str) -> TileGrid:
        """The grid of windows (in one region) or tiles for an image, within the limits on pixels and parts."""
        self.limits.check_pixels(height, width, what)
        grid = choose_grid(height, width, self.bundle.bucket_shapes, self._overlap)
        self.limits.check_tiles(grid.rows * grid.cols, what, "windows" if grid.windowed else "tiles")
        return grid

    def compress(self, image: str | Path | np.ndarray | Photo, *, quality: int | None = None,
                 progress: bool = False) -> bytes:
        """Compress an image file, an (H, W, 3) RGB or (H, W) gray uint8 array, or a :class:`Photo` to bytes.

        Args:
            quality: The bundle's quality level, 1 (lowest rate) to ``len(qualities)``; the file records it.
                Default: the bundle's default level.

        Raises:
            LicrtError: the bundle has no such quality level.
            ImageError: the image cannot be read or is not 8-bit RGB/gray, or
                its ICC profile is larger than a file carries.
            LimitError: the image has more pixels or needs more tiles than
                the limits allow (checked before its pixels are decoded).
            CodingError: the model produces latents that cannot be coded.
        """
        level = self._level(quality)
        if isinstance(image, (str, Path)):
            photo = read_photo(image, check_size=lambda height, width: self.grid(height, width, str(image)))
        else:
            photo = image if isinstance(image, Photo) else Photo(image)
        if len(photo.icc_profile) > MAX_ICC_PROFILE:
            raise ImageError(f"the image's ICC profile has {len(photo.icc_profile):,} bytes, more than a licrt file "
                             f"carries ({MAX_ICC_PROFILE:,})")
        pixels = photo.rgb
        height, width = pixels.shape[:2]
        grid = self.grid(height, width, "the image")
        padding = self.bundle.manifest.padding
        if grid.windowed:
            coder = self._coder(level, grid)
            with _progress(grid, coder.runs(encode=True), [coder], progress, "compress"):
                coded = list(coder.encode(Pixels(pixels, grid.canvas, padding)))
        else:
            tiles = self._tiles(grid, level)
            runs = sum(coder.runs(True, area=area) for _, area, coder in tiles)
            with _progress(grid, runs, [coder for _, _, coder in tiles], progress, "compress"):
                coded = [coder.encode(Pixels(pixels[tile.rows, tile.cols], tile.shape, padding), area)
                         for tile, area, coder in tiles]
        sections = [TileSection(part.payload, part.digests) for part in coded]
        header = Header(
            contract=self.bundle.contract,
            profile=self.backend.profile + ("" if self.guard else UNGUARDED),
            height=height,
            width=width,
            bucket=grid.bucket,
            tile_rows=grid.rows,
            tile_cols=grid.cols,
            passes=1 + len(self.bundle.manifest.schedule.steps),
            level=level,
            colour=GRAY if photo.gray else RGB,
            icc_profile=photo.icc_profile,
            windowed=grid.windowed,
            regions=grid.region_grid,
        )
        return Container(header, tuple(sections)).to_bytes()

    def decompress(self, data: bytes | str | Path, *, progress: bool = False) -> np.ndarray:
        """Decompress a file made by :meth:`compress` (its bytes or its path) to an (H, W, 3) uint8 array, or
        (H, W) for a gray image (see :meth:`decompress_photo` for the ICC profile too).

        Raises:
            BitstreamError, LimitError: as :meth:`decompress_photo`.
        """
        return self.decompress_photo(data, progress=progress).pixels

    def decompress_photo(self, data: bytes | str | Path, *, progress: bool = False) -> Photo:
        """Decompress a file made by :meth:`compress` (its bytes or its path) to its pixels and ICC profile.

        The file says which quality level it was coded at. A gray image comes
        back gray: the mean of the three channels the model decodes.

        Raises:
            BitstreamError: the data is truncated, corrupted, not a licrt file,
                made with a bundle of another coding contract, or decodes differently from how it was
                encoded (another backend computed other floats).
            LimitError: the file's image is over the limits (checked from its
                header, before anything else is read).
        """
        container, grid = self._open_container(data)
        header = container.header
        # Pages of the image are committed as parts are written into it.
        image = np.empty((grid.height, grid.width, 1 if header.gray else 3), dtype=np.uint8)
        for _, parts in self._decode_sections(container, grid, progress, reconstruct=True, estimate=False,
                                              to_pixels=partial(_to_pixels, gray=header.gray)):
            for rows, cols, pixels in parts:
                image[rows, cols] = pixels
        return Photo(image[..., 0] if header.gray else image, header.icc_profile)

    def inspect(self, data: bytes | str | Path) -> FileReport:
        """Decode a file's symbols (without reconstructing pixels) and account for its bits."""
        container, grid = self._open_container(data)
        names = ["z", *(step.name for step in self.bundle.manifest.schedule.steps)]
        bits, side_bits = dict.fromkeys(names, 0.0), dict.fromkeys(names, 0.0)
        counts, guarded = dict.fromkeys(names, 0), dict.fromkeys(names, 0)
        for coded, _ in self._decode_sections(container, grid, False, reconstruct=False, estimate=True):
            for coded_pass in coded.passes:
                bits[coded_pass.name] += coded_pass.bits
                counts[coded_pass.name] += coded_pass.symbols.size
                side_bits[coded_pass.name] += coded_pass.side_bits
                guarded[coded_pass.name] += coded_pass.guarded
        return FileReport(container, grid, bits, counts, side_bits, guarded)

    def _check_header(self, header: Header) -> TileGrid:
        """Check what a file's header asks for against this bundle and the limits.

        Raises:
            BitstreamError: the file is for another bundle, or its header is
                inconsistent with this bundle.
            LimitError: its image is over the limits.
        """
        if header.contract != self.bundle.contract:
            raise BitstreamError(
                f"the file was made with a bundle whose entropy coding differs from this one's (coding contract "
                f"{header.contract.hex()}; this bundle's is {self.bundle.contract.hex()}): decode it with the "
                "bundle that made it, or one calibrated from it"
            )
        passes = 1 + len(self.bundle.manifest.schedule.steps)
        if header.passes != passes:
            raise BitstreamError(f"the file codes {header.passes} passes per tile; its bundle codes {passes}")
        levels = len(self.bundle.manifest.levels)
        if header.level >= levels:
            raise BitstreamError(f"the file was coded at quality level {header.level + 1}; its bundle has "
                                 f"{levels}")
        grid = self._grid(header.height, header.width, "the file's image")
        if (grid.bucket, grid.rows, grid.cols, grid.windowed) != (header.bucket, header.tile_rows, header.tile_cols,
                                                                  header.windowed):
            raise BitstreamError("the file's grid of tiles or windows does not match its image size")
        if not grid.windowed:
            return grid
        if header.regions[0] > grid.rows or header.regions[1] > grid.cols:
            raise BitstreamError(f"the file's {header.regions[0]}x{header.regions[1]} regions are more than its "
                                 f"{grid.rows}x{grid.cols} windows")
        grid = dataclasses.replace(grid, region_grid=header.regions)
        self.limits.check_region(grid.region_pixels)
        return grid

    def _open_container(self, data: bytes | str | Path) -> tuple[Container, TileGrid]:
        """Parse a file (its bytes or its path) after vetting its header; a path is read only once it passes."""
        if isinstance(data, (str, Path)):
            with open_compressed(data) as (file, header, size):
                grid = self._check_header(header)
                largest = header.size + sum(section_framing(header.passes) + max_payload
                                            for max_payload in self._max_payloads(grid, header.level))
                if size > largest:
                    raise BitstreamError(f"the file holds {size:,} bytes, more than its header allows "
                                         f"({largest:,} at most)")
                file.seek(0)
                data = file.read()
        else:
            data = bytes(data)
            header = Header.from_bytes(data)
            grid = self._check_header(header)
        max_payload = max(self._max_payloads(grid, header.level))
        return Container.from_bytes(data, header, max_payload=max_payload), grid

    def _decode_sections(self, container: Container, grid: TileGrid, progress: bool, reconstruct: bool,
                         estimate: bool, to_pixels: Convert | None = None
                         ) -> Iterator[tuple[CodedTile, list[tuple[slice, slice, np.ndarray]]]]:
        """Yield every section's decoding, in order (see :meth:`TileCoder.decode`), with the parts of the image
        it completed: (rows, columns, (h, w, C) pixels)."""
        encoder, decoder = container.header.profile, self.backend.profile
        epsilon = self.bundle.manifest.guard_epsilon
        if encoder.endswith(UNGUARDED):
            note = (f"The file was encoded without the guard ('{encoder}'), so it decodes only where the floats "
                    "agree exactly with the encoder's: decode it with the encoder's backend.")
        elif encoder == decoder:
            note = (f"Encoder and decoder report the same profile '{decoder}': their floats differed all the same "
                    f"(another build or CPU model) by more than the bundle's guard covers (ε = {epsilon:g}), or the "
                    "file was forged.")
        else:
            note = (f"The file was encoded under '{encoder}'; this decoder runs '{decoder}', whose floats differ from "
                    f"the encoder's by more than the bundle's guard covers (ε = {epsilon:g}): decode it with a "
                    "backend closer to the encoder's.")
        if grid.windowed:
            coder = self._coder(container.header.level, grid)
            top, left = image_offsets(grid.height, grid.width, grid.canvas, self.bundle.manifest.padding)
            with _progress(grid, coder.runs(False, reconstruct), [coder], progress, "decompress"):
                for coded, parts in coder.decode(container.sections, note, reconstruct, estimate, to_pixels):
                    yield coded, [_on_image(rect, pixels, top, left, grid) for rect, pixels in parts]
            return
        tiles = self._tiles(grid, container.header.level)
        padding = self.bundle.manifest.padding
        runs = sum(coder.runs(False, reconstruct, area) for _, area, coder in tiles)
        with _progress(grid, runs, [coder for _, _, coder in tiles], progress, "decompress"):
            for index, ((tile, area, coder), section) in enumerate(zip(tiles, container.sections, strict=True)):
                try:
                    coded = coder.decode(section.payload, section.digests, note, reconstruct, area, estimate,
                                         to_pixels)
                except BitstreamError as exc:
                    raise type(exc)(f"tile {index + 1} of {len(tiles)}: {exc}") from None
                pixels = [] if coded.x_hat is None else [
                    (tile.rows, tile.cols, crop(coded.x_hat[0].transpose(1, 2, 0), tile.rows.stop - tile.rows.start,
                                                tile.cols.stop - tile.cols.start, padding))]
                yield coded, pixels


def _on_image(rect: Rect, pixels: np.ndarray, top: int, left: int, grid: TileGrid
              ) -> tuple[slice, slice, np.ndarray]:
    """A reconstructed part of a grid's canvas, (1, C, h, w), as (rows, columns, (h, w, C) pixels) of the image
    that lies at (``top``, ``left``) on the canvas."""
    rows = slice(max(rect.top - top, 0), min(rect.bottom - top, grid.height))
    cols = slice(max(rect.left - left, 0), min(rect.right - left, grid.width))
    part = pixels[0, :, rows.start + top - rect.top : rows.stop + top - rect.top,
                  cols.start + left - rect.left : cols.stop + left - rect.left]
    return rows, cols, part.transpose(1, 2, 0)


def _to_pixels(x_hat: np.ndarray, gray: bool) -> np.ndarray:
    """(1, 3, h, w) reconstructed floats as (1, C, h, w) uint8: RGB, or gray as the channels' mean."""
    x_hat = np.clip(x_hat, 0.0, 1.0)
    if gray:
        x_hat = x_hat.mean(axis=1, keepdims=True)
    x_hat *= 255
    return np.rint(x_hat, out=x_hat).astype(np.uint8)


def grid_overlap(bundle: Bundle) -> int:
    """How much neighbouring parts of a bundle's grids overlap: twice :data:`WINDOW_MARGIN` where it codes images
    in windows, 0 where in tiles. Windows need a codec without a raster pass (it runs position by position on
    one graph's held inputs) and every bucket side at least twice the overlap, so that a window in the middle of
    a grid keeps at least half of what it covers."""
    raster = any(step.raster for step in bundle.manifest.schedule.steps)
    fits = min(min(shape) for shape in bundle.bucket_shapes) >= 4 * WINDOW_MARGIN
    return 2 * WINDOW_MARGIN if fits and not raster else 0


@contextmanager
def open_compressed(path: str | Path) -> Iterator[tuple[BinaryIO, Header, int]]:
    """Open a compressed file and read its header only: yields (file, header, size in bytes).

    Raises:
        LicrtError: the file is missing or unreadable.
        BitstreamError: its header is not a licrt header.
    """
    try:
        with open(path, "rb") as file:
            yield file, Header.from_bytes(file.read(MAX_HEADER_SIZE)), os.fstat(file.fileno()).st_size
    except FileNotFoundError:
        raise LicrtError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise LicrtError(f"{path}: is a directory, not a licrt file") from None
    except OSError as exc:
        raise LicrtError(f"cannot read {path}: {exc.strerror}") from None


@contextmanager
def _progress(grid: TileGrid, runs: int, coders: list[TileCoder | RegionCoder], enabled: bool, what: str
              ) -> Iterator[None]:
    """A progress bar over the ``runs`` stage graph runs the ``coders`` make, so a single large tile shows
    progress too; on a terminal only (``disable=None``), so that scripts and logs get error lines alone."""
    count = grid.rows * grid.cols
    parts = f"{count} {'window' if grid.windowed else 'tile'}{'s' * (count > 1)}"
    coders = list({id(coder): coder for coder in coders}.values())
    with tqdm(total=runs, desc=f"{what} ({parts})", unit="run", disable=None if enabled else True) as bar:
        for coder in coders:
            coder.on_run = bar.update
        try:
            yield
        finally:
            for coder in coders:
                coder.on_run = None


__all__ = ["Codec", "FileReport", "open_compressed"]
