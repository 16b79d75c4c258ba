"""How wide a window's margin must be: Kodak images coded whole (one 512x768 window) against the same images
coded window by window over the bundle's smaller shapes (the default's 256…448 squares), at several margins.

Margin 0 is tiles coded as one image: each window's graphs zero-pad at its borders, the entropy coding runs
over the whole image. Reported per margin: bpp and PSNR against coding the image whole, the seam statistic
of ``any_size.py`` at the lines where one window's kept part meets the next, the pixels processed against
the image's, and how many ŷ symbols differ from the whole image's.

Example::

    python bench/window_margin.py ../shared/data/kodak --out bench/results/window-margin.json
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np
from PIL import Image

from licrt.evaluation.metrics import psnr
from licrt.runtime.codec import Codec
from licrt.runtime.scheduler import TileCoder
from licrt.runtime.stages import WindowedStages
from licrt.runtime.tiling import TileGrid, choose_grid, image_area

from any_size import seam_statistic  # sibling scripts: python puts bench/ on the path
from report import dataset_names, save_report

WHOLE = (512, 768)


def to_pixels(x_hat: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(x_hat[0].transpose(1, 2, 0), 0, 1) * 255).astype(np.uint8)


def windowed_grid(codec: Codec, overlap: int, small: int) -> TileGrid:
    """Kodak's shape laid onto the bundle's shapes up to ``small`` pixels per side, bucket indices the bundle's."""
    shapes = codec.bundle.bucket_shapes
    subset = tuple(shape for shape in shapes if max(shape) <= small)
    grid = choose_grid(*WHOLE, subset, overlap)
    return TileGrid(grid.height, grid.width, grid.row_heights, grid.col_widths,
                    tuple(shapes.index(subset[bucket]) for bucket in grid.buckets), overlap)


def code(codec: Codec, grid: TileGrid, x: np.ndarray, level: int):
    """(bits, decoded pixels, ŷ symbols) of x coded over a grid's windows."""
    stages = WindowedStages(grid, lambda bucket: codec._bucket_stages(level, bucket))
    coder = TileCoder(codec.bundle.at_level(level), stages)
    area = image_area(*WHOLE, grid.canvas, codec.bundle.manifest.padding)
    coded = coder.encode(x, area)
    decoded = coder.decode(coded.payload, coded.digests, "", area=area)
    symbols = np.concatenate([p.symbols for p in decoded.passes[1:]])
    return 8 * len(coded.payload), to_pixels(decoded.x_hat), symbols


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kodak", type=Path, help="folder of 512x768 (or 768x512) images")
    parser.add_argument("--bundle", help="bundle directory (default: the bundled default model)")
    parser.add_argument("--quality", type=int, default=2)
    parser.add_argument("--margins", default="0,32,64", help="window margins in pixels (default 0,32,64)")
    parser.add_argument("--small", type=int, default=448, help="the largest window side (default 448)")
    parser.add_argument("--limit", type=int, default=8, help="the first N images (default 8)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    codec = Codec.open(args.bundle, backend="onnxruntime")
    level = args.quality - 1
    whole = TileGrid(*WHOLE, (WHOLE[0],), (WHOLE[1],), (codec.bundle.bucket_shapes.index(WHOLE),))
    grids = {int(margin): windowed_grid(codec, 2 * int(margin), args.small) for margin in args.margins.split(",")}
    paths = sorted(args.kodak.glob("*.png"))[: args.limit]
    per_image = {}
    for name, path in zip(dataset_names(args.kodak, paths), paths, strict=True):
        image = np.asarray(Image.open(path).convert("RGB"))
        image = image if image.shape[0] == WHOLE[0] else np.ascontiguousarray(image.transpose(1, 0, 2))
        x = (image.transpose(2, 0, 1)[None] / np.float32(255)).astype(np.float32)
        bits, pixels, symbols = code(codec, whole, x, level)
        rows = {"whole": {"bpp": bits / image[..., 0].size, "psnr_db": psnr(image, pixels)}}
        for margin, grid in grids.items():
            windowed_bits, decoded, windowed_symbols = code(codec, grid, x, level)
            seams = seam_statistic(decoded, image, *grid.borders())
            windowed_psnr = psnr(image, decoded)
            rows[f"margin {margin}"] = {
                "bpp": windowed_bits / image[..., 0].size, "psnr_db": windowed_psnr,
                "bits_vs_whole": windowed_bits / bits - 1, "psnr_vs_whole_db": windowed_psnr - rows["whole"]["psnr_db"],
                "seam_ratio": seams["decoded"]["ratio"], "original_seam_ratio": seams["original"]["ratio"],
                "symbols_differing": float(np.mean(windowed_symbols != symbols)),
                "processed_vs_image_pixels": grid.coded_pixels / image[..., 0].size,
                "windows": f"{'+'.join(map(str, grid.row_heights))} x {'+'.join(map(str, grid.col_widths))}",
            }
        per_image[name] = rows
        print(name, {way: (round(r["bpp"], 4), round(r["psnr_db"], 3)) for way, r in rows.items()}, flush=True)
    means = {way: {key: statistics.fmean(r[way][key] for r in per_image.values())
                   for key, value in first.items() if not isinstance(value, str)}
             for way, first in next(iter(per_image.values())).items()}
    for margin in grids:
        means[f"margin {margin}"]["windows"] = next(iter(per_image.values()))[f"margin {margin}"]["windows"]
    save_report("window_margin.py", None, args.out, bundle=args.bundle or "default", quality=args.quality,
                means=means, per_image=per_image)


if __name__ == "__main__":
    main()
