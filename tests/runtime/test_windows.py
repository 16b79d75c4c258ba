"""Coding window by window: a grid's windows compute what one run over the whole image computes."""

import numpy as np
import pytest

from licrt.evaluation.metrics import psnr
from licrt.runtime.codec import Codec
from licrt.runtime.scheduler import TileCoder
from licrt.runtime.stages import WindowedStages
from licrt.runtime.tiling import WINDOW_MARGIN, TileGrid, crop, image_area, pad

from tests.helpers import load_image

WHOLE = (256, 448)


@pytest.fixture(scope="module")
def default_codec():
    return Codec.open(None, backend="onnxruntime")


def code(codec: Codec, grid: TileGrid, image: np.ndarray):
    """(payload bits, decoded pixels, ŷ symbols) of an image coded over a grid's windows at the default level."""
    stages = WindowedStages(list(grid.windows()), lambda bucket: codec._bucket_stages(codec.bundle.level, bucket))
    coder = TileCoder(codec.bundle, stages)
    padding = codec.bundle.manifest.padding
    area = image_area(*image.shape[:2], grid.canvas, padding)
    padded = pad(image, *grid.canvas, padding)
    coded = coder.encode((padded.transpose(2, 0, 1)[None] / np.float32(255)).astype(np.float32), area)
    decoded = coder.decode(coded.payload, coded.digests, "", area=area)
    pixels = np.rint(np.clip(decoded.x_hat[0].transpose(1, 2, 0), 0, 1) * 255).astype(np.uint8)
    pixels = crop(pixels, *image.shape[:2], padding)
    return 8 * len(coded.payload), pixels, np.concatenate([p.symbols for p in decoded.passes[1:]])


def test_two_windows_code_what_one_run_over_the_image_codes(default_codec):
    image = np.pad(load_image("parrots_256x256.png"), ((0, 0), (0, 192), (0, 0)), mode="reflect")
    shapes = default_codec.bundle.bucket_shapes
    whole = TileGrid(*WHOLE, (256,), (448,), (shapes.index(WHOLE),))
    # two 256² windows overlapping by twice the margin: 256 + 256 − 64 columns
    windows = TileGrid(*WHOLE, (256,), (256, 256), (shapes.index((256, 256)),) * 2, 2 * WINDOW_MARGIN)
    assert windows.canvas == WHOLE
    bits, pixels, symbols = code(default_codec, whole, image)
    windowed_bits, windowed_pixels, windowed_symbols = code(default_codec, windows, image)
    assert np.mean(symbols == windowed_symbols) > 0.95  # 0.968 measured
    assert abs(windowed_bits / bits - 1) < 0.01  # −0.35 %; tiles side by side, one entropy coding: +1.05 %
    assert abs(psnr(image, windowed_pixels) - psnr(image, pixels)) < 0.05  # −0.022 dB; tiles: −0.063 dB
    # no seam where the windows' kept parts meet (column 224): the jump there is like its neighbours'
    jumps = np.abs(np.diff(windowed_pixels.astype(float), axis=1)).mean(axis=(0, 2))
    assert jumps[223] < 1.15 * np.median(jumps[200:248])  # 1.08 measured; tiles side by side: 1.19
