"""Entropy coding of integer symbols under Gaussian mixtures, built from the ŷ table's rows.

A mixture codec (eContextformer: K = 3) predicts per latent element K
components. :class:`~licrt.runtime.guard.MixtureGuard` turns them into
decisions every backend takes alike: each component a row of the bundle's
Gaussian tables (scale and mean fraction) and an integer centre, and an
integer weight. An element's probability table is the weighted sum of its
components' rows, each shifted to its centre, over the window of values they
cover, plus an escape bin: products and sums of float64 table entries and
integer weights, in a fixed order, so every machine builds the same table
from the same decisions, and constriction quantizes it alike.

Elements are coded one table each with constriction's categorical family,
grouped by table width (multiples of :data:`MIN_WIDTH`, powers of two
beyond :data:`FINE_WIDTHS`, padded with zero entries) so that one call
codes many; a table covers at most :data:`MAX_WINDOW` values and a group
is built in chunks of at most :data:`CHUNK_ENTRIES` entries, whatever the
image or the file. A value outside its window is coded as the
escape bin, then its value under a uniform model over
±:data:`~licrt.runtime.entropy.ESCAPE_LIMIT`, as with single Gaussians.
"""

from __future__ import annotations

from collections.abc import Iterator

import constriction
import numpy as np

from .entropy import (ESCAPE_BITS, ESCAPE_LIMIT, CategoricalTables, UndecodableError, check_codable, decode_escapes,
                      encode_escapes, symbol_bits)
from .guard import MixtureDecided

#: The narrowest table an element is coded with (entries, escape included); tables up to FINE_WIDTHS wide are
#: multiples of it, wider ones powers of two (fewer groups, more padding).
MIN_WIDTH = 8
FINE_WIDTHS = 128
#: The most table entries built at once (float64: 32 MiB).
CHUNK_ENTRIES = 2**22
#: The most values an element's table covers: components whose rows span more (means far apart, or scales
#: beyond ~80) are cut to the heaviest one's neighbourhood, the rest escaped (at up to 41 bits: the mass cut
#: off is not moved to the escape bin). It bounds the work per element, which the next passes' means (fed by
#: decoded, possibly forged, values) would otherwise set.
MAX_WINDOW = 1024
_FAMILY = constriction.stream.model.Categorical(perfect=False)


class MixtureTables:
    """Codes values under the mixtures of :class:`~licrt.runtime.guard.MixtureDecided` decisions.

    Args:
        tables: The bundle's ŷ tables (rows for each scale and mean-fraction slot).
    """

    def __init__(self, tables: CategoricalTables):
        self.tables = tables
        # Each row's entries (escape bin left out) between two zeros: a component's table is then one gather
        # of a run of indices clipped to its row, with no mask.
        self.padded = np.concatenate([np.concatenate([[0.0], tables.probabilities[start : start + length - 1], [0.0]])
                                      for start, length in zip(tables.starts, tables.lengths, strict=True)])
        self.padded_starts = np.concatenate([[1], np.cumsum(tables.lengths + 1)[:-1] + 1])

    def encode(self, encoder, values: np.ndarray, decided: MixtureDecided) -> None:
        """Append values (int, one per element) to a constriction ``RangeEncoder``.

        Raises:
            CodingError: a value lies outside ±ESCAPE_LIMIT (see :meth:`CategoricalTables.encode`).
        """
        values = np.asarray(values, np.int64).ravel()
        check_codable(values)
        windows = _Windows(self, decided)
        escaped = windows.outside(values)
        for members, width, probabilities in windows.chunks():
            encoder.encode(windows.indices(values, escaped, members, width).astype(np.int32), _FAMILY, probabilities)
        if escaped.any():
            encode_escapes(encoder, values[escaped])

    def decode(self, decoder, decided: MixtureDecided, echo=None) -> np.ndarray:
        """Read one value per element from a ``RangeDecoder``; returns int32. An ``echo`` range encoder
        receives what :meth:`encode` writes for the values, from the same tables (built once)."""
        windows = _Windows(self, decided)
        values = np.empty(windows.low.size, np.int64)
        escaped = np.zeros(windows.low.size, bool)
        try:
            for members, width, probabilities in windows.chunks():
                decoded = decoder.decode(_FAMILY, probabilities)
                if echo is not None:
                    echo.encode(decoded, _FAMILY, probabilities)
                indices = decoded.astype(np.int64)
                escaped[members] = indices == width - 1
                values[members] = windows.low[members] + indices
            if np.any(~escaped & (values > windows.high)):  # leaky quantization gives the padding some mass
                raise UndecodableError("the coded data is corrupt: a value lies in a table's padding")
            decode_escapes(decoder, values, escaped, echo)
        except (ValueError, KeyError, AssertionError) as exc:
            raise UndecodableError(f"the coded data cannot be decoded ({exc})") from None
        return values.astype(np.int32)

    def information_bits(self, values: np.ndarray, decided: MixtureDecided) -> float:
        """−Σ log2 p of the values under their mixtures as the coder sees them (escape payload included)."""
        values = np.asarray(values, np.int64).ravel()
        windows = _Windows(self, decided)
        escaped = windows.outside(values)
        bits = float(escaped.sum()) * ESCAPE_BITS
        for members, width, probabilities in windows.chunks():
            indices = windows.indices(values, escaped, members, width)
            bits += symbol_bits(probabilities[np.arange(members.size), indices] / probabilities.sum(axis=1))
        return bits


