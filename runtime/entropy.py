"""Entropy coding of integer symbols against fixed probability tables.

The coder never sees a raw float. Each symbol is coded against one *row* of a
:class:`CategoricalTables`: a probability table over the integers
``offset .. offset + length - 2`` plus a final escape bin. Rows are

* for ẑ, one per channel (the factorized prior evaluated at export time);
* for ŷ, one per entry of a :class:`ScaleTable`; a predicted Gaussian scale
  selects the row of the nearest table scale (on a log scale).

Both sides load the very same float64 tables from the bundle, and constriction
turns each row into a fixed-point model with deterministic integer arithmetic,
so encoder and decoder agree exactly. Symbols are grouped by row and coded
with one ``Categorical`` per row: a fixed model per call is ~1000x faster than
per-symbol tables. A symbol outside its row's range is coded as the escape bin
followed by its value under a uniform model over ±32767.

Example:
    >>> import numpy as np, constriction
    >>> tables = CategoricalTables(np.array([0.25, 0.5, 0.25, 1e-9]), np.array([4]), np.array([-1]))
    >>> encoder = constriction.stream.queue.RangeEncoder()
    >>> values, rows = np.array([0, 1, -1, 300], np.int32), np.zeros(4, np.int16)
    >>> tables.encode(encoder, values, rows)
    >>> decoder = constriction.stream.queue.RangeDecoder(encoder.get_compressed())
    >>> tables.decode(decoder, rows).tolist()
    [0, 1, -1, 300]
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import constriction
import numpy as np

from .archives import read_npz
from .errors import BitstreamError, BundleError, CodingError

#: Escaped values are coded uniformly in [-ESCAPE_LIMIT, ESCAPE_LIMIT].
ESCAPE_LIMIT = 2**15 - 1
#: The most bits the coder can spend on one symbol: 24 for a table entry (no
#: entry is less probable than 2⁻²⁴, see below), 16 for an escaped value, and
#: one for the range coder's rounding.
MAX_BITS_PER_SYMBOL = 41
#: Bounds on a bundle's tables: rows are indexed with int16, a row spans at
#: most the escape range, and a table file inflates to at most 64 MiB.
MAX_TABLE_ROWS = 2**15 - 1
MAX_ROW_LENGTH = 2 * ESCAPE_LIMIT + 2
MAX_FRACTION_BINS = 1024
MAX_TABLE_FILE_BYTES = 2**26
#: constriction's range coder quantizes each row to 24-bit fixed point, and its
#: leaky quantization gives every entry at least one unit: no symbol costs more.
_CODER_MIN_PROBABILITY = 2.0**-24
_ESCAPE_MODEL = constriction.stream.model.Uniform(2 * ESCAPE_LIMIT + 1)
#: What an escaped value's payload costs, in bits.
ESCAPE_BITS = float(np.log2(2 * ESCAPE_LIMIT + 1))


def check_codable(values: np.ndarray) -> None:
    """Raise CodingError if a value lies outside ±:data:`ESCAPE_LIMIT`."""
    if values.size and np.abs(values).max() > ESCAPE_LIMIT:
        raise CodingError(
            f"a latent value ({int(np.abs(values).max())}) exceeds the codable range "
            f"±{ESCAPE_LIMIT}; the model produces unusable latents for this input"
        )


def encode_escapes(encoder, values: np.ndarray) -> None:
    """Append the values of escaped symbols (after all the batch's table entries)."""
    encoder.encode((values + ESCAPE_LIMIT).astype(np.int32), _ESCAPE_MODEL)


def decode_escapes(decoder, values: np.ndarray, escaped: np.ndarray, echo=None) -> None:
    """Fill values where escaped with what :func:`encode_escapes` wrote for them, and write it to ``echo`` (a
    range encoder, or None) as the encoder did."""
    if escaped.any():
        values[escaped] = decoder.decode(_ESCAPE_MODEL, int(escaped.sum())).astype(np.int64) - ESCAPE_LIMIT
        if echo is not None:
            encode_escapes(echo, values[escaped])


def symbol_bits(probabilities: np.ndarray) -> float:
    """Σ −log2 p over the coded entries' probabilities, as the range coder prices them."""
    return float(each_symbol_bits(probabilities).sum())


def each_symbol_bits(probabilities: np.ndarray) -> np.ndarray:
    """−log2 p of each coded entry's probability, as the range coder prices it (no less than its smallest)."""
    return -np.log2(np.maximum(probabilities, _CODER_MIN_PROBABILITY))


def max_coded_bytes(symbols: int) -> int:
    """The most bytes the range coder can write for this many symbols (two words of termination included)."""
    return 4 * (-(-symbols * MAX_BITS_PER_SYMBOL // 32) + 2)


class UndecodableError(BitstreamError):
    """Coded data that the tables cannot decode: damaged, or coded with other rows."""


class CategoricalTables:
    """Rows of integer-symbol probability tables, each ending in an escape bin.

    Args:
        probabilities: float64, all rows one after the other; row r holds
            ``lengths[r]`` entries, the last being the escape bin.
        lengths: (rows,) entries per row, escape included (≥ 2).
        offsets: (rows,) the symbol value of each row's first entry.
    """

    def __init__(self, probabilities: np.ndarray, lengths: np.ndarray, offsets: np.ndarray):
        self.probabilities = np.asarray(probabilities, dtype=np.float64)
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.offsets = np.asarray(offsets, dtype=np.int64)
        if self.probabilities.ndim != 1 or self.lengths.shape != self.offsets.shape or self.lengths.ndim != 1:
            raise BundleError("entropy tables: probabilities, lengths and offsets disagree in shape")
        if not 1 <= len(self.lengths) <= MAX_TABLE_ROWS:
            raise BundleError(f"entropy tables: {len(self.lengths):,} rows, expected 1 to {MAX_TABLE_ROWS:,}")
        if np.any(self.lengths < 2) or np.any(self.lengths > MAX_ROW_LENGTH):
            raise BundleError(f"entropy tables: a row must have 2 to {MAX_ROW_LENGTH:,} entries")
        if self.lengths.sum() != self.probabilities.size:
            raise BundleError("entropy tables: row lengths do not match the probabilities")
        if np.any(np.abs(self.offsets) > ESCAPE_LIMIT):
            raise BundleError(f"entropy tables: row offsets must lie within ±{ESCAPE_LIMIT}")
        if not np.all(np.isfinite(self.probabilities)) or np.any(self.probabilities < 0):
            raise BundleError("entropy tables: probabilities must be finite and non-negative")
        self.starts = np.concatenate([[0], np.cumsum(self.lengths)[:-1]])
        self._totals = np.add.reduceat(self.probabilities, self.starts)
        if not np.all(self._totals > 0):
            raise BundleError("entropy tables: a row has no probability mass")
        self._models = [
            constriction.stream.model.Categorical(self.probabilities[start : start + length], perfect=False)
            for start, length in zip(self.starts, self.lengths, strict=True)
        ]

    def __len__(self) -> int:
        return len(self.lengths)

    def _indices(self, values: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Table indices of values (escape index where out of range), and the escape mask."""
        index = values.astype(np.int64) - self.offsets[rows]
        escape_index = self.lengths[rows] - 1
        escaped = (index < 0) | (index >= escape_index)
        return np.where(escaped, escape_index, index).astype(np.int32), escaped

    def encode(self, encoder, values: np.ndarray, rows: np.ndarray) -> None:
        """Append values (int) to a constriction ``RangeEncoder``, value i under row rows[i].

        Raises:
            CodingError: a value lies outside ±:data:`ESCAPE_LIMIT`.
        """
        values = np.asarray(values).ravel()
        rows = np.asarray(rows).ravel()
        check_codable(values)
        indices, escaped = self._indices(values, rows)
        for row, members in _group_by_row(rows, len(self)):
            encoder.encode(indices[members], self._models[row])
        if escaped.any():
            encode_escapes(encoder, values[escaped])

    def decode(self, decoder, rows: np.ndarray, echo=None) -> np.ndarray:
        """Read one value per entry of rows from a ``RangeDecoder``; returns int32. An ``echo`` range encoder
        receives what :meth:`encode` writes for the values, as they are read."""
        rows = np.asarray(rows).ravel()
        indices = np.empty(rows.size, dtype=np.int64)
        try:
            for row, members in _group_by_row(rows, len(self)):
                decoded = decoder.decode(self._models[row], members.size)
                if echo is not None:
                    echo.encode(decoded, self._models[row])
                indices[members] = decoded
            values = indices + self.offsets[rows]
            decode_escapes(decoder, values, indices == self.lengths[rows] - 1, echo)
        except (ValueError, KeyError, AssertionError) as exc:
            raise UndecodableError(f"the coded data cannot be decoded ({exc})") from None
        return values.astype(np.int32)

    def information_bits(self, values: np.ndarray, rows: np.ndarray) -> float:
        """−Σ log2 p of the values under their rows as the coder sees them (escape payload included)."""
        return float(self.element_bits(values, rows).sum())

    def element_bits(self, values: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """−log2 p of each value under its row as the coder sees it (its escape payload included), flat."""
        values = np.asarray(values).ravel()
        rows = np.asarray(rows).ravel()
        indices, escaped = self._indices(values, rows)
        p = self.probabilities[self.starts[rows] + indices] / self._totals[rows]
        return each_symbol_bits(p) + escaped * ESCAPE_BITS


class ScaleTable:
    """The scales the ŷ tables are built for, and how rows are laid out.

    A predicted scale selects the nearest table scale on a log scale: the
    :attr:`boundaries` are the geometric means of neighbouring scales, computed
    with correctly rounded IEEE arithmetic, so every platform draws them alike.
    Rounding to the nearest rather than up halves the worst mismatch, and a
    model whose symbols are sharper than its scales (an untrained one) is not
    charged for a wider table. With ``fraction_bins``, scale s owns
    ``fraction_bins[s]`` consecutive rows from ``first_row[s]``, one per equal
    slice of a unit of the mean. :mod:`licrt.runtime.guard` takes these
    decisions, alike on every backend.
    """

    def __init__(self, scales: np.ndarray, fraction_bins: np.ndarray | None = None):
        self.scales = np.asarray(scales, dtype=np.float32)
        if self.scales.ndim != 1 or not 1 <= len(self.scales) <= MAX_TABLE_ROWS or np.any(np.diff(self.scales) <= 0):
            raise BundleError("scale table must be a strictly increasing vector")
        if not np.all(np.isfinite(self.scales)) or self.scales[0] <= 0:
            raise BundleError("scale table: scales must be finite and positive")
        bins = np.ones(len(self.scales), np.int64) if fraction_bins is None else np.asarray(fraction_bins, np.int64)
        if bins.shape != self.scales.shape or np.any(bins < 1) or np.any(bins > MAX_FRACTION_BINS):
            raise BundleError(f"scale table: fraction_bins needs one count in [1, {MAX_FRACTION_BINS}] per scale")
        self.fraction_bins = bins
        self.first_row = np.concatenate([[0], np.cumsum(bins)[:-1]])
        table = self.scales.astype(np.float64)
        self.boundaries = np.sqrt(table[:-1] * table[1:]).astype(np.float32)

    @property
    def rows_needed(self) -> int:
        return int(self.fraction_bins.sum())


def _group_by_row(rows: np.ndarray, num_rows: int):
    """Yield (row, positions) for each row that occurs, in ascending row order."""
    order = np.argsort(rows, kind="stable")
    counts = np.bincount(rows, minlength=num_rows)
    start = 0
    for row in np.flatnonzero(counts):
        stop = start + counts[row]
        yield int(row), order[start:stop]
        start = stop


def tables_from_arrays(arrays: Mapping[str, np.ndarray]) -> tuple[CategoricalTables, ScaleTable | None]:
    """The tables, and the scale table if there is one, from the arrays of a table file (``probabilities``,
    ``lengths``, ``offsets``; ``scale_table`` and ``fraction_bins`` for ŷ).

    Raises:
        BundleError: the arrays do not make tables, or not as many as the scale table needs.
    """
    tables = CategoricalTables(arrays["probabilities"], arrays["lengths"], arrays["offsets"])
    scale_table = None
    if "scale_table" in arrays:
        scale_table = ScaleTable(arrays["scale_table"], arrays.get("fraction_bins"))
        if scale_table.rows_needed != len(tables):
            raise BundleError("the scale table and the tables differ in length")
    return tables, scale_table


def load_tables(path: Path) -> tuple[CategoricalTables, ScaleTable | None]:
    """Load a table file written by the exporter (an ``.npz`` of numeric arrays, read with limits)."""
    arrays = read_npz(path, ("probabilities", "lengths", "offsets"), ("scale_table", "fraction_bins"),
                      MAX_TABLE_FILE_BYTES, BundleError)
    try:
        return tables_from_arrays(arrays)
    except BundleError as exc:
        raise BundleError(f"{path.name}: {exc}") from None
