import io

import imagecodecs
import numpy as np
import pytest
from PIL import Image, JpegImagePlugin

from licrt.evaluation.anchors import ANCHORS, anchor_names, get_anchor
from licrt.evaluation.metrics import psnr

from ..helpers import load_image

# JpegImagePlugin.get_sampling's code for 4:2:0 chroma subsampling.
SAMPLING_420 = 2


@pytest.fixture(scope="module")
def parrots():
    return load_image("parrots_256x256.png")


def lowest_rate_setting(anchor):
    # A larger quality costs more bytes, a larger distance fewer.
    return max(anchor.settings) if anchor.setting_name == "distance" else min(anchor.settings)


def highest_rate_setting(anchor):
    return min(anchor.settings) if anchor.setting_name == "distance" else max(anchor.settings)


def test_the_four_anchors_are_registered():
    assert anchor_names() == ["jpeg", "webp", "avif", "jxl"]
    assert get_anchor("avif") is ANCHORS["avif"]
    with pytest.raises(ValueError, match="unknown anchor 'png'; choose from jpeg, webp, avif, jxl"):
        get_anchor("png")


@pytest.mark.parametrize("name", ["jpeg", "webp", "avif", "jxl"])
def test_both_ends_of_the_sweep_round_trip(parrots, name):
    anchor = get_anchor(name)
    low = anchor.code(parrots, lowest_rate_setting(anchor))
    high = anchor.code(parrots, highest_rate_setting(anchor))
    for coded in (low, high):
        assert coded.decoded.shape == parrots.shape
        assert coded.decoded.dtype == np.uint8
        assert coded.encode_seconds > 0 and coded.decode_seconds > 0
    assert len(high.data) > len(low.data)
    assert psnr(parrots, high.decoded) > psnr(parrots, low.decoded)


def test_webp_is_lossy_even_at_the_top_quality(parrots):
    coded = get_anchor("webp").code(parrots, 97)
    assert np.isfinite(psnr(parrots, coded.decoded))
    lossless_size = len(imagecodecs.webp_encode(parrots, lossless=True))
    assert len(coded.data) < lossless_size / 2


def test_jpeg_subsamples_chroma_420(parrots):
    coded = get_anchor("jpeg").code(parrots, 90)
    with Image.open(io.BytesIO(coded.data)) as image:
        assert JpegImagePlugin.get_sampling(image) == SAMPLING_420
