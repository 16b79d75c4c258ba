"""Running a bundle's stage graphs: one bucket's graphs on a tile of its shape, or every window of a grid over
a whole canvas (:class:`WindowedStages`), which is how an image larger than any bucket is coded as one.

Both take and return arrays at the size of what they code; a coder does not tell them apart, except that a
raster pass holds its inputs on the device (:meth:`BucketStages.runner`), which only one graph can.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .backends.base import Backend, StageRunner
from .bundle import Bundle
from .errors import BackendError
from .manifest import Bucket
from .tiling import TileGrid

Shapes = dict[str, dict[str, tuple[int, ...]]]


class Pixels:
    """An (H, W, C) uint8 image that a graph takes as (1, C, H, W) float32 in [0, 1], converted only where a
    window cuts it (the whole image as floats would take four times its bytes)."""

    def __init__(self, image: np.ndarray):
        self.image = image

    def cut(self, rows: slice = slice(None), cols: slice = slice(None)) -> np.ndarray:
        return np.ascontiguousarray(self.image[rows, cols].transpose(2, 0, 1)[None] / np.float32(255))


#: Turns (part of) a stage output into what is kept of it, e.g. reconstructed floats into pixels.
Convert = Callable[[np.ndarray], np.ndarray]


def check_finite(stage: str, outputs: dict[str, np.ndarray]) -> None:
    """Raise :class:`BackendError` if a stage's output holds a NaN or an infinity."""
    for name, array in outputs.items():
        if not np.all(np.isfinite(array)):
            raise BackendError(f"stage {stage} produced non-finite values in {name!r}")


class BucketStages:
    """One bucket's stage graphs, each loaded on the backend on first use (so a decoder never loads the
    encoder's graphs and vice versa)."""

    #: Graph runs per stage run.
    runs = 1

    def __init__(self, bundle: Bundle, bucket: Bucket, backend: Backend):
        self.bundle = bundle
        self.bucket = bucket
        self.backend = backend
        self._runners: dict[str, StageRunner] = {}
        #: Every stage's input shapes, by stage and input name.
        self.input_shapes: Shapes = {name: {spec.name: spec.shape for spec in graph.inputs}
                                     for name, graph in bucket.stages.items()}

    def runner(self, stage: str) -> StageRunner:
        if stage not in self._runners:
            self._runners[stage] = self.backend.load(self.bundle, stage, self.bucket.stages[stage])
        return self._runners[stage]

    def run(self, stage: str, feed: dict[str, np.ndarray | Pixels], convert: Convert | None = None
            ) -> dict[str, np.ndarray]:
        """Run a stage's graph; its outputs are finite (else :class:`BackendError`), then converted."""
        outputs = self.runner(stage).run({name: value.cut() if isinstance(value, Pixels) else value
                                          for name, value in feed.items()})
        check_finite(stage, outputs)
        return outputs if convert is None else {name: convert(array) for name, array in outputs.items()}


class PerWindow(list):
    """A stage output that is no map of the image (a context model's key/value cache, say): one array per
    window, which only that window's later stages read."""


def _is_map(shape: tuple[int, ...], bucket: Bucket) -> bool:
    """Whether a graph's tensor is a (1, C, h, w) map of its bucket's pixels, ``stride`` times smaller."""
    return (len(shape) == 4 and shape[0] == 1 and bucket.height % shape[2] == 0
            and bucket.height // shape[2] * shape[3] == bucket.width)


class WindowedStages:
    """A grid's windows (see :class:`licrt.runtime.tiling.TileGrid`) run as one stage over its canvas.

    Each input map is cut into the windows' parts (a map ``stride`` times smaller than the canvas gives each
    window the part ``stride`` times smaller than the window), each window runs through its bucket's graph,
    and every output map is stitched from the part each window keeps. Windows start on the image stride, so
    every latent lies wholly in one window's kept part. An output that is no map stays with its window
    (:class:`PerWindow`).

    Args:
        grid: A grid of windows.
        stages_of: The :class:`BucketStages` of a bucket by index (shared, so graphs load once).
    """

    def __init__(self, grid: TileGrid, stages_of: Callable[[int], BucketStages]):
        self.windows = list(grid.windows())
        self.canvas = grid.canvas
        self._stages = [stages_of(window.bucket) for window in self.windows]
        self.runs = len(self.windows)
        first = self._stages[0].bucket
        #: The input maps' shapes at the canvas's size (the others: one window's).
        self.input_shapes: Shapes = {
            name: {spec.name: self._at_canvas(spec.shape, first) if _is_map(spec.shape, first) else spec.shape
                   for spec in graph.inputs}
            for name, graph in first.stages.items()
        }

    def _at_canvas(self, shape: tuple[int, ...], bucket: Bucket) -> tuple[int, ...]:
        """A (1, C, h, w) shape of a graph of ``bucket`` at the canvas's size."""
        stride = bucket.height // shape[2]
        return (*shape[:2], self.canvas[0] // stride, self.canvas[1] // stride)

    def runner(self, stage: str) -> StageRunner:
        raise BackendError(f"stage {stage} is a raster pass, which cannot run window by window")

    def run(self, stage: str, feed: dict[str, np.ndarray | Pixels | PerWindow], convert: Convert | None = None
            ) -> dict[str, np.ndarray | PerWindow]:
        """Run a stage over the canvas, window by window; its outputs are finite (else :class:`BackendError`),
        and each window's kept part of a map is converted before it is stitched."""
        stitched: dict[str, np.ndarray | PerWindow] = {}
        for index, (window, stages) in enumerate(zip(self.windows, self._stages, strict=True)):
            window_feed = {}
            for name, array in feed.items():
                if isinstance(array, PerWindow):
                    window_feed[name] = array[index]
                    continue
                if isinstance(array, Pixels):
                    window_feed[name] = array.cut(slice(window.top, window.top + window.shape[0]),
                                                  slice(window.left, window.left + window.shape[1]))
                    continue
                stride = self.canvas[0] // array.shape[2]
                window_feed[name] = np.ascontiguousarray(array[
                    ..., window.top // stride : (window.top + window.shape[0]) // stride,
                    window.left // stride : (window.left + window.shape[1]) // stride])
            for name, array in stages.run(stage, window_feed).items():
                if not _is_map(array.shape, stages.bucket):
                    stitched.setdefault(name, PerWindow()).append(array)
                    continue
                stride = window.shape[0] // array.shape[2]
                rows, cols = (slice(start // stride, stop // stride) for start, stop in (window.keep_rows,
                                                                                        window.keep_cols))
                kept = array[..., rows.start - window.top // stride : rows.stop - window.top // stride,
                             cols.start - window.left // stride : cols.stop - window.left // stride]
                kept = kept if convert is None else convert(kept)
                if name not in stitched:
                    stitched[name] = np.empty((*kept.shape[:2], self.canvas[0] // stride, self.canvas[1] // stride),
                                              kept.dtype)
                stitched[name][..., rows, cols] = kept
        return stitched


__all__ = ["BucketStages", "Convert", "PerWindow", "Pixels", "WindowedStages", "check_finite"]
