"""Coding an image on a grid of windows: the transforms over the whole canvas, the entropy path region by region.

g_a and g_s run window by window over the whole canvas, so they see across
the lines where regions meet. The entropy path (h_a, h_s, the passes) runs on
one region at a time
(:meth:`licrt.runtime.tiling.TileGrid.regions`), each coded as one section on a
grid of its own: a region's latents, entropy parameters and symbols are all a
coder holds at once, so memory is bounded by a region whatever the image size.
Where regions meet, the hyperprior and the context start afresh, as at an
image's edge (bench/results/regions.json measures what that costs in bits,
and the faint seam it leaves).

The decoder decodes region after region, row by row, and runs g_s on every
row of windows whose ŷ is complete, keeping of ŷ only what the next rows of
windows still need: a band across the canvas, a row of regions high.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np

from .bundle import Bundle
from .container import TileSection
from .errors import BitstreamError
from .scheduler import CodedTile, TileCoder
from .stages import BucketStages, Convert, Pixels, WindowedStages
from .tiling import ImageArea, Rect, Region, TileGrid, Window, choose_grid


class RegionCoder:
    """Codes images on one grid of windows, one section per region, row-major.

    Args:
        bundle: The opened bundle, at the level to code.
        grid: A grid of windows.
        area: Where the image lies on the grid's canvas.
        stages_of: The :class:`BucketStages` of a bucket by index (shared, so graphs load once).
        guard: As :class:`~licrt.runtime.scheduler.TileCoder`'s.
    """

    def __init__(self, bundle: Bundle, grid: TileGrid, area: ImageArea, stages_of: Callable[[int], BucketStages],
                 guard: bool = True):
        self.grid = grid
        self.regions = grid.regions()
        self._stages_of = stages_of
        #: Per region, row-major: its own grid's coder of the entropy path, and where the image lies on that grid.
        self.coders: list[tuple[Region, TileCoder, ImageArea]] = []
        for region in (region for row in self.regions for region in row):
            own = choose_grid(*region.rect.shape, bundle.bucket_shapes, grid.overlap)
            coder = TileCoder(bundle, WindowedStages(list(own.windows()), stages_of), guard)
            self.coders.append((region, coder, area.within(region.rect, own.canvas)))
        #: Canvas pixels per latent of ŷ.
        _, first, _ = self.coders[0]
        self.stride = first.stages.inputs.shape[0] // first.y_shape[2]
        self._on_run: Callable[[int], object] | None = None

    @property
    def on_run(self) -> Callable[[int], object] | None:
        """Called after every stage graph run with how many ran: what a progress bar follows."""
        return self._on_run

    @on_run.setter
    def on_run(self, callback: Callable[[int], object] | None) -> None:
        self._on_run = callback
        for _, coder, _ in self.coders:
            coder.on_run = callback

    def runs(self, encode: bool, reconstruct: bool = True) -> int:
        """Stage graph runs per image: g_a (to encode) and g_s (to reconstruct) once per window of the grid,
        and each region's entropy path once per window of its own grid."""
        transforms = sum(len(region.windows) for region, _, _ in self.coders) * int(encode or reconstruct)
        return transforms + sum(coder.runs(encode, False, area) - coder.stages.runs * encode
                                for _, coder, area in self.coders)

    @property
    def max_payloads(self) -> list[int]:
        """The most bytes each region's payload can hold."""
        return [coder.max_payload for _, coder, _ in self.coders]

    def _transform(self, stages: WindowedStages, stage: str, feed: dict, convert: Convert | None = None
                   ) -> np.ndarray:
        (output,) = stages.run(stage, feed, convert).values()
        if self._on_run is not None:
            self._on_run(stages.runs)
        return output

    def encode(self, pixels: Pixels) -> Iterator[CodedTile]:
        """Code an image, padded to the grid's canvas: each region's section in turn."""
        for region, coder, area in self.coders:
            y = self._transform(WindowedStages(region.windows, self._stages_of), "g_a", {"x": pixels})
            rows, cols = (size - have for size, have in zip(coder.y_shape[2:], y.shape[2:], strict=True))
            yield coder.encode_latents(np.pad(y, ((0, 0), (0, 0), (0, rows), (0, cols)), mode="edge"), area)

    def decode(self, sections: Sequence[TileSection], profile_note: str, reconstruct: bool, estimate: bool,
               to_pixels: Convert | None = None) -> Iterator[tuple[CodedTile, list[tuple[Rect, np.ndarray]]]]:
        """Decode each region's section in turn (see :meth:`TileCoder.decode`); with ``reconstruct``, run g_s on
        each row of windows once its ŷ is decoded.

        Yields:
            Each region's decoding, with the reconstruction of the canvas's parts it completed: (where on the
            canvas, (1, C, h, w) as ``to_pixels`` makes it).
        """
        coders = iter(enumerate(self.coders))
        band = _Band(self.grid.window_rows(), self.stride)
        for region_row in self.regions:
            maps = []
            for region in region_row:
                index, (_, coder, area) = next(coders)
                try:
                    coded = coder.decode(sections[index].payload, sections[index].digests, profile_note, False,
                                         area, estimate)
                except BitstreamError as exc:
                    if len(self.coders) == 1:
                        raise
                    raise type(exc)(f"region {index + 1} of {len(self.coders)}: {exc}") from None
                height, width = region.rect.shape
                if reconstruct:
                    maps.append(coded.y_hat[..., : height // self.stride, : width // self.stride])
                coded.y_hat = None
                if region is not region_row[-1]:
                    yield coded, []
            parts = []
            if reconstruct:
                windows = band.extend(np.concatenate(maps, axis=3), region_row[0].rect.bottom, self.grid.canvas)
                if windows:
                    stages = WindowedStages(windows, self._stages_of, band.rect)
                    parts.append((stages.kept, self._transform(stages, "g_s", {"y_hat": band.y_hat}, to_pixels)))
                    band.drop(windows[-1])
            yield coded, parts


class _Band:
    """ŷ across the canvas from a row of windows on, as far down as it is decoded: what g_s still needs."""

    def __init__(self, window_rows: list[tuple[Window, ...]], stride: int):
        self.pending = window_rows
        self.stride = stride
        self.y_hat: np.ndarray | None = None
        self.rect = Rect(0, 0, 0, 0)

    def extend(self, y_hat: np.ndarray, bottom: int, canvas: tuple[int, int]) -> list[Window]:
        """Add the rows of ŷ down to canvas row ``bottom``; the windows whose ŷ is now whole: every row of
        windows that ends above ``bottom``, or all at the canvas's bottom."""
        self.y_hat = y_hat if self.y_hat is None else np.concatenate([self.y_hat, y_hat], axis=2)
        self.rect = Rect(self.rect.top, 0, bottom, canvas[1])
        return [window for row in self.pending if row[0].top + row[0].shape[0] <= bottom or bottom == canvas[0]
                for window in row]

    def drop(self, last: Window) -> None:
        """Forget the rows of windows up to ``last``'s, and the rows of ŷ only they needed."""
        self.pending = [row for row in self.pending if row[0].top > last.top]
        if self.pending:
            top = self.pending[0][0].top
            self.y_hat = self.y_hat[..., (top - self.rect.top) // self.stride :, :]
            self.rect = Rect(top, 0, self.rect.bottom, self.rect.right)
