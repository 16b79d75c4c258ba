import io

import numpy as np
import pytest
import torch
from PIL import Image

from licrt.export.metrics import ms_ssim as torch_ms_ssim
from licrt.evaluation.metrics import ms_ssim, psnr

from ..helpers import load_image


def jpeg_round_trip(image: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"))


def torch_reference(reference: np.ndarray, decoded: np.ndarray) -> float:
    def as_batch(image):
        return torch.from_numpy(image.copy()).permute(2, 0, 1)[None].float() / 255

    return float(torch_ms_ssim(as_batch(reference), as_batch(decoded)))


@pytest.fixture(scope="module")
def parrots():
    return load_image("parrots_256x256.png")


def test_psnr_of_known_errors():
    reference = np.full((8, 8, 3), 100, dtype=np.uint8)
    assert psnr(reference, reference + 1) == pytest.approx(48.1308036, abs=1e-6)
    assert psnr(reference, reference - 10) == pytest.approx(28.1308036, abs=1e-6)
    half_wrong = reference.copy()
    half_wrong[:4] += 2  # MSE 2
    assert psnr(reference, half_wrong) == pytest.approx(10 * np.log10(255**2 / 2))


def test_psnr_of_identical_images_is_infinite(parrots):
    assert psnr(parrots, parrots.copy()) == float("inf")


def test_ms_ssim_of_identical_images_is_one(parrots):
    assert ms_ssim(parrots, parrots.copy()) == pytest.approx(1.0, abs=1e-12)


def test_ms_ssim_matches_the_training_metric_on_a_real_image(parrots):
    decoded = jpeg_round_trip(parrots, 30)
    assert ms_ssim(parrots, decoded) == pytest.approx(torch_reference(parrots, decoded), abs=1e-5)


def test_ms_ssim_matches_the_training_metric_on_noise():
    # Odd sizes exercise the pooling's floor; noise makes terms near zero.
    rng = np.random.default_rng(0)
    reference = rng.integers(0, 256, (181, 203, 3), dtype=np.uint8)
    unrelated = rng.integers(0, 256, reference.shape, dtype=np.uint8)
    noisy = np.clip(reference + rng.normal(0, 20, reference.shape), 0, 255).astype(np.uint8)
    for decoded in (unrelated, noisy):
        assert ms_ssim(reference, decoded) == pytest.approx(
            torch_reference(reference, decoded), abs=1e-5
        )


def test_lower_quality_gives_lower_ms_ssim(parrots):
    scores = [ms_ssim(parrots, jpeg_round_trip(parrots, quality)) for quality in (90, 50, 20, 5)]
    assert scores == sorted(scores, reverse=True)
    assert len(set(scores)) == len(scores)


@pytest.mark.parametrize("shape", [(175, 256, 3), (256, 175, 3), (64, 64, 3)])
def test_ms_ssim_rejects_images_too_small_for_five_scales(shape):
    image = np.zeros(shape, dtype=np.uint8)
    with pytest.raises(ValueError, match="at least 176x176"):
        ms_ssim(image, image)


def test_ms_ssim_accepts_the_smallest_size():
    image = np.random.default_rng(1).integers(0, 256, (176, 176, 3), dtype=np.uint8)
    assert ms_ssim(image, image) == pytest.approx(1.0)


def test_images_of_different_sizes_are_rejected(parrots):
    with pytest.raises(ValueError, match="differ in size"):
        psnr(parrots, parrots[:-1])
