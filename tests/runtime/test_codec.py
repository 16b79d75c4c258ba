"""The runtime end to end on the tiny bundle, against the PyTorch model it came from."""

import numpy as np
import pytest

from tests.helpers import load_image, reference_coding, tiny_model
from licrt.runtime.backends.onnxruntime import OnnxRuntimeBackend
from licrt.runtime.backends.perturbed import PerturbedBackend
from licrt.runtime.codec import Codec
from licrt.runtime.container import Container, TileSection
from licrt.runtime.errors import BitstreamError, ImageError
from licrt.runtime.images import Photo
from licrt.runtime.scheduler import DivergenceError
from licrt.runtime.stages import Pixels


@pytest.fixture(scope="module")
def codec(tiny_bundle):
    return Codec.open(tiny_bundle, backend="onnxruntime")


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def test_round_trip_keeps_size_and_is_deterministic(codec):
    image = load_image("house_96x64.png")
    data = codec.compress(image)
    assert codec.compress(image) == data
    decoded = codec.decompress(data)
    assert decoded.shape == image.shape and decoded.dtype == np.uint8
    assert np.array_equal(codec.decompress(data), decoded)


def test_decoded_image_matches_pytorch_reference(codec):
    image = load_image("house_96x64.png")
    decoded = codec.decompress(codec.compress(image))
    _, expected = reference_coding(tiny_model(), image, (128, 128))
    assert psnr(decoded, expected.astype(np.uint8)) >= 50


def test_file_size_matches_the_models_estimate(codec):
    image = load_image("parrots_256x256.png")  # 3x3 windows of 128x128 overlapping by 64
    data = codec.compress(image)
    container = Container.from_bytes(data)
    assert (container.header.tile_rows, container.header.tile_cols, container.header.windowed) == (3, 3, True)
    estimate_bytes = sum(codec.inspect(data).bits_per_pass.values()) / 8
    coded = len(data) - container.framing
    assert estimate_bytes <= coded <= estimate_bytes * 1.01 + 8 * 4


def test_latents_of_the_padding_are_not_coded(codec):
    image = load_image("house_96x64.png")[:20, :30]  # in one 128x128 tile: 16-pixel latents, 64-pixel ẑ
    report = codec.inspect(codec.compress(image))
    channels = codec.bundle.manifest.schedule.channels
    z_channels = codec.bundle.manifest.buckets[0].stages["h_s"].inputs[0].shape[1]
    assert report.symbols_per_pass["z"] == z_channels * 1 * 1
    assert sum(report.symbols_per_pass.values()) - report.symbols_per_pass["z"] == channels * 2 * 2
    assert np.array_equal(codec.decompress(codec.compress(image)).shape, (20, 30, 3))


def test_tiled_odd_size_round_trip(codec):
    image = load_image("lighthouse_250x190.png")
    decoded = codec.decompress(codec.compress(image))
    assert decoded.shape == (190, 250, 3)


@pytest.mark.parametrize("array", [
    np.zeros((10, 10, 1), np.uint8),
    np.zeros((10, 10, 4), np.uint8),
    np.zeros((10, 10, 3), np.float32),
    np.zeros((0, 10, 3), np.uint8),
])
def test_bad_arrays_are_refused(codec, array):
    with pytest.raises(ImageError):
        codec.compress(array)


def test_any_corruption_is_an_error_never_an_image(codec):
    data = codec.compress(load_image("house_96x64.png"))
    rng = np.random.default_rng(0)
    for position in rng.choice(len(data), size=60, replace=False):
        flipped = bytearray(data)
        flipped[position] ^= 1 << int(rng.integers(8))
        with pytest.raises(BitstreamError):
            codec.decompress(bytes(flipped))


def test_a_decoder_with_different_floats_fails_loudly_naming_both_profiles(codec, tiny_bundle):
    data = codec.compress(load_image("parrots_256x256.png"))
    # Floats 1e-3 apart, as TF32 or FP16 would compute: far beyond what the guard covers.
    other = Codec(tiny_bundle, PerturbedBackend(OnnxRuntimeBackend(providers=["CPUExecutionProvider"]), 1e-3))
    with pytest.raises(DivergenceError) as error:
        other.decompress(data)
    message = str(error.value)
    assert message.startswith("decoding diverged at pass ")
    assert "although the file's checks hold" in message
    assert f"encoded under '{codec.backend.profile}'; this decoder runs '{other.backend.profile}'" in message


def test_the_profile_names_what_changes_floats():
    profile = OnnxRuntimeBackend(providers=["CPUExecutionProvider"], graph_optimization="basic").profile
    assert profile.startswith("onnxruntime ") and " CPU " in profile and profile.endswith(" opt=basic fp32")
    assert OnnxRuntimeBackend(providers=["CPUExecutionProvider"], threads=1).profile == \
        OnnxRuntimeBackend(providers=["CPUExecutionProvider"], threads=2).profile  # threads change no bit


@pytest.mark.parametrize("side, windows", [(128, 1), (256, 9)])
def test_progress_counts_every_stage_run(tiny_bundle, side, windows):
    """What the progress bar follows: one tick per stage graph run, as many as the coder announces (each stage
    once per window)."""
    codec = Codec(tiny_bundle, OnnxRuntimeBackend())
    grid = codec.grid(side, side)
    coder = codec._coder(0, grid)
    ticks = []
    coder.on_run = ticks.append
    image = load_image("parrots_256x256.png")[:side, :side]
    coded = list(coder.encode(Pixels(image, grid.canvas, tiny_bundle.manifest.padding)))
    assert sum(ticks) == coder.runs(encode=True) == (3 + len(tiny_bundle.manifest.schedule.steps)) * windows
    ticks.clear()
    sections = [TileSection(part.payload, part.digests) for part in coded]
    list(coder.decode(sections, "", reconstruct=True, estimate=False))
    assert sum(ticks) == coder.runs(encode=False) == (2 + len(tiny_bundle.manifest.schedule.steps)) * windows


def test_gray_comes_back_gray(codec):
    gray = load_image("house_96x64.png")[..., 1]
    data = codec.compress(gray)
    assert Container.from_bytes(data).header.gray
    decoded = codec.decompress(data)
    assert decoded.shape == gray.shape and decoded.dtype == np.uint8
    # the mean of the model's three decoded channels
    colour = codec.decompress(codec.compress(np.dstack([gray] * 3)))
    assert np.abs(decoded.astype(int) - colour.mean(axis=2)).max() <= 1


def test_icc_profile_travels_with_the_file(codec):
    photo = Photo(load_image("house_96x64.png"), icc_profile=b"an ICC profile")
    data = codec.compress(photo)
    assert codec.decompress_photo(data).icc_profile == b"an ICC profile"
    assert codec.decompress_photo(codec.compress(photo.pixels)).icc_profile == b""
