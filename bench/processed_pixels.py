"""Why time per megapixel is not flat: the pixels a grid processes per image pixel, and what a pixel costs.

Time to code an image is the pixels its stage graphs process times what a processed pixel costs. Both are
measured here, apart:

* **Processed per image pixel** (no coding; the grid licrt chooses, :func:`choose_grid`): for the crops
  of the any-size table and for random sizes, with the default bundle's shapes and with shape sets that add
  window sides of 512 to 768 (every multiple of 64, within the window limit), each with what its graphs
  take on disk (the default bundle's bytes per shape). A grid pads the image to a multiple of the hyperprior's
  stride (64 pixels) and runs overlapping windows, 64 pixels of overlap at every border between them; one
  bucket's shape exactly processes nothing more.
* **What a processed pixel costs**: g_a and g_s run alone on every shape of the default bundle that a
  grid of several windows uses (the fastest of ``--repeats`` runs, random pixels).

Example::

    python bench/processed_pixels.py --out bench/results/any-size/processed-pixels.json
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from pathlib import Path

import numpy as np

from licrt.runtime.codec import Codec, grid_overlap
from licrt.runtime.tiling import FITTING_SIDES, MAX_WINDOW_PIXELS, choose_grid

from report import save_report  # sibling script: python puts bench/ on the path

TABLE_SIZES = ((512, 768), (520, 776), (528, 784), (576, 832), (768, 1024), (832, 1152), (858, 1152),
               (864, 1152), (936, 1404), (2160, 3840), (3000, 4000), (6000, 8000))


def shape_set(extra_sides: tuple[int, ...], large: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
    """The default bundle's kind of shapes: every pair of fitting sides within the window limit, and the
    large single-window shapes."""
    sides = sorted({*FITTING_SIDES, *extra_sides})
    fitting = [(h, w) for h in sides for w in sides if h * w <= MAX_WINDOW_PIXELS]
    return tuple(dict.fromkeys([*fitting, *large]))


def ratios(sizes, shapes, overlap: int) -> list[float]:
    return [choose_grid(h, w, shapes, overlap).coded_pixels / (h * w) for h, w in sizes]


def per_pixel_seconds(codec: Codec, repeats: int) -> dict[str, dict[str, float]]:
    """g_a and g_s seconds per processed megapixel on every shape a grid of several windows may use."""
    level = codec.bundle.level
    rows = {}
    for index, (height, width) in enumerate(codec.bundle.bucket_shapes):
        if height * width > MAX_WINDOW_PIXELS:
            continue
        stages = codec._bucket_stages(level, index)
        x = np.random.default_rng(0).random((1, 3, height, width), dtype=np.float32)
        y_hat = np.rint(stages.run("g_a", {"x": x})["y"])
        seconds = {}
        for stage, feed in (("g_a", {"x": x}), ("g_s", {"y_hat": y_hat})):
            runs = []
            for _ in range(repeats):
                start = time.perf_counter()
                stages.run(stage, feed)
                runs.append(time.perf_counter() - start)
            seconds[stage] = min(runs) / (height * width / 1e6)
        rows[f"{height}x{width}"] = seconds
        print(height, width, seconds, flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--random-sizes", type=int, default=500, help="random image sizes, 400 to 6000 a side")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    codec = Codec.open(None, backend="onnxruntime")
    bundle = codec.bundle
    overlap = grid_overlap(bundle)
    shape_bytes = sum(path.stat().st_size for path in (bundle.root / "stages").iterdir()) / len(bundle.bucket_shapes)
    large = tuple(shape for shape in bundle.bucket_shapes if shape[0] * shape[1] >= MAX_WINDOW_PIXELS)
    rng = random.Random(0)
    sizes = [(rng.randint(400, 6000), rng.randint(400, 6000)) for _ in range(args.random_sizes)]
    sets = []
    for extra in ((), (512,), (512, 576), (512, 576, 640), (512, 576, 640, 704, 768)):
        shapes = bundle.bucket_shapes if not extra else shape_set(extra, large)
        table = ratios(TABLE_SIZES, shapes, overlap)
        spread = ratios(sizes, shapes, overlap)
        sets.append({"added_window_sides": list(extra), "shapes": len(shapes),
                     "graphs_mb": len(shapes) * shape_bytes / 1e6,
                     "table": {f"{h}x{w}": ratio for (h, w), ratio in zip(TABLE_SIZES, table, strict=True)},
                     "table_max": max(table),
                     "random": {"mean": statistics.mean(spread), "p10": float(np.percentile(spread, 10)),
                                "p90": float(np.percentile(spread, 90)), "max": max(spread)}})
        print(sets[-1]["added_window_sides"], sets[-1]["shapes"], sets[-1]["table_max"], sets[-1]["random"])
    per_pixel = per_pixel_seconds(codec, args.repeats)
    round_trip = [row["g_a"] + row["g_s"] for row in per_pixel.values()]
    save_report("processed_pixels.py", None, args.out, bundle="default", overlap=overlap,
                processed_per_image_pixel=sets, seconds_per_processed_mp=per_pixel,
                g_a_plus_g_s_s_per_mp={"min": min(round_trip), "median": statistics.median(round_trip),
                                       "max": max(round_trip)})


if __name__ == "__main__":
    main()
