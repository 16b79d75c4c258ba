"""Tile seams, and what removing them costs: four ways to code a Kodak image as a 2x3 grid of 256² tiles.

* ``tiles``: what licrt does: each tile through g_a, its own entropy coding and g_s.
* ``stitched synthesis``: the same files; the decoder runs g_s once over the
  tiles' ŷ put side by side (a decoder-only change).
* ``global analysis + stitched synthesis``: g_a runs once over the whole
  image, each tile entropy-codes its part of y, and g_s runs over all of ŷ
  (what overlapping analysis and synthesis windows approach).
* ``deblocked``: the tiles' pixels, with a post-filter that removes the part
  of each jump across a border that the gradients on either side do not
  predict, smoothed along the border and spread over ``reach`` pixels.

Against the image coded as one 512×768 tile: bpp, PSNR and the seam
statistic of ``any_size.py`` (mean jump across the tile borders against the
median jump elsewhere; the original's at the same places for scale). Needs
a bundle with 256x256 and 512x768 buckets (the default has both).

Example::

    python bench/seam_remedies.py ../shared/data/kodak --out bench/results/seam-remedies.json
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import uniform_filter1d

from licrt.evaluation.metrics import psnr
from licrt.runtime.codec import Codec
from licrt.runtime.scheduler import TileCoder
from licrt.runtime.stages import BucketStages

from any_size import seam_statistic  # sibling scripts: python puts bench/ on the path
from report import dataset_names, save_report

ROWS, COLS, SIDE = (256, 256), (256, 256, 256), 256


class OpenTileCoder(TileCoder):
    """A tile coder that can take y instead of running g_a, and keeps the ŷ it decodes."""

    given_y: np.ndarray | None = None
    y_hat: np.ndarray | None = None

    def _run(self, stage, feed):
        if stage == "g_a" and self.given_y is not None:
            return {"y": self.given_y}
        if stage == "g_s":
            self.y_hat = feed["y_hat"].copy()
        return super()._run(stage, feed)


def to_pixels(x_hat: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(x_hat[0].transpose(1, 2, 0), 0, 1) * 255).astype(np.uint8)


def deblock(image: np.ndarray, reach: int = 4, smooth: int = 16) -> np.ndarray:
    """Remove the unpredicted part of each jump across the grid's borders."""
    out = image.astype(np.float64)
    for axis, lines in ((0, np.cumsum(ROWS)[:-1]), (1, np.cumsum(COLS)[:-1])):
        view = np.moveaxis(out, axis, 0)
        for line in lines:
            step = view[line] - view[line - 1]
            predicted = 0.5 * ((view[line - 1] - view[line - 2]) + (view[line + 1] - view[line]))
            excess = uniform_filter1d(step - predicted, smooth, axis=0, mode="nearest")
            for i in range(reach):
                weight = 0.5 * (reach - i) / reach
                view[line - 1 - i] += weight * excess
                view[line + i] -= weight * excess
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def code_in_tiles(coder: OpenTileCoder, image: np.ndarray, y: np.ndarray | None):
    """(bits, tiles' pixels, ŷ side by side) of the image coded in 256² tiles, y given or from each tile."""
    pixels, y_hat, bits = np.zeros_like(image), None, 0
    latent = SIDE // (image.shape[0] // y.shape[2]) if y is not None else None
    for r in range(len(ROWS)):
        for c in range(len(COLS)):
            rows, cols = slice(r * SIDE, (r + 1) * SIDE), slice(c * SIDE, (c + 1) * SIDE)
            x = (image[rows, cols].transpose(2, 0, 1)[None] / np.float32(255)).astype(np.float32)
            coder.given_y = None if y is None else np.ascontiguousarray(
                y[:, :, r * latent : (r + 1) * latent, c * latent : (c + 1) * latent])
            coded = coder.encode(x)
            bits += 8 * len(coded.payload)
            decoded = coder.decode(coded.payload, coded.digests, "")
            pixels[rows, cols] = to_pixels(decoded.x_hat)
            if y_hat is None:
                side = coder.y_hat.shape[2]
                y_hat = np.zeros((1, coder.y_hat.shape[1], side * len(ROWS), side * len(COLS)), np.float32)
            side = coder.y_hat.shape[2]
            y_hat[:, :, r * side : (r + 1) * side, c * side : (c + 1) * side] = coder.y_hat
    coder.given_y = None
    return bits, pixels, y_hat


def measure(codec: Codec, image: np.ndarray, quality: int) -> dict:
    level = quality - 1
    shapes = codec.bundle.bucket_shapes
    small, whole = (codec.bundle.manifest.buckets[shapes.index(shape)] for shape in ((SIDE, SIDE), (512, 768)))
    bundle = codec.bundle.at_level(level)
    tiles, one = (OpenTileCoder(bundle, BucketStages(bundle, bucket, codec.backend)) for bucket in (small, whole))
    x = (image.transpose(2, 0, 1)[None] / np.float32(255)).astype(np.float32)
    pixels_count = image.shape[0] * image.shape[1]

    def row(bits, decoded):
        seams = seam_statistic(decoded, image, np.cumsum(ROWS)[:-1], np.cumsum(COLS)[:-1])
        return {"bpp": bits / pixels_count, "psnr_db": psnr(image, decoded),
                "seam_ratio": seams["decoded"]["ratio"], "original_seam_ratio": seams["original"]["ratio"]}

    coded = one.encode(x)
    result = {"one tile": row(8 * len(coded.payload), to_pixels(one.decode(coded.payload, coded.digests, "").x_hat))}
    bits, pixels, y_hat = code_in_tiles(tiles, image, None)
    result["tiles"] = row(bits, pixels)
    result["stitched synthesis"] = row(bits, to_pixels(one._run("g_s", {"y_hat": y_hat})["x_hat"]))
    global_bits, _, global_y_hat = code_in_tiles(tiles, image, one._run("g_a", {"x": x})["y"])
    result["global analysis + stitched synthesis"] = row(global_bits,
                                                         to_pixels(one._run("g_s", {"y_hat": global_y_hat})["x_hat"]))
    for reach in (4, 8):
        result[f"deblocked, reach {reach}"] = row(bits, deblock(pixels, reach))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kodak", type=Path, help="folder of 512x768 (or 768x512) images")
    parser.add_argument("--bundle", help="bundle directory (default: the bundled default model)")
    parser.add_argument("--quality", type=int, default=2)
    parser.add_argument("--limit", type=int, default=8, help="the first N images (default 8)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    codec = Codec.open(args.bundle, backend="onnxruntime")
    paths = sorted(args.kodak.glob("*.png"))[: args.limit]
    per_image = {}
    for name, path in zip(dataset_names(args.kodak, paths), paths, strict=True):
        image = np.asarray(Image.open(path).convert("RGB"))
        image = image if image.shape[0] == 512 else np.ascontiguousarray(image.transpose(1, 0, 2))
        per_image[name] = measure(codec, image, args.quality)
        print(name, {way: round(r["psnr_db"], 3) for way, r in per_image[name].items()}, flush=True)
    ways = list(next(iter(per_image.values())))
    means = {way: {key: statistics.fmean(r[way][key] for r in per_image.values())
                   for key in per_image[name][way]} for way in ways}
    save_report("seam_remedies.py", None, args.out, bundle=args.bundle or "default", quality=args.quality,
                means=means, per_image=per_image)


if __name__ == "__main__":
    main()
