import constriction
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from licrt.export.entropy_models import SCALE_TABLE, fraction_bins
from licrt.runtime.entropy import ScaleTable, UndecodableError
from licrt.runtime.guard import (Guard, decode_side_stream, encode_side_stream, max_side_stream_bytes,
                                 side_stream_bits)

TOLERANCE = 3e-5
GUARDS = {
    "mean-shift": Guard(ScaleTable(SCALE_TABLE), "mean-shift", TOLERANCE, None),
    "mean-shift on a grid": Guard(ScaleTable(SCALE_TABLE), "mean-shift", TOLERANCE, 1 / 16),
    "integer": Guard(ScaleTable(SCALE_TABLE, fraction_bins(SCALE_TABLE)), "integer", TOLERANCE, None),
}


def latents(seed: int, size: int = 200_000):
    rng = np.random.default_rng(seed)
    scales = np.exp(rng.uniform(np.log(0.05), np.log(300), size)).astype(np.float32)
    means = rng.normal(0, 5, size).astype(np.float32)
    return scales, means


def nudge(values: np.ndarray, relative: float, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).uniform(-relative, relative, values.shape)
    return (values * (1 + noise)).astype(np.float32)


@pytest.mark.parametrize("kind", GUARDS)
def test_a_decoder_within_the_tolerance_takes_the_encoders_decisions(kind):
    guard = GUARDS[kind]
    scales, means = latents(0)
    encoder = guard.decide(scales, means, pin_near=True)
    assert encoder.near.size > 0  # the test has decisions to guard
    # The decoder's floats differ by up to the tolerance (means: relative to max(|μ|, 1)).
    other_scales = nudge(scales, TOLERANCE * 0.99, 1)
    other_means = (means + np.random.default_rng(2).uniform(-1, 1, means.size) * 0.99 * TOLERANCE
                   * np.maximum(np.abs(means), 1)).astype(np.float32)
    # Without the guard each side takes its own decisions, and they differ: what the guard is for.
    assert not np.array_equal(guard.decide(other_scales, other_means).codes, guard.decide(scales, means).codes)
    decoder = guard.decide(other_scales, other_means, encoder.near)
    assert np.array_equal(decoder.codes, encoder.codes)
    assert np.array_equal(decoder.rows, encoder.rows)
    # ŷ = symbol + centre: the same float on both sides, unless a mean-shift codec keeps μ as it is.
    expected = other_means if kind == "mean-shift" else encoder.centers
    assert np.array_equal(decoder.centers, expected)


def test_near_decisions_are_pinned_below_their_boundary():
    guard = GUARDS["mean-shift on a grid"]
    boundary = float(guard.table.boundaries[10])
    scales = np.array([boundary * (1 - 1e-5), boundary * (1 + 1e-5), boundary * 1.01], np.float32)
    means = np.array([0.5 / 16 + 1e-6, 0.5 / 16 - 1e-6, 0.25], np.float32)
    own, pinned = guard.decide(scales, means), guard.decide(scales, means, pin_near=True)
    assert own.codes.tolist() == [[10, 11, 11], [1, 0, 4]]
    assert pinned.codes.tolist() == [[10, 10, 11], [0, 0, 4]] and pinned.near.tolist() == [0, 1, 3, 4]


def test_mean_shift_on_a_grid_adds_symbols_to_grid_means():
    means = np.array([0.03, 0.032, -1.0, 2.95], np.float32)
    decided = GUARDS["mean-shift on a grid"].decide(np.ones(4, np.float32), means)
    assert decided.centers.tolist() == [0.0, 0.0625, -1.0, 2.9375]


@given(st.data())
@settings(max_examples=200, deadline=None)
def test_side_streams_round_trip_and_cost_what_they_claim(data):
    size = data.draw(st.integers(1, 2**22))
    count = data.draw(st.integers(0, min(size, 300)))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    positions = np.sort(rng.choice(size, count, replace=False)).astype(np.int64)
    encoder = constriction.stream.queue.RangeEncoder()
    encode_side_stream(encoder, positions, size)
    words = encoder.get_compressed()
    decoded = decode_side_stream(constriction.stream.queue.RangeDecoder(words), size)
    assert np.array_equal(decoded, positions)
    assert 4 * words.size <= max_side_stream_bytes(size)
    assert 32 * words.size <= side_stream_bits(positions, size) * 1.01 + 64


def test_a_side_stream_out_of_range_is_corrupt():
    encoder = constriction.stream.queue.RangeEncoder()
    encode_side_stream(encoder, np.array([5, 99]), 100)
    with pytest.raises(UndecodableError, match="out of range|records"):
        decode_side_stream(constriction.stream.queue.RangeDecoder(encoder.get_compressed()), 50)
