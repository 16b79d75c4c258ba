"""Gaussian-mixture coding: decisions every backend takes alike, tables every machine builds alike."""

import constriction
import numpy as np
import pytest

from licrt.export.entropy_models import SCALE_TABLE, fraction_bins, gaussian_tables
from licrt.runtime import mixture
from licrt.runtime.entropy import UndecodableError, tables_from_arrays
from licrt.runtime.guard import MixtureGuard, decode_side_stream, encode_side_stream
from licrt.runtime.mixture import MixtureTables

TOLERANCE = 1e-5
WEIGHT_GRID = 31


@pytest.fixture(scope="module")
def coding():
    tables, scale_table = tables_from_arrays(gaussian_tables(SCALE_TABLE, fraction_bins(SCALE_TABLE)))
    return MixtureGuard(scale_table, TOLERANCE, 3, WEIGHT_GRID), MixtureTables(tables)


def mixtures(size, seed=0):
    """Weights, means and scales of 3-component mixtures, as (3, size) float32, and values drawn from them."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2, (3, size))
    weights = np.exp(logits) / np.exp(logits).sum(axis=0)
    means = rng.normal(0, 4, (3, size))
    scales = np.exp(rng.uniform(np.log(0.11), np.log(40), (3, size)))
    component = (rng.random(size)[None] > np.cumsum(weights, axis=0)).sum(axis=0).clip(0, 2)
    drawn = np.rint(rng.normal(means[component, np.arange(size)], scales[component, np.arange(size)]))
    return (weights.astype(np.float32), means.astype(np.float32), scales.astype(np.float32)), drawn.astype(np.int64)


def encode(coding, values, decided):
    guard, tables = coding
    encoder = constriction.stream.queue.RangeEncoder()
    tables.encode(encoder, values, decided)
    return encoder.get_compressed().tobytes()


def decode(coding, data, decided):
    return coding[1].decode(constriction.stream.queue.RangeDecoder(np.frombuffer(data, np.uint32)), decided)


def test_values_round_trip_at_the_rate_the_mixtures_predict(coding):
    parameters, values = mixtures(20_000)
    values[::1000] = [30_000, -30_000, 5_000, 12_345] * 5  # far outside every window: escaped
    decided = coding[0].decide(*parameters)
    data = encode(coding, values, decided)
    assert np.array_equal(decode(coding, data, decided), values)
    assert 8 * len(data) == pytest.approx(coding[1].information_bits(values, decided), rel=0.01)


def test_tables_built_in_other_chunks_code_the_same_bytes(coding, monkeypatch):
    parameters, values = mixtures(3_000, seed=1)
    decided = coding[0].decide(*parameters)
    whole = encode(coding, values, decided)
    monkeypatch.setattr(mixture, "CHUNK_ENTRIES", 64)  # a table or a few per chunk
    assert encode(coding, values, decided) == whole


def test_a_dominant_component_codes_like_its_gaussian_alone(coding):
    parameters, _ = mixtures(5_000, seed=2)
    weights, means, scales = parameters
    weights = np.zeros_like(weights)
    weights[0] = 1.0  # the others keep the smallest weight, 1 of 31 + 2
    values = np.rint(np.random.default_rng(3).normal(means[0], scales[0])).astype(np.int64)
    decided = coding[0].decide(weights, means, scales)
    assert decided.weights[0].tolist() == [WEIGHT_GRID] * 5_000 and decided.weights[1:].max() == 1
    alone = coding[0].decide(np.stack([np.ones(5_000, np.float32)] * 3), np.stack([means[0]] * 3),
                             np.stack([scales[0]] * 3))
    bits = coding[1].information_bits(values, decided)
    assert bits == pytest.approx(coding[1].information_bits(values, alone), rel=0.05)


def test_a_weight_of_exactly_one_is_decided_as_one_a_hair_below(coding):
    """A softmax can give exactly 1 on one backend and 1 − 2⁻²⁴ on another: the grid's top end is no boundary."""
    guard, _ = coding
    parameters, _ = mixtures(100, seed=7)
    _, means, scales = parameters
    exact = np.zeros((3, 100), np.float32)
    exact[0] = 1.0
    below = exact.copy()
    below[0], below[1] = np.float32(1 - 2**-24), np.float32(2**-24)
    assert np.array_equal(guard.decide(exact, means, scales).codes, guard.decide(below, means, scales).codes)


def test_floats_within_the_tolerance_decode_to_the_encoders_values_with_its_side_stream(coding):
    guard, _ = coding
    parameters, values = mixtures(4_000, seed=4)
    weights, means, scales = parameters
    # Put some weights, means and scales right on a boundary, where another backend lands on either side.
    weights[0, :50] = np.float32(17 / WEIGHT_GRID)
    means[1, 50:100] = np.float32(2.5)
    scales[2, 100:150] = guard.component.table.boundaries[20]
    encoder_side = guard.decide(weights, means, scales, pin_near=True)
    assert encoder_side.near.size >= 150
    stream = constriction.stream.queue.RangeEncoder()
    encode_side_stream(stream, encoder_side.near, guard.kinds * values.size)
    data = encode(coding, values, encoder_side)
    pinned = decode_side_stream(constriction.stream.queue.RangeDecoder(stream.get_compressed()),
                                guard.kinds * values.size)

    rng = np.random.default_rng(5)
    nudged = [p * (1 + rng.uniform(-0.3, 0.3, p.shape) * TOLERANCE).astype(np.float32) for p in parameters]
    decoder_side = guard.decide(*nudged, pinned=pinned)
    assert np.array_equal(decoder_side.codes, encoder_side.codes)
    assert np.array_equal(decode(coding, data, decoder_side), values)
    unguarded = guard.decide(*nudged)
    assert not np.array_equal(unguarded.codes, encoder_side.codes)  # without it, some decisions flip


def test_damaged_data_is_an_error_or_other_values_never_a_crash(coding):
    parameters, values = mixtures(2_000, seed=6)
    decided = coding[0].decide(*parameters)
    data = bytearray(encode(coding, values, decided))
    data[len(data) // 2] ^= 0xFF
    try:
        decoded = decode(coding, bytes(data), decided)
    except UndecodableError:
        return
    assert not np.array_equal(decoded, values)


def test_components_far_apart_are_cut_to_the_heaviest_ones_neighbourhood(coding):
    """The work per element is bounded whatever the means: values beyond the window are escaped, and still
    come back."""
    size = 1_000
    weights = np.tile(np.array([[0.2], [0.7], [0.1]], np.float32), (1, size))
    means = np.tile(np.array([[-20_000.0], [3.0], [25_000.0]], np.float32), (1, size))
    scales = np.full((3, size), 2.0, np.float32)
    values = np.where(np.arange(size) % 2, 3, 24_999).astype(np.int64)  # near the heaviest, and near the third
    decided = coding[0].decide(weights, means, scales)
    windows = mixture._Windows(coding[1], decided)
    assert np.all(windows.high - windows.low + 1 == mixture.MAX_WINDOW)
    assert np.all((windows.low <= 3) & (windows.high >= 3))
    data = encode(coding, values, decided)
    assert np.array_equal(decode(coding, data, decided), values)
    # 500 escaped values at most 41 bits each (the escape bin keeps only the rows' tails, the far components' mass
    # is not in the table), 500 near values at a few bits.
    assert len(data) < 500 * (41 + 4) / 8
