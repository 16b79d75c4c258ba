"""Running every image through every codec and rate point, one CSV row each.

Learned codecs are measured through the real runtime (actual file bytes from
``Codec.compress``, pixels from ``Codec.decompress``), classical anchors
through their libraries. Rows are appended to ``results.csv`` as they are
measured, so an interrupted evaluation resumes where it stopped.
"""

from __future__ import annotations

import csv
import math
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
from tqdm import tqdm

from licrt.runtime.codec import Codec
from licrt.runtime.images import read_image
from .anchors import Anchor
from .metrics import MS_SSIM_MIN_SIDE, ms_ssim, psnr

RESULTS = "results.csv"


@dataclass(frozen=True)
class Measurement:
    """One image coded by one codec at one rate point."""

    image: str
    codec: str
    point: str
    bytes: int
    bpp: float
    psnr: float
    ms_ssim: float
    encode_seconds: float
    decode_seconds: float


@dataclass(frozen=True)
class LearnedPoint:
    """A bundle at one quality level: one rate point of a learned codec's curve."""

    codec: str
    point: str
    model: Codec
    #: The quality level it is coded at (1-based, as ``Codec.compress`` takes it).
    quality: int


def learned_points(codecs: Sequence[Codec], backends: Sequence[str] | None = None) -> list[LearnedPoint]:
    """Every quality level of every bundle, as curves named by codec id; a point is named by its level, or by
    its bundle's directory where the bundle has one level (one-level bundles of a codec make one curve).

    Several bundles of one codec with levels of their own (a float32 bundle
    and its calibrations) are curves of their own, named codec/directory.
    backends names the backend each codec runs on; where they differ, every
    curve is named after its backend too (codec @ backend).
    """
    with_levels = Counter(name for name, _ in {(c.bundle.manifest.codec, c.bundle.root) for c in codecs
                                               if len(c.qualities) > 1})
    named = backends if backends is not None and len(set(backends)) > 1 else [None] * len(codecs)

    def curve(codec: Codec, backend: str | None) -> str:
        name = codec.bundle.manifest.codec
        name = f"{name}/{codec.bundle.root.name}" if len(codec.qualities) > 1 and with_levels[name] > 1 else name
        return name if backend is None else f"{name} @ {backend}"

    return [LearnedPoint(curve(c, backend), name if len(c.qualities) > 1 else c.bundle.root.name, c, quality)
            for c, backend in zip(codecs, named, strict=True) for quality, name in enumerate(c.qualities, 1)]


def _measure(image_name: str, image: np.ndarray, codec: str, point: str, data_size: int,
             decoded: np.ndarray, encode_seconds: float, decode_seconds: float) -> Measurement:
    height, width = image.shape[:2]
    structural = ms_ssim(image, decoded) if min(height, width) >= MS_SSIM_MIN_SIDE else math.nan
    return Measurement(image_name, codec, point, data_size, 8 * data_size / (height * width),
                       psnr(image, decoded), structural, encode_seconds, decode_seconds)


def _jobs(images: Sequence[Path], points: Sequence[LearnedPoint], anchors: Sequence[Anchor]):
    for path in images:
        for learned in points:
            yield path, learned.codec, learned.point, learned
        for anchor in anchors:
            for setting in anchor.settings:
                yield path, anchor.name, f"{anchor.setting_name}={setting:g}", (anchor, setting)


def read_results(path: Path) -> list[Measurement]:
    """Rows of a results CSV (an absent file has none)."""
    if not path.is_file():
        return []
    kinds = {f.name: f.type for f in fields(Measurement)}
    with open(path, newline="") as file:
        return [
            Measurement(**{k: (v if kinds[k] == "str" else int(v) if kinds[k] == "int" else float(v))
                           for k, v in row.items()})
            for row in csv.DictReader(file)
        ]


def evaluate(images: Sequence[Path], points: Sequence[LearnedPoint], anchors: Sequence[Anchor],
             out: Path, progress: bool = True) -> list[Measurement]:
    """Measure everything not yet in ``out/results.csv``; returns all rows.

    Raises:
        ImageError: an image cannot be read.
    """
    out.mkdir(parents=True, exist_ok=True)
    path = out / RESULTS
    rows = read_results(path)
    done = {(m.image, m.codec, m.point) for m in rows}
    pending = [job for job in _jobs(images, points, anchors) if (job[0].name, job[1], job[2]) not in done]
    new_file = not path.is_file()
    with open(path, "a", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=[f.name for f in fields(Measurement)])
        if new_file:
            writer.writeheader()
        for measurement in _run(pending, progress):
            writer.writerow(asdict(measurement))
            file.flush()
            rows.append(measurement)
    return rows


def _run(pending, progress: bool) -> Iterator[Measurement]:
    cached: tuple[Path, np.ndarray] | None = None
    for image_path, codec, point, coder in tqdm(pending, desc="eval", unit="code", disable=not progress):
        if cached is None or cached[0] != image_path:
            cached = image_path, read_image(image_path)
        image = cached[1]
        if isinstance(coder, LearnedPoint):
            started = time.perf_counter()
            data = coder.model.compress(image, quality=coder.quality)
            encoded = time.perf_counter()
            decoded = coder.model.decompress(data)
            finished = time.perf_counter()
            yield _measure(image_path.name, image, codec, point, len(data), decoded,
                           encoded - started, finished - encoded)
        else:
            anchor, setting = coder
            coded = anchor.code(image, setting)
            yield _measure(image_path.name, image, codec, point, len(coded.data), coded.decoded,
                           coded.encode_seconds, coded.decode_seconds)
