"""Full-reference quality metrics of 8-bit RGB images, in plain numpy.

:func:`ms_ssim` reproduces the training metric of :mod:`licrt.export.metrics`
(same window, constants, scales and pooling) without torch, so that numbers
measured at evaluation time compare directly with those logged in training.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from licrt.runtime.images import Photo

_PEAK = 255.0

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
_WINDOW_SIZE = 11
_WINDOW_SIGMA = 1.5
#: The coarsest of the five scales must still hold one whole window.
MS_SSIM_MIN_SIDE = _WINDOW_SIZE * 2 ** (len(MS_SSIM_WEIGHTS) - 1)
# Floor of every per-scale term, as in the training metric: a negative term
# (anti-correlated structure) has no real fractional power.
_TERM_FLOOR = 1e-8


def psnr(reference: np.ndarray, decoded: np.ndarray) -> float:
    """Peak signal-to-noise ratio over all pixels and channels, in dB.

    Args:
        reference: The original (H, W, 3) uint8 image.
        decoded: The reconstruction, same shape and dtype.

    Returns:
        PSNR for a peak of 255, or ``inf`` for identical images.

    Raises:
        ImageError: An input is not an (H, W, 3) uint8 array.
        ValueError: The two images differ in size.
    """
    reference, decoded = _as_float_pair(reference, decoded)
    mse = float(np.mean((reference - decoded) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(_PEAK**2 / mse)


def ms_ssim(reference: np.ndarray, decoded: np.ndarray) -> float:
    """Multi-scale SSIM (Wang et al. 2003) with the usual five scales.

    Luminance and contrast-structure maps are averaged over all three
    channels together, as the training metric does.

    Args:
        reference: The original (H, W, 3) uint8 image.
        decoded: The reconstruction, same shape and dtype.

    Returns:
        MS-SSIM in (0, 1]; 1 for identical images.

    Raises:
        ImageError: An input is not an (H, W, 3) uint8 array.
        ValueError: The two images differ in size, or a side is shorter
            than 176 pixels (too small for five scales).
    """
    reference, decoded = _as_float_pair(reference, decoded)
    height, width = reference.shape[:2]
    if min(height, width) < MS_SSIM_MIN_SIDE:
        raise ValueError(
            f"MS-SSIM needs images of at least {MS_SSIM_MIN_SIDE}x{MS_SSIM_MIN_SIDE} pixels "
            f"for its {len(MS_SSIM_WEIGHTS)} scales, got {height}x{width}"
        )
    window = _gaussian_window()
    terms = []
    for scale in range(len(MS_SSIM_WEIGHTS)):
        luminance, contrast_structure = _ssim_parts(reference, decoded, window)
        is_coarsest = scale == len(MS_SSIM_WEIGHTS) - 1
        terms.append(luminance * contrast_structure if is_coarsest else contrast_structure)
        reference, decoded = _halve(reference), _halve(decoded)
    floored = np.maximum(terms, _TERM_FLOOR)
    return float(np.prod(floored ** np.asarray(MS_SSIM_WEIGHTS)))


def _as_float_pair(reference: np.ndarray, decoded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Check two images of one size and return them as RGB float64 (gray as R = G = B)."""
    reference, decoded = Photo(reference).rgb, Photo(decoded).rgb
    if reference.shape != decoded.shape:
        raise ValueError(
            f"the images differ in size: {reference.shape[:2]} and {decoded.shape[:2]}"
        )
    return reference.astype(np.float64), decoded.astype(np.float64)


def _gaussian_window() -> np.ndarray:
    """The normalised 1-D Gaussian; its outer product is the 2-D SSIM window."""
    offsets = np.arange(_WINDOW_SIZE) - _WINDOW_SIZE // 2
    kernel = np.exp(-(offsets**2) / (2 * _WINDOW_SIGMA**2))
    return kernel / kernel.sum()


def _blur(image: np.ndarray, window: np.ndarray) -> np.ndarray:
    """'Valid' 2-D Gaussian filtering of an (H, W, C) image, one axis at a time."""
    for axis in (0, 1):
        image = sliding_window_view(image, len(window), axis=axis) @ window
    return image


def _ssim_parts(a: np.ndarray, b: np.ndarray, window: np.ndarray) -> tuple[float, float]:
    """Mean luminance and contrast-structure similarity at one scale."""
    c1, c2 = (0.01 * _PEAK) ** 2, (0.03 * _PEAK) ** 2
    mu_a, mu_b = _blur(a, window), _blur(b, window)
    var_a = _blur(a * a, window) - mu_a**2
    var_b = _blur(b * b, window) - mu_b**2
    covariance = _blur(a * b, window) - mu_a * mu_b
    luminance = (2 * mu_a * mu_b + c1) / (mu_a**2 + mu_b**2 + c1)
    contrast_structure = (2 * covariance + c2) / (var_a + var_b + c2)
    return float(luminance.mean()), float(contrast_structure.mean())


def _halve(image: np.ndarray) -> np.ndarray:
    """2x2 average pooling; an odd last row or column is dropped, as in avg_pool2d."""
    height, width, channels = image.shape[0] // 2, image.shape[1] // 2, image.shape[2]
    pairs = image[: 2 * height, : 2 * width].reshape(height, 2, width, 2, channels)
    return pairs.mean(axis=(1, 3))
