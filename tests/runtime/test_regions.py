"""A large image's entropy path region by region: each region a section, the transforms over the whole image."""

import dataclasses

import numpy as np
import pytest

from licrt.evaluation.metrics import psnr
from licrt.runtime.backends.onnxruntime import OnnxRuntimeBackend
from licrt.runtime.backends.perturbed import PerturbedBackend
from licrt.runtime.codec import Codec
from licrt.runtime.container import Container, TileSection
from licrt.runtime.errors import BitstreamError, LimitError
from licrt.runtime.limits import Limits

from tests.helpers import load_image

#: 256×900: three windows of the default shapes side by side (256×320, 256×320, 256×448 on a 256×960 canvas).
SHAPE = (256, 900)


@pytest.fixture(scope="module")
def image():
    return np.pad(load_image("parrots_256x256.png"), ((0, 0), (0, SHAPE[1] - 256), (0, 0)), mode="reflect")


@pytest.fixture(scope="module")
def backend():
    return OnnxRuntimeBackend(providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def files(image, backend):
    """The image coded as one region, and in two (a limit of half its canvas)."""
    whole = Codec.open(None, backend)
    halves = Codec(whole.bundle, backend, Limits(max_region_pixels=256 * 960 // 2))
    return whole, whole.compress(image), halves, halves.compress(image)


def test_regions_cost_few_bits_and_show_no_seam(image, files):
    whole, one, halves, two = files
    assert Container.from_bytes(one).header.regions == (1, 1)
    header = Container.from_bytes(two).header
    assert (header.tile_rows, header.tile_cols, header.regions, header.sections) == (1, 3, (1, 2), 2)
    assert halves.compress(image) == two  # byte for byte
    # the decoder follows the file's regions, whatever its own limit allows an encoder
    decoded = whole.decompress(two)
    assert np.array_equal(decoded, halves.decompress(two))
    reference = whole.decompress(one)
    # the context and the hyperprior start afresh where the regions meet: +2.3 % bits, −0.011 dB measured
    assert len(two) / len(one) - 1 < 0.04
    assert psnr(image, decoded) > psnr(image, reference) - 0.05
    # g_s runs over the whole canvas: no seam where the regions meet (column 544), the jump there is the one
    # region's (1.00× measured)
    line = halves.grid(*SHAPE).regions()[0][1].rect.left
    jumps = np.abs(np.diff(decoded.astype(float), axis=1)).mean(axis=(0, 2))
    reference_jumps = np.abs(np.diff(reference.astype(float), axis=1)).mean(axis=(0, 2))
    assert line == 544 and jumps[line - 1] < 1.1 * reference_jumps[line - 1]


def test_regions_decode_on_another_backend(files, backend):
    whole, _, _, two = files
    perturbed = Codec(whole.bundle, PerturbedBackend(backend, whole.bundle.manifest.guard_epsilon))
    assert np.abs(perturbed.decompress(two).astype(int) - whole.decompress(two)).max() <= 1


def test_a_decoder_refuses_regions_larger_than_its_limit(files, backend):
    whole, one, _, two = files
    strict = Codec(whole.bundle, backend, Limits(max_region_pixels=256 * 960 // 2 - 1))
    with pytest.raises(LimitError, match="regions of 122,880 pixels, more than the limit of 122,879"):
        strict.decompress(two)
    with pytest.raises(LimitError, match="regions of 245,760 pixels"):
        strict.decompress(one)
    # nor does an encoder code a region smaller than a window keeps: it refuses before any work
    with pytest.raises(LimitError, match="the image is coded in regions of 81,920 pixels, more than the limit of "
                                         "1,000"):
        Codec(whole.bundle, backend, Limits(max_region_pixels=1000)).compress(np.zeros((*SHAPE, 3), np.uint8))


def forged(data: bytes, **fields) -> bytes:
    """A file with header fields or sections replaced, every check valid."""
    container = Container.from_bytes(data)
    sections = fields.pop("sections", container.sections)
    return Container(dataclasses.replace(container.header, **fields), sections).to_bytes()


def test_forged_regions_are_refused(files):
    whole, _, _, two = files
    with pytest.raises(BitstreamError, match="1x4 regions are more than its 1x3 windows"):
        whole.decompress(forged(two, regions=(1, 4)))
    # three regions where the encoder coded two: the sections no longer match, whatever they hold
    sections = Container.from_bytes(two).sections
    with pytest.raises(BitstreamError):
        whole.decompress(forged(two, regions=(1, 3), sections=(*sections, sections[1])))
    with pytest.raises(BitstreamError, match="region 2 of 2"):
        whole.decompress(forged(two, sections=(sections[0], TileSection(sections[0].payload, sections[1].digests))))
