import math

import constriction
import numpy as np
import pytest

from licrt.export.entropy_models import SCALE_TABLE, gaussian_tables
from licrt.runtime.entropy import ESCAPE_BITS, ESCAPE_LIMIT, CategoricalTables, ScaleTable, tables_from_arrays
from licrt.runtime.errors import BitstreamError, BundleError, CodingError
from licrt.runtime.guard import Guard


def rows_of(scale_table, scales, means=None, quantization="mean-shift"):
    """Table rows (and centres) as the guard decides them, recording nothing."""
    means = np.zeros_like(scales) if means is None else means
    decided = Guard(scale_table, quantization, 0.0, None).decide(scales, means)
    return decided.rows, decided.centers


@pytest.fixture(scope="module")
def y_tables():
    return tables_from_arrays(gaussian_tables())


def code(tables, values, rows):
    encoder = constriction.stream.queue.RangeEncoder()
    tables.encode(encoder, values, rows)
    words = encoder.get_compressed()
    decoded = tables.decode(constriction.stream.queue.RangeDecoder(words), rows)
    return decoded, 32 * words.size


def test_gaussian_round_trip_matches_information_content(y_tables):
    tables, scale_table = y_tables
    rng = np.random.default_rng(1)
    scales = np.exp(rng.uniform(np.log(0.05), np.log(300), 200_000)).astype(np.float32)
    values = np.rint(rng.normal(0, scales)).astype(np.int32)
    rows, _ = rows_of(scale_table, scales)
    decoded, bits = code(tables, values, rows)
    assert np.array_equal(decoded, values)
    ideal = tables.information_bits(values, rows)
    assert ideal <= bits <= ideal * 1.001 + 64


def test_element_bits_price_each_value_by_its_probability(y_tables):
    tables, scale_table = y_tables
    scale = float(SCALE_TABLE[np.argmin(np.abs(np.log(SCALE_TABLE)))])  # the table's scale nearest 1
    rows, _ = rows_of(scale_table, np.full(4, scale, np.float32))
    values = np.array([0, 1, 3, -40], np.int32)
    bits = tables.element_bits(values, rows)
    cdf = [0.5 * (1 + math.erf(edge / scale / math.sqrt(2))) for edge in (-0.5, 0.5, 1.5)]
    assert bits[:2] == pytest.approx(-np.log2(np.diff(cdf)), rel=0.01)  # P(0), P(1) under N(0, scale)
    assert bits[0] < bits[1] < bits[2] < bits[3]
    assert bits[3] > ESCAPE_BITS  # escaped: the escape bin and the value's own payload
    assert bits.sum() == pytest.approx(tables.information_bits(values, rows))


def test_out_of_range_values_escape_and_round_trip(y_tables):
    tables, scale_table = y_tables
    rows, _ = rows_of(scale_table, np.full(6, 0.11, np.float32))
    values = np.array([0, 1, -40, ESCAPE_LIMIT, -ESCAPE_LIMIT, 3], np.int32)
    decoded, _ = code(tables, values, rows)
    assert np.array_equal(decoded, values)


def test_values_beyond_the_escape_range_are_refused(y_tables):
    tables, scale_table = y_tables
    with pytest.raises(CodingError, match="codable range"):
        code(tables, np.array([ESCAPE_LIMIT + 1], np.int32), np.zeros(1, np.int16))


def test_scale_rows_pick_the_nearest_table_scale_on_a_log_scale():
    table = ScaleTable(SCALE_TABLE)
    step = SCALE_TABLE[1] / SCALE_TABLE[0]
    scales = np.array([-1.0, 0.0, 0.11, 0.11 * step**0.49, 0.11 * step**0.51, SCALE_TABLE[5], 1e6], np.float32)
    assert rows_of(table, scales)[0].tolist() == [0, 0, 0, 0, 1, 5, 47]


def test_fraction_bins_select_rows_by_the_means_fraction():
    table = ScaleTable(np.array([0.1, 1.0, 10.0], np.float32), fraction_bins=np.array([4, 2, 1]))
    scales = np.array([0.1, 0.1, 0.1, 1.0, 1.0, 10.0, 0.1], np.float32)
    means = np.array([-0.5, -0.1, 0.49, -0.2, 0.2, 0.4, 2.3], np.float32)
    rows, centers = rows_of(table, scales, means, "integer")
    assert rows.tolist() == [0, 1, 3, 4, 5, 6, 3] and centers.tolist() == [0, 0, 0, 0, 0, 0, 2]


def test_integer_mode_tables_round_trip():
    from licrt.export.entropy_models import fraction_bins

    scale_table = np.exp(np.linspace(np.log(0.02), np.log(256), 128)).astype(np.float32)
    tables, scale_rows = tables_from_arrays(gaussian_tables(scale_table, fraction_bins(scale_table)))
    rng = np.random.default_rng(2)
    scales = np.exp(rng.uniform(np.log(0.02), np.log(50), 50_000)).astype(np.float32)
    means = rng.uniform(-20, 20, scales.size).astype(np.float32)
    values = np.rint(rng.normal(means, scales))
    rows, centers = rows_of(scale_rows, scales, means, "integer")
    symbols = (values - centers).astype(np.int32)
    decoded, bits = code(tables, symbols, rows)
    assert np.array_equal(decoded, symbols)
    ideal = tables.information_bits(symbols, rows)
    assert abs(bits - ideal) <= ideal * 0.001 + 64


def test_improbable_symbols_are_charged_what_the_coder_charges():
    # Entries of (near) zero probability cost the coder's 24-bit floor, not −log2 p.
    tables = CategoricalTables(np.array([1.0, 0.0, 1e-12, 1e-9]), np.array([4]), np.array([0]))
    values = np.tile(np.array([0, 1, 2], np.int32), 1000)
    rows = np.zeros(values.size, np.int16)
    decoded, bits = code(tables, values, rows)
    assert np.array_equal(decoded, values)
    ideal = tables.information_bits(values, rows)
    assert abs(bits - ideal) <= ideal * 0.001 + 64


def test_tables_reject_bad_arrays():
    with pytest.raises(BundleError, match="2 to .* entries"):
        CategoricalTables(np.ones(3), np.array([1]), np.array([0]))
    with pytest.raises(BundleError, match="do not match"):
        CategoricalTables(np.ones(5), np.array([2, 2]), np.array([0, 0]))


def test_decoding_garbage_with_escapes_raises_or_returns_values(y_tables):
    """Garbage never crashes the process: it yields symbols (caught by digests) or an error."""
    tables, scale_table = y_tables
    rows, _ = rows_of(scale_table, np.full(1000, 0.11, np.float32))
    garbage = np.random.default_rng(0).integers(0, 2**32, 16, dtype=np.uint64).astype(np.uint32)
    try:
        decoded = tables.decode(constriction.stream.queue.RangeDecoder(garbage), rows)
        assert decoded.shape == (1000,)
    except BitstreamError:
        pass
