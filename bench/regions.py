"""What coding a large image's entropy path region by region costs, against one region over the whole image.

Every variant codes the same grid of windows with the default bundle, g_a and g_s over the whole canvas, and
runs the entropy path (hyperprior and context) region by region, regions of at most ``--region-pixels``
(licrt's default: 2²⁴), or over the whole image at once (one region, what licrt 0.9 did). Side by side in one
process, per image and variant: payload bits, PSNR, the seam statistic of ``any_size.py`` at the lines where
its regions meet (and one region's at the same lines), seconds per megapixel to compress and decompress
(warm: the graphs a variant runs loaded by a first round trip), and the peak of numpy's allocations
(tracemalloc) in a third, traced run: what the image's own arrays cost, which regions bound.

Images are named as in ``any_size.py`` (``PATH``, ``PATH@HxW``, ``PATH^HxW``).

Example::

    python bench/regions.py '../shared/data/wikipedia_photos/006.png^3000x4000' --out bench/results/regions.json
"""

from __future__ import annotations

import argparse
import dataclasses
import time
import tracemalloc
from functools import partial
from pathlib import Path

import numpy as np

from licrt.evaluation.metrics import psnr
from licrt.runtime.codec import Codec, _on_image, _to_pixels
from licrt.runtime.container import TileSection
from licrt.runtime.stages import Pixels
from licrt.runtime.limits import DEFAULT_MAX_REGION_PIXELS
from licrt.runtime.tiling import TileGrid, choose_regions, image_offsets

from any_size import load, seam_statistic  # sibling scripts: python puts bench/ on the path
from report import save_report



def round_trip(codec: Codec, grid: TileGrid, image: np.ndarray) -> tuple[int, np.ndarray]:
    """(payload bits, decoded pixels) of an image coded on a grid, region by region as the grid says."""
    coder = codec._coder(codec.bundle.level, grid)
    padding = codec.bundle.manifest.padding
    sections = [TileSection(coded.payload, coded.digests)
                for coded in coder.encode(Pixels(image, grid.canvas, padding))]
    decoded = np.empty_like(image)
    top, left = image_offsets(*image.shape[:2], grid.canvas, padding)
    for _, parts in coder.decode(sections, "", True, False, partial(_to_pixels, gray=False)):
        for rect, pixels in parts:
            rows, cols, part = _on_image(rect, pixels, top, left, grid)
            decoded[rows, cols] = part
    return 8 * sum(len(section.payload) for section in sections), decoded


def measure(codec: Codec, spec: str, region_pixels: list[int]) -> dict:
    image = load(spec)
    height, width = image.shape[:2]
    pixels = height * width
    grid = codec.grid(height, width)
    result = {"image": spec.split("/")[-1], "height": height, "width": width, "windows": grid.rows * grid.cols,
              "variants": {}}
    decoded_by_variant = {}
    for index, limit in enumerate([*region_pixels, None]):
        variant = dataclasses.replace(grid, region_grid=(1, 1) if limit is None else choose_regions(grid, limit))
        regions = variant.regions()
        lines = [[row[0].rect.top for row in regions[1:]], [region.rect.left for region in regions[0][1:]]]
        if variant.region_grid != (1, 1) or index == 0:  # one region runs no graph another variant did not
            round_trip(codec, variant, image)
        start = time.perf_counter()
        bits, decoded = round_trip(codec, variant, image)
        seconds = time.perf_counter() - start
        tracemalloc.start()
        round_trip(codec, variant, image)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        row = {"max_region_pixels": limit, "regions": [len(regions), len(regions[0])],
               "region_lines": lines, "bpp": bits / pixels, "psnr_db": psnr(image, decoded),
               "round_trip_s_per_mp": seconds / (pixels / 1e6), "numpy_peak_bytes_per_pixel": peak / pixels,
               "numpy_peak_mib": peak / 2**20}
        print(spec, row, flush=True)
        name = "one region" if limit is None else f"regions of at most {limit:,} pixels"
        result["variants"][name] = row
        decoded_by_variant[name] = decoded
    whole = result["variants"]["one region"]
    for name, row in result["variants"].items():
        row["bits_vs_one_region"] = row["bpp"] / whole["bpp"] - 1
        row["psnr_vs_one_region_db"] = row["psnr_db"] - whole["psnr_db"]
        # at the lines where this variant's regions meet: its decoding, one region's, and the photo's
        row["seams_at_region_lines"] = seam_statistic(decoded_by_variant[name], image, *row["region_lines"])
        row["one_region_seams_at_these_lines"] = seam_statistic(decoded_by_variant["one region"], image,
                                                                *row["region_lines"])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("images", nargs="+", help="PATH, PATH@HxW (crop) or PATH^HxW (resized to cover, cropped)")
    parser.add_argument("--region-pixels", default=str(DEFAULT_MAX_REGION_PIXELS),
                        help=f"comma-separated limits on a region's pixels to try (default "
                             f"{DEFAULT_MAX_REGION_PIXELS}, licrt's); one region over the whole image is always "
                             "measured")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    codec = Codec.open(None, backend="onnxruntime")
    limits = [int(value) for value in args.region_pixels.split(",")]
    rows = [measure(codec, spec, limits) for spec in args.images]
    save_report("regions.py", None, args.out, bundle="default", images=rows)


if __name__ == "__main__":
    main()
