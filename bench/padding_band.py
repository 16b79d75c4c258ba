"""Which latents beyond the image to code, and what to pad with: bits against the pixels along the border.

licrt codes the latents whose block of pixels overlaps the image (band 0);
the others are zero for the entropy coding, and the decoder gives them the
nearest coded latent's value before g_s, which reaches a few latents beyond
the image's edge. This codes crops whose sides are not multiples of the
latent block in other ways, in one process (encoder and decoder follow the
same rule):

* band B: also code the B latents beyond the image on each side (they hold
  the padding g_a saw), for B = 0, 1, 2;
* padding: replicate the edge (the default bundle's rule), reflect it, the
  mean of the last 8 rows or columns, or zeros — what g_a sees in the partly
  covered blocks;
* synthesis fill: what g_s sees where nothing was coded, the nearest coded
  latent (licrt's rule) or zeros.

Reported per setting: bpp, PSNR of the whole image and of its border strip
(the last 16 rows and columns, where the choice acts).

Example::

    python bench/padding_band.py ../shared/data/wikipedia_photos --count 6 --out bench/results/padding-band.json
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np
from PIL import Image

from licrt.evaluation.metrics import psnr
from licrt.runtime import scheduler, stages, tiling
from licrt.runtime.codec import Codec

from report import dataset_names, save_report  # a sibling script: python puts bench/ on the path

#: Crop sizes: sides 1 to 15 pixels past a multiple of the 16-pixel latent block, and odd ones.
CROPS = ((520, 776), (601, 809), (455, 687), (713, 999))
STRIP = 16


def banded_mask(band: int):
    """ImageArea.latent_mask grown by ``band`` latents on every side."""
    plain = tiling.ImageArea.latent_mask

    def latent_mask(area, rows, cols):
        mask = plain(area, rows, cols)
        for _ in range(band):
            grown = mask.copy()
            grown[1:] |= mask[:-1]
            grown[:-1] |= mask[1:]
            grown[:, 1:] |= grown[:, :-1].copy()
            grown[:, :-1] |= grown[:, 1:].copy()
            mask = grown
        return mask

    return latent_mask


def padded_with(mode: str):
    """stages.pad_by with another numpy padding mode; ``mean``: the mean of the last 8 rows or columns."""
    options = {"stat_length": 8} if mode == "mean" else {}

    def pad_by(tile, before, after, padding):
        return np.pad(tile, ((before[0], after[0]), (before[1], after[1]), (0, 0)), mode=mode, **options)

    return pad_by


def strip_psnr(image: np.ndarray, decoded: np.ndarray) -> float:
    """PSNR over the last STRIP rows and columns of the image."""
    mask = np.zeros(image.shape[:2], bool)
    mask[-STRIP:] = mask[:, -STRIP:] = True
    error = (image[mask].astype(np.float64) - decoded[mask]) ** 2
    return float(10 * np.log10(255**2 / error.mean()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("photos", type=Path, help="folder of photos at least 713x999")
    parser.add_argument("--count", type=int, default=6)
    parser.add_argument("--bundle", help="bundle directory (default: the bundled default model)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    codec = Codec.open(args.bundle, backend="onnxruntime")
    paths = [path for path in sorted(args.photos.glob("*.png"))
             if min(Image.open(path).size) >= 713 and max(Image.open(path).size) >= 999][: args.count]
    settings = [(0, "edge", "zeros"), *((band, "edge", "nearest") for band in (0, 1, 2)),
                *((0, mode, "nearest") for mode in ("reflect", "mean", "constant"))]
    rows = []
    for name, path in zip(dataset_names(args.photos, paths), paths, strict=True):
        photo = np.asarray(Image.open(path).convert("RGB"))
        photo = photo if photo.shape[0] <= photo.shape[1] else np.ascontiguousarray(photo.transpose(1, 0, 2))
        for height, width in CROPS:
            image = photo[:height, :width]
            for band, mode, fill in settings:
                tiling.ImageArea.latent_mask, plain_mask = banded_mask(band), tiling.ImageArea.latent_mask
                stages.pad_by, plain_pad = padded_with(mode), stages.pad_by
                plain_fill = scheduler.extend_edges
                if fill == "zeros":
                    scheduler.extend_edges = lambda y_hat, coded: y_hat
                codec._coders.clear()  # they keep each area's coded latents
                try:
                    data = codec.compress(image)
                    decoded = codec.decompress(data)
                finally:
                    tiling.ImageArea.latent_mask, stages.pad_by = plain_mask, plain_pad
                    scheduler.extend_edges = plain_fill
                rows.append({"image": name, "crop": f"{height}x{width}", "band": band, "padding": mode,
                             "synthesis_fill": fill,
                             "bpp": 8 * len(data) / (height * width), "psnr_db": psnr(image, decoded),
                             "border_psnr_db": strip_psnr(image, decoded)})
                print(rows[-1], flush=True)
    summary = []
    for band, mode, fill in settings:
        chosen = [row for row in rows if (row["band"], row["padding"], row["synthesis_fill"]) == (band, mode, fill)]
        summary.append({"band": band, "padding": mode, "synthesis_fill": fill,
                        **{key: statistics.fmean(row[key] for row in chosen)
                           for key in ("bpp", "psnr_db", "border_psnr_db")}})
    save_report("padding_band.py", None, args.out, crops=[f"{h}x{w}" for h, w in CROPS], means=summary, rows=rows)


if __name__ == "__main__":
    main()
