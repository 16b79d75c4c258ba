"""What a crop of a photo costs beyond its content: its bits against what the same pixels cost inside the photo.

A crop is coded as a file of its own; the whole photo is coded once more, and the bits its entropy model
spends are mapped to the pixels they describe (each ŷ symbol's −log2 p spread over its stride² block of
pixels, each ẑ symbol's over its block). What the crop's pixels cost inside the photo is the content's price
with no edge, no padding and no bucket shape of its own; the crop's excess over it is what cutting it out
costs: the context and hyperprior start afresh at its edges, and, unless it is exactly a bucket's shape, its
padding. Crops start at the photo's top-left corner, so their top and left edges are the photo's too.

Compare each crop's excess with the excess of the crop that is exactly a bucket's shape (512x768 in the
default bundle): the difference is what not being a bucket's shape costs. Where a crop's side ends inside a
latent block, the bits of its half-covered latents are also set against the same blocks' bits in the photo.

Bits are −Σ log2 p of ẑ and ŷ under the coding tables (the file adds the guard's side streams, the coder's
termination and its header: reported).

Example::

    python bench/content_cost.py ../shared/data/wikipedia_photos/006.png --crops 512x768,520x776 \\
        --out bench/results/any-size/content-cost.json
"""

from __future__ import annotations

import argparse
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

from licrt.runtime.codec import Codec
from licrt.runtime.scheduler import TileCoder
from licrt.runtime.tiling import image_offsets

from report import save_report  # sibling script: python puts bench/ on the path

DEFAULT_CROPS = "512x768,520x776,528x784,576x832,768x1024,832x1152,858x1152,864x1152"


@contextmanager
def bit_maps():
    """While active, every coder that encodes adds each symbol's −log2 p to maps of ŷ's and ẑ's positions:
    yields {coder: {"y": (h, w) bits, "z": (h, w) bits}}."""
    maps: dict[TileCoder, dict[str, np.ndarray]] = {}
    code_batch, z_pass = TileCoder._code_batch, TileCoder._z_pass

    def of(coder: TileCoder) -> dict[str, np.ndarray]:
        return maps.setdefault(coder, {"y": np.zeros(coder.y_shape[2:]), "z": np.zeros(coder.z_shape[2:])})

    def recording_code_batch(self, walk, parameters, index, code, y_hat):
        _, rows, cols = index

        def recorded(index, decided):
            symbols = code(index, decided)
            bits = self.coding.tables.element_bits(symbols, decided.rows)
            np.add.at(of(self)["y"], (rows, cols), bits.reshape(-1, np.size(rows)).sum(axis=0))
            return symbols

        code_batch(self, walk, parameters, index, recorded, y_hat)

    def recording_z_pass(self, layout, z_symbols, estimate):
        bits = self.bundle.z_tables.element_bits(z_symbols, layout.z_rows)
        of(self)["z"][layout.z_coded] += bits.reshape(self.z_shape[1], -1).sum(axis=0)
        return z_pass(self, layout, z_symbols, estimate)

    TileCoder._code_batch, TileCoder._z_pass = recording_code_batch, recording_z_pass
    try:
        yield maps
    finally:
        TileCoder._code_batch, TileCoder._z_pass = code_batch, z_pass


def coded(codec: Codec, image: np.ndarray) -> dict:
    """Code an image (one region): its file's bits, ŷ's bits per latent and the bits its symbols cost on its
    pixels, (H, W)."""
    height, width = image.shape[:2]
    grid = codec.grid(height, width)
    if grid.region_grid != (1, 1):
        raise SystemExit(f"a {height}x{width} image is coded in regions; this bench maps one region's bits")
    with bit_maps() as maps:
        data = codec.compress(image)
    ((coder, bits),) = maps.items()
    canvas = coder.stages.inputs.shape
    y_stride = canvas[0] // bits["y"].shape[0]
    z_stride = canvas[0] // bits["z"].shape[0]
    per_pixel = (np.kron(bits["y"], np.ones((y_stride, y_stride))) / y_stride**2)[: canvas[0], : canvas[1]]
    per_pixel += (np.kron(bits["z"], np.ones((z_stride, z_stride))) / z_stride**2)[: canvas[0], : canvas[1]]
    top, left = image_offsets(height, width, canvas, codec.bundle.manifest.padding)
    return {"file_bits": 8 * len(data), "side_bits": codec.inspect(data).side_bits,
            "information_bits": float(bits["y"].sum() + bits["z"].sum()), "y_bits": bits["y"],
            "y_stride": y_stride, "at_corner": (top, left) == (0, 0),
            "per_pixel": per_pixel[top : top + height, left : left + width],
            "windows": grid.rows * grid.cols, "exact_bucket": grid.coded_pixels == height * width}


def half_covered(height: int, width: int, stride: int) -> np.ndarray | None:
    """(rows, cols) mask of the latents an image at the canvas's corner covers only in part (None: none)."""
    if height % stride == 0 and width % stride == 0:
        return None
    mask = np.zeros((-(-height // stride), -(-width // stride)), bool)
    if height % stride:
        mask[-1] = True
    if width % stride:
        mask[:, -1] = True
    return mask


def measure(codec: Codec, path: Path, crops: list[tuple[int, int]]) -> dict:
    photo = np.asarray(Image.open(path).convert("RGB"))
    whole = coded(codec, photo)
    rows = []
    for height, width in crops:
        crop = coded(codec, photo[:height, :width])
        in_photo = float(whole["per_pixel"][:height, :width].sum())
        row = {"crop": f"{height}x{width}", "windows": crop["windows"], "exact_bucket": crop["exact_bucket"],
               "bpp": crop["file_bits"] / (height * width),
               "information_bits": crop["information_bits"], "in_photo_bits": in_photo,
               "excess": crop["information_bits"] / in_photo - 1, "side_bits": crop["side_bits"],
               "file_over_information": crop["file_bits"] / crop["information_bits"] - 1}
        mask = half_covered(height, width, crop["y_stride"])
        if mask is not None and crop["at_corner"] and whole["at_corner"]:  # both latent grids start at (0, 0)
            same_blocks = whole["y_bits"][: mask.shape[0], : mask.shape[1]][mask].sum()
            row["half_covered_latents_vs_photo"] = float(crop["y_bits"][: mask.shape[0], : mask.shape[1]][mask].sum()
                                                         / same_blocks)
        rows.append(row)
        print(path.name, row, flush=True)
    bucket = next((row for row in rows if row["exact_bucket"]), None)
    for row in rows:
        row["excess_vs_bucket_crop"] = None if bucket is None else (1 + row["excess"]) / (1 + bucket["excess"]) - 1
    return {"photo": f"{path.parent.name}/{path.name}", "height": photo.shape[0], "width": photo.shape[1],
            "photo_bpp": whole["file_bits"] / photo.shape[0] / photo.shape[1],
            "bucket_crop": None if bucket is None else bucket["crop"], "crops": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("photos", nargs="+", type=Path)
    parser.add_argument("--crops", default=DEFAULT_CROPS, help=f"HxW,... from the top-left corner "
                                                               f"(default {DEFAULT_CROPS})")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    crops = [tuple(map(int, crop.lower().split("x"))) for crop in args.crops.split(",")]
    codec = Codec.open(None, backend="onnxruntime")
    save_report("content_cost.py", None, args.out, bundle="default",
                photos=[measure(codec, path, crops) for path in args.photos])


if __name__ == "__main__":
    main()
