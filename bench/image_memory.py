"""What an image's own arrays cost while it is coded: the peak of numpy's allocations (tracemalloc) during
compress and during decompress, per pixel, with the stage graphs already loaded (their sessions' memory is
the backend's, measured as resident memory by ``any_size.py`` and ``tile_memory.py``).

A coder holds one region's latents, hyper features, entropy parameters and symbols at a time, and the decoder
a band of ŷ across the image a region high: up to a region's size (``--max-region-pixels``, 16 MP) this grows
with the image, past it only with its pixels and its width, where the graphs' activations stay bounded by the
largest window.

Images are named as in ``any_size.py`` (``PATH``, ``PATH@HxW``, ``PATH^HxW``).

Example::

    python bench/image_memory.py '../shared/data/wikipedia_photos/006.png^3000x4000' \\
        --out bench/results/image-memory.json
"""

from __future__ import annotations

import argparse
import tracemalloc
from pathlib import Path

from licrt.runtime.codec import Codec

from any_size import load  # sibling scripts: python puts bench/ on the path
from report import save_report


def measure(codec: Codec, spec: str) -> dict:
    image = load(spec)
    height, width = image.shape[:2]
    grid = codec.grid(height, width)
    window = codec.bundle.bucket_shapes[grid.bucket]
    codec.decompress(codec.compress(image[: window[0], : window[1]]))  # load the main window's graphs untraced
    tracemalloc.start()
    data = codec.compress(image)
    _, compress_peak = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    codec.decompress(data)
    _, decompress_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    pixels = height * width
    return {"image": spec.split("/")[-1], "height": height, "width": width,
            "layout": "windows" if grid.windowed else "tiles", "parts": grid.rows * grid.cols,
            "regions": list(grid.region_grid),
            "compress_peak_mib": compress_peak / 2**20, "decompress_peak_mib": decompress_peak / 2**20,
            "compress_bytes_per_pixel": compress_peak / pixels, "decompress_bytes_per_pixel": decompress_peak / pixels}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("images", nargs="+", help="PATH, PATH@HxW (crop) or PATH^HxW (resized to cover, cropped)")
    parser.add_argument("--bundle", help="bundle directory (default: the bundled default model)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    codec = Codec.open(args.bundle, backend="onnxruntime")
    rows = []
    for spec in args.images:
        rows.append(measure(codec, spec))
        print(rows[-1], flush=True)
    save_report("image_memory.py", None, args.out, bundle=args.bundle or "default", images=rows)


if __name__ == "__main__":
    main()
