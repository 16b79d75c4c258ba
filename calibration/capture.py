"""Stage inputs as the real pipeline feeds them: calibration data for INT8.

Each calibration image is compressed and decompressed with the float32
bundle at every quality level, through :class:`~licrt.runtime.codec.Codec`
on ONNX Runtime; every run of a watched stage is recorded with the bucket
its shapes belong to. The inputs are thus what the stages see in use: g_a
the padded tiles, g_s the decoded ŷ, the context steps their real states.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from licrt.runtime.backends import open_backend
from licrt.runtime.backends.watched import WatchedBackend
from licrt.runtime.bundle import Bundle
from licrt.runtime.codec import Codec
from licrt.runtime.images import read_image

#: The most runs of one graph kept (a raster step runs once per position: its first runs are enough).
MAX_RUNS_PER_GRAPH = 256
#: The most bytes of inputs kept in all, whatever the images' size: beyond it, only graphs without a run yet
#: keep one (32 Kodak-size images at three levels keep ~0.6 GiB of g_a, h_a and g_s inputs).
MAX_CAPTURED_BYTES = 2**31
#: Feeds of one stage graph, by (quality level index, stage, bucket name).
Feeds = dict[tuple[int, str, str], list[dict[str, np.ndarray]]]


@dataclass(frozen=True)
class Capture:
    feeds: Feeds
    #: Per quality level, the mean squared error of the decoded images (pixels in [0, 1]): the noise the
    #: codec adds anyway, against which the synthesis's quantisation noise is measured.
    distortion: list[float]


def capture_feeds(bundle: Bundle, images: Sequence[Path], stages: Collection[str], progress: bool = True) -> Capture:
    """The inputs of the named stages over every image at every quality level of the bundle."""
    buckets = {(name, tuple(spec.shape for spec in graph.inputs)): bucket.name
               for bucket in bundle.manifest.buckets for name, graph in bucket.stages.items()}
    inputs = {name: [spec.name for spec in graph.inputs] for name, graph in bundle.manifest.buckets[0].stages.items()}
    feeds: Feeds = defaultdict(list)
    captured = 0

    def record(stage: str, feed: dict[str, np.ndarray], run):
        nonlocal captured
        if stage in stages:
            bucket = buckets[stage, tuple(feed[name].shape for name in inputs[stage])]
            runs = feeds[level, stage, bucket]
            size = sum(value.nbytes for value in feed.values())
            if len(runs) < MAX_RUNS_PER_GRAPH and (not runs or captured + size <= MAX_CAPTURED_BYTES):
                runs.append({name: np.array(value) for name, value in feed.items()})  # the pipeline reuses them
                captured += size
        return run(feed)

    codec = Codec.open(bundle, backend=WatchedBackend(open_backend("onnxruntime"), record))
    levels = range(len(bundle.manifest.levels))  # record() reads the level of the loop below
    distortion = []
    with tqdm(total=len(images) * len(levels), desc="calibrate: capture", unit="image",
              disable=not progress) as bar:
        for level in levels:
            errors = []
            for image in images:
                pixels = read_image(image)
                decoded = codec.decompress(codec.compress(pixels, quality=level + 1))
                errors.append(np.mean(((decoded.astype(np.float64) - pixels) / 255) ** 2))
                bar.update()
            distortion.append(float(np.mean(errors)))
    return Capture(dict(feeds), distortion)

