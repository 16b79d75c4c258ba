"""Running a bundle's stage graphs: one bucket's graphs on a tile of its shape, or windows of a grid over what
they keep (:class:`WindowedStages`): the whole canvas, a region of it, or a band of rows of windows. That is how
an image larger than any bucket is coded without seams (:mod:`.regions`).

Both take and return arrays at the size of what they code; a coder does not tell them apart, except that a
raster pass holds its inputs on the device (:meth:`BucketStages.runner`), which only one graph can.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .backends.base import Backend, StageRunner
from .bundle import Bundle
from .errors import BackendError
from .manifest import Bucket, Padding
from .tiling import Rect, Window, image_offsets, kept_rect, pad_by

Shapes = dict[str, dict[str, tuple[int, ...]]]


class Pixels:
    """An (H, W, C) uint8 image that a graph takes as (1, C, h, w) float32 in [0, 1], padded to ``shape`` by the
    bundle's rule: padded and converted only where a window cuts it (the whole image as floats would take four
    times its bytes, a padded copy of it as many again as the image)."""

    def __init__(self, image: np.ndarray, shape: tuple[int, int], padding: Padding):
        self.image = image
        self.shape = shape
        self.padding = padding

    def cut(self, rows: slice | None = None, cols: slice | None = None) -> np.ndarray:
        """Padded rows and columns [start, stop) (default: all) as a graph takes them."""
        (height, width), (top, left) = self.image.shape[:2], image_offsets(*self.image.shape[:2], self.shape,
                                                                           self.padding)
        rows = slice(0, self.shape[0]) if rows is None else rows
        cols = slice(0, self.shape[1]) if cols is None else cols
        inside = self.image[max(rows.start - top, 0) : min(rows.stop - top, height),
                            max(cols.start - left, 0) : min(cols.stop - left, width)]
        before = (max(top - rows.start, 0), max(left - cols.start, 0))
        after = (rows.stop - rows.start - before[0] - inside.shape[0],
                 cols.stop - cols.start - before[1] - inside.shape[1])
        part = pad_by(inside, before, after, self.padding)
        return np.ascontiguousarray(part.transpose(2, 0, 1)[None] / np.float32(255))


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
    """Windows of a grid (see :class:`licrt.runtime.tiling.TileGrid`) run as one stage over what their kept
    parts cover.

    Each input map covers ``inputs``, a rectangle of the canvas (a map ``stride`` times smaller than it gives
    each window the part ``stride`` times smaller than the window); pixels (:class:`Pixels`) cover the whole
    canvas. Each window runs through its bucket's graph, and every output map is stitched from the part each
    window keeps. Windows start on the image stride, so every latent lies wholly in one window's kept part.
    An output that is no map stays with its window (:class:`PerWindow`).

    Args:
        windows: Windows of one grid, row-major, whose kept parts make a rectangle.
        stages_of: The :class:`BucketStages` of a bucket by index (shared, so graphs load once).
        inputs: What the input maps cover, holding every window (default: what the windows keep).
    """

    def __init__(self, windows: list[Window] | tuple[Window, ...], stages_of: Callable[[int], BucketStages],
                 inputs: Rect | None = None):
        self.windows = list(windows)
        #: What the output maps cover.
        self.kept = kept_rect(self.windows)
        self.inputs = self.kept if inputs is None else inputs
        self._stages = [stages_of(window.bucket) for window in self.windows]
        self.runs = len(self.windows)
        first = self._stages[0].bucket
        #: The input maps' shapes at the size of what they cover (the others: one window's).
        self.input_shapes: Shapes = {
            name: {spec.name: self._covering(spec.shape, first) if _is_map(spec.shape, first) else spec.shape
                   for spec in graph.inputs}
            for name, graph in first.stages.items()
        }

    def _covering(self, shape: tuple[int, ...], bucket: Bucket) -> tuple[int, ...]:
        """A (1, C, h, w) shape of a graph of ``bucket`` at the size of the input maps."""
        stride = bucket.height // shape[2]
        height, width = self.inputs.shape
        return (*shape[:2], height // stride, width // stride)

    def runner(self, stage: str) -> StageRunner:
        raise BackendError(f"stage {stage} is a raster pass, which cannot run window by window")

    def run(self, stage: str, feed: dict[str, np.ndarray | Pixels | PerWindow], convert: Convert | None = None
            ) -> dict[str, np.ndarray | PerWindow]:
        """Run a stage window by window; its outputs are finite (else :class:`BackendError`), and each window's
        kept part of a map is converted before it is stitched."""
        stitched: dict[str, np.ndarray | PerWindow] = {}
        kept_height, kept_width = self.kept.shape
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
                stride = self.inputs.shape[0] // array.shape[2]
                top, left = window.top - self.inputs.top, window.left - self.inputs.left
                window_feed[name] = np.ascontiguousarray(array[
                    ..., top // stride : (top + window.shape[0]) // stride,
                    left // stride : (left + window.shape[1]) // stride])
            for name, array in stages.run(stage, window_feed).items():
                if not _is_map(array.shape, stages.bucket):
                    stitched.setdefault(name, PerWindow()).append(array)
                    continue
                stride = window.shape[0] // array.shape[2]
                rows, cols = (slice((start - origin) // stride, (stop - origin) // stride)
                              for (start, stop), origin in ((window.keep_rows, self.kept.top),
                                                            (window.keep_cols, self.kept.left)))
                top, left = (window.top - self.kept.top) // stride, (window.left - self.kept.left) // stride
                kept = array[..., rows.start - top : rows.stop - top, cols.start - left : cols.stop - left]
                kept = kept if convert is None else convert(kept)
                if name not in stitched:
                    stitched[name] = np.empty((*kept.shape[:2], kept_height // stride, kept_width // stride),
                                              kept.dtype)
                stitched[name][..., rows, cols] = kept
        return stitched


__all__ = ["BucketStages", "Convert", "PerWindow", "Pixels", "WindowedStages", "check_finite"]