class _Windows:
    """Each element's window of values (low … high) and its mixture table, built group by group."""

    def __init__(self, coder: MixtureTables, decided: MixtureDecided):
        tables = coder.tables
        rows = decided.rows.astype(np.int64)
        self.padded = coder.padded
        self.weights = decided.weights.astype(np.float64)
        first = tables.offsets[rows] + decided.centers.astype(np.int64)  # each component's first value
        count = tables.lengths[rows] - 1  # and how many it covers
        self.low = np.maximum(first.min(axis=0), -ESCAPE_LIMIT)
        self.high = np.minimum((first + count - 1).max(axis=0), ESCAPE_LIMIT)
        wide = self.high - self.low >= MAX_WINDOW
        if wide.any():  # around the heaviest component's centre (the first of equal weights); the rest escapes
            heaviest = np.argmax(decided.weights, axis=0)
            centre = decided.centers.astype(np.int64)[heaviest, np.arange(heaviest.size)]
            low = np.clip(centre - MAX_WINDOW // 2, -ESCAPE_LIMIT, ESCAPE_LIMIT - MAX_WINDOW + 1)
            self.low = np.where(wide, low, self.low)
            self.high = np.where(wide, low + MAX_WINDOW - 1, self.high)
        starts = coder.padded_starts[rows]
        #: Per component: the padded entry of the window's first value, and the zeros either side of its row.
        self.base = (starts + self.low - first).astype(np.int32)
        self.before, self.after = (starts - 1).astype(np.int32), (starts + count).astype(np.int32)
        escape = tables.probabilities[tables.starts[rows] + count]
        self.escape = self.weights[0] * escape[0]  # Σ_k w_k·escape_k, in a fixed order
        for k in range(1, len(rows)):
            self.escape += self.weights[k] * escape[k]
        needed = np.maximum(self.high - self.low + 2, MIN_WIDTH)  # the values, then the escape bin
        _, bit_lengths = np.frexp(needed - 1)  # exact: needed − 1 < 2^bit_length
        self.widths = np.where(needed <= FINE_WIDTHS, -(-needed // MIN_WIDTH) * MIN_WIDTH,
                               np.left_shift(1, bit_lengths.astype(np.int64)))

    def outside(self, values: np.ndarray) -> np.ndarray:
        """Which values lie outside their windows (coded as the escape bin, then themselves)."""
        return (values < self.low) | (values > self.high)

    def indices(self, values: np.ndarray, escaped: np.ndarray, members: np.ndarray, width: int) -> np.ndarray:
        """The table entries the members' values are coded as."""
        return np.where(escaped[members], width - 1, values[members] - self.low[members])

    def chunks(self) -> Iterator[tuple[np.ndarray, int, np.ndarray]]:
        """(elements, width, their tables) in coding order: by width, then element, CHUNK_ENTRIES at most."""
        order = np.argsort(self.widths, kind="stable")
        for width in np.unique(self.widths):
            group = order[self.widths[order] == width]
            step = max(1, CHUNK_ENTRIES // int(width))
            for start in range(0, group.size, step):
                members = group[start : start + step]
                yield members, int(width), self._probabilities(members, int(width))

    def _probabilities(self, members: np.ndarray, width: int) -> np.ndarray:
        """(elements, width) mixture tables: Σ_k w_k·row_k shifted to its centre, then the escape bin."""
        table = np.zeros((members.size, width))
        ramp = np.arange(width - 1, dtype=np.int32)
        for k in range(self.weights.shape[0]):  # component by component: the same sums in the same order everywhere
            entries = self.base[k, members, None] + ramp
            np.clip(entries, self.before[k, members, None], self.after[k, members, None], out=entries)
            gathered = self.padded[entries]
            gathered *= self.weights[k, members, None]
            table[:, :-1] += gathered
        table[:, -1] = self.escape[members]
        return table

