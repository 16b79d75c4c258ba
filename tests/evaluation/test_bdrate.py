import math

import numpy as np
import pytest

from licrt.evaluation.bdrate import bd_rate

RATES = [0.12, 0.25, 0.5, 1.0, 2.0]
PSNRS = [28.0, 31.0, 34.5, 37.0, 40.0]


def test_a_curve_against_itself_is_zero():
    assert bd_rate(RATES, PSNRS, RATES, PSNRS) == pytest.approx(0.0, abs=1e-12)


def test_a_constant_rate_ratio_is_the_bd_rate():
    cheaper = [rate * 0.8 for rate in RATES]
    assert bd_rate(RATES, PSNRS, cheaper, PSNRS) == pytest.approx(-20.0, abs=1e-9)
    assert bd_rate(cheaper, PSNRS, RATES, PSNRS) == pytest.approx(25.0, abs=1e-9)


def test_a_quality_shift_of_a_straight_log_rate_line():
    # log(rate) = a + b * quality; a test curve better by `shift` dB at every
    # rate needs exp(-b * shift) times the bits, which PCHIP reproduces exactly.
    slope, shift = 0.23, 1.5
    quality = np.array([28.0, 30.0, 33.0, 36.0, 40.0])
    rate = np.exp(-4.0 + slope * quality)
    expected = (math.exp(-slope * shift) - 1) * 100
    assert bd_rate(rate, quality, rate, quality + shift) == pytest.approx(expected, abs=1e-9)


def test_unsorted_points_give_the_sorted_answer():
    order = [3, 0, 4, 2, 1]
    test_rates = [0.1, 0.22, 0.47, 0.9, 1.9]
    sorted_answer = bd_rate(RATES, PSNRS, test_rates, PSNRS)
    shuffled_answer = bd_rate(
        [RATES[i] for i in order], [PSNRS[i] for i in order],
        [test_rates[i] for i in order[::-1]], [PSNRS[i] for i in order[::-1]],
    )
    assert shuffled_answer == pytest.approx(sorted_answer, abs=1e-12)


@pytest.mark.parametrize("test_qualities", [[41.0, 45.0], [40.0, 44.0], [20.0, 28.0]])
def test_quality_ranges_must_overlap(test_qualities):
    with pytest.raises(ValueError, match="do not overlap"):
        bd_rate(RATES, PSNRS, [0.5, 1.0], test_qualities)


@pytest.mark.parametrize("rates, qualities, message", [
    ([1.0], [30.0], "at least 2 points"),
    ([1.0, 0.0], [30.0, 35.0], "non-positive"),
    ([1.0, -2.0], [30.0, 35.0], "non-positive"),
    ([1.0, 2.0], [30.0, 30.0], "repeats a quality"),
    ([1.0, 2.0, 3.0], [30.0, 35.0], "one quality per rate"),
])
def test_invalid_curves_are_rejected(rates, qualities, message):
    with pytest.raises(ValueError, match=message):
        bd_rate(RATES, PSNRS, rates, qualities)
