"""Images of any size: what bits, time, seams and memory follow, image by image.

Each image runs in a process of its own (so its peak memory is its own):
compress, then decompress, with the API and the bundle given; timings are
of a second, warm run (graphs loaded) unless the image has more than
``--warm-limit`` megapixels. Reported per image: its grid (tiles or
windows), the pixels the stage graphs process against the image's, bpp,
PSNR, seconds per megapixel, peak resident memory (loading the image
included, measuring it not), and the seam statistic: the mean absolute jump
between neighbouring pixel rows (columns) across a tile border (where one
window's kept part meets the next), against the median of the same over
every other row (column) boundary of the decoded image, and of the original
at the same places (what the content itself jumps there).

An image is named ``PATH`` (the photo as it is), ``PATH@HxW`` (its top-left
H×W crop) or ``PATH^HxW`` (resized with Lanczos to cover H×W, then
centre-cropped: a stand-in for a larger photo).

Example::

    python bench/any_size.py ../shared/data/wikipedia_photos/001.png@512x768 \\
        ../shared/data/wikipedia_photos/001.png@520x776 --out bench/results/any-size.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import statistics
from pathlib import Path

import numpy as np
from PIL import Image

from licrt.evaluation.metrics import psnr

from report import save_report, timed_round_trip  # a sibling script: python puts bench/ on the path


def load(spec: str) -> np.ndarray:
    """The pixels an image spec names (see the module docstring)."""
    for mark in ("@", "^"):
        if mark in spec:
            path, size = spec.rsplit(mark, 1)
            height, width = map(int, size.lower().split("x"))
            break
    else:
        return np.asarray(Image.open(spec).convert("RGB"))
    image = Image.open(path).convert("RGB")
    if mark == "@":
        if image.height < height or image.width < width:
            raise SystemExit(f"{path} is {image.width}x{image.height}, smaller than a {width}x{height} crop")
        return np.asarray(image)[:height, :width]
    scale = max(height / image.height, width / image.width)
    resized = image.resize((round(image.width * scale), round(image.height * scale)), Image.LANCZOS)
    top, left = (resized.height - height) // 2, (resized.width - width) // 2
    return np.asarray(resized)[top : top + height, left : left + width]


def line_jumps(image: np.ndarray, axis: int) -> np.ndarray:
    """Mean absolute difference between each pair of neighbouring rows (axis 0) or columns (axis 1)."""
    other = 1 - axis
    return np.abs(np.diff(image.astype(np.float64), axis=axis)).mean(axis=(other, 2))


def seam_statistic(decoded: np.ndarray, original: np.ndarray, row_lines, col_lines) -> dict | None:
    """Mean jump across the borders of tiles (or of windows' kept parts) — between line - 1 and line of each
    row and column line given — against the median jump elsewhere, for the decoded image and the original
    (None without a border)."""
    borders = {0: np.asarray(row_lines, int), 1: np.asarray(col_lines, int)}
    borders = {axis: lines[lines < decoded.shape[axis]] for axis, lines in borders.items()}
    if not any(lines.size for lines in borders.values()):
        return None
    result = {}
    for name, image in (("decoded", decoded), ("original", original)):
        across, elsewhere = [], []
        for axis, lines in borders.items():
            jumps = line_jumps(image, axis)  # jumps[i]: between line i and i + 1
            at_border = np.zeros(jumps.size, bool)
            at_border[lines - 1] = True
            across += jumps[at_border].tolist()
            elsewhere += jumps[~at_border].tolist()
        result[name] = {"across_borders": statistics.fmean(across), "elsewhere_median": statistics.median(elsewhere),
                        "ratio": statistics.fmean(across) / statistics.median(elsewhere)}
    return result


def measure(spec: str, bundle: str | None, warm_limit: float) -> dict:
    """One image through compress and decompress, in this process."""
    from licrt.runtime.codec import Codec

    image = load(spec)
    height, width = image.shape[:2]
    codec = Codec.open(bundle, backend="onnxruntime")
    warm = height * width / 1e6 <= warm_limit
    if warm:
        codec.decompress(codec.compress(image))
    data, decoded, compress_s, decompress_s = timed_round_trip(codec, image)
    # before anything here measures the image (PSNR and seams take float copies of it)
    peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
    grid = codec.grid(height, width)
    megapixels = height * width / 1e6
    return {
        "image": spec.split("/")[-1], "height": height, "width": width,
        "layout": "windows" if grid.windowed else "tiles", "tiles": grid.rows * grid.cols,
        "row_heights": list(grid.row_heights), "col_widths": list(grid.col_widths), "overlap": grid.overlap,
        "processed_vs_image_pixels": grid.coded_pixels / (height * width),
        "bpp": 8 * len(data) / (height * width), "psnr_db": psnr(image, decoded), "warm": warm,
        "compress_s": compress_s, "decompress_s": decompress_s,
        "compress_s_per_mp": compress_s / megapixels, "decompress_s_per_mp": decompress_s / megapixels,
        "peak_rss_mib": peak_rss_mib,
        "seams": seam_statistic(decoded, image, *grid.borders()),
    }


def _child(connection, spec: str, bundle: str | None, warm_limit: float) -> None:
    connection.send(measure(spec, bundle, warm_limit))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("images", nargs="+", help="PATH, PATH@HxW (crop) or PATH^HxW (resized to cover, cropped)")
    parser.add_argument("--bundle", help="bundle directory (default: the bundled default model)")
    parser.add_argument("--warm-limit", type=float, default=4.0, metavar="MP",
                        help="time a warm second run of images up to this many megapixels (default 4)")
    parser.add_argument("--label", default="", help="what this run measures, e.g. the licrt version")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    context = multiprocessing.get_context("spawn")
    rows = []
    for spec in args.images:
        receive, send = context.Pipe(duplex=False)
        process = context.Process(target=_child, args=(send, spec, args.bundle, args.warm_limit))
        process.start()
        row = receive.recv()
        process.join()
        print(json.dumps({k: v for k, v in row.items() if k != "seams"}), flush=True)
        rows.append(row)
    save_report("any_size.py", None, args.out, label=args.label, bundle=args.bundle or "default", images=rows)


if __name__ == "__main__":
    main()
