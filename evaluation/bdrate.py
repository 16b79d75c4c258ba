"""Bjøntegaard delta rate: the average bitrate change between two RD curves.

Computed as the ``bjontegaard`` package does in its ``pchip`` mode: log-rate
is interpolated as a function of quality with a monotone piecewise-cubic
Hermite polynomial, which, unlike the original cubic fit, cannot overshoot
between points.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def bd_rate(
    rate_anchor: Sequence[float],
    quality_anchor: Sequence[float],
    rate_test: Sequence[float],
    quality_test: Sequence[float],
) -> float:
    """Average rate difference of a test curve against an anchor at equal quality.

    Args:
        rate_anchor: Rates of the anchor curve (any positive unit, e.g. bpp).
        quality_anchor: Qualities of the anchor points (e.g. PSNR in dB),
            in any order.
        rate_test: Rates of the test curve, in the same unit.
        quality_test: Qualities of the test points, in the same metric.

    Returns:
        The BD-rate in percent; negative when the test codec needs fewer
        bits for the same quality.

    Raises:
        ValueError: A curve has fewer than two points, mismatched lengths,
            a repeated quality or a non-positive rate, or the quality ranges
            of the two curves do not overlap.
    """
    from scipy.interpolate import PchipInterpolator

    anchor_quality, anchor_log_rate = _log_rate_curve(rate_anchor, quality_anchor, "anchor")
    test_quality, test_log_rate = _log_rate_curve(rate_test, quality_test, "test")
    low = max(anchor_quality[0], test_quality[0])
    high = min(anchor_quality[-1], test_quality[-1])
    if low >= high:
        raise ValueError(
            "the quality ranges do not overlap: "
            f"anchor {anchor_quality[0]:g}..{anchor_quality[-1]:g}, "
            f"test {test_quality[0]:g}..{test_quality[-1]:g}"
        )
    anchor_area = PchipInterpolator(anchor_quality, anchor_log_rate).integrate(low, high)
    test_area = PchipInterpolator(test_quality, test_log_rate).integrate(low, high)
    mean_log_ratio = (test_area - anchor_area) / (high - low)
    return float((np.exp(mean_log_ratio) - 1) * 100)


def _log_rate_curve(
    rate: Sequence[float], quality: Sequence[float], curve: str
) -> tuple[np.ndarray, np.ndarray]:
    """Validate one RD curve and return (quality, log rate), sorted by quality."""
    rate, quality = np.asarray(rate, dtype=np.float64), np.asarray(quality, dtype=np.float64)
    if rate.ndim != 1 or rate.shape != quality.shape:
        raise ValueError(
            f"the {curve} curve needs one quality per rate, got {rate.size} rates "
            f"and {quality.size} qualities"
        )
    if rate.size < 2:
        raise ValueError(f"the {curve} curve needs at least 2 points, got {rate.size}")
    if np.any(rate <= 0):
        raise ValueError(f"the {curve} curve has non-positive rates: {rate.tolist()}")
    order = np.argsort(quality)
    quality, rate = quality[order], rate[order]
    if np.any(np.diff(quality) == 0):
        raise ValueError(f"the {curve} curve repeats a quality: {quality.tolist()}")
    return quality, np.log(rate)
