"""The guard: coding decisions that every backend takes alike.

Every float that decides how a latent element is coded becomes a *decision*,
the index of the interval the float falls in:

* the scale σ → its row in the scale table (boundaries halfway, on a log
  scale, between neighbouring table scales);
* the mean μ of a ``mean-shift`` codec → a step of the bundle's mean grid,
  μ̂ = step·⌊μ/step + ½⌋, so ŷ = symbol + μ̂ is the same float on every backend
  and so is every later pass's input;
* the mean μ of an ``integer`` codec → one of ``fraction_bins`` slices per
  unit, which gives its centre ⌊μ + ½⌋ and the fraction slot of its row;
* a Gaussian mixture's components → the scale and mean of each as an
  ``integer`` codec's, and its weight → an integer on the bundle's weight
  grid (:class:`MixtureGuard`).

Backends compute slightly different floats. Where the encoder's float lies
within the bundle's tolerance of a boundary (relative: of σ for a scale, of
max(|μ|, 1) for a mean), another backend could land on the other side. The
encoder *pins* those decisions to the interval below the boundary (either
codes the element about equally well) and writes their positions to the
pass's *side stream*; the decoder pins the same ones and computes every other
decision itself. A decoder whose floats are within the tolerance of the
encoder's thus takes exactly the encoder's decisions, and decodes exactly its
symbols.

A side stream is range-coded before the symbols of its pass: the count m of
pinned decisions and the gaps between their positions, Rice-coded with a
parameter both sides derive from m and the pass size n: about log2(n/m) + 2
bits each.
"""

from __future__ import annotations

from dataclasses import dataclass

import constriction
import numpy as np

from .entropy import ScaleTable, UndecodableError

#: Numbers a side stream codes are split into chunks of this many bits.
_CHUNK_BITS = 16
#: Numbers coded in a side stream have at most this many bits (a pass has fewer than 2⁴⁸ decisions).
_MAX_BITS = 48
_POWERS_OF_TWO = 2 ** np.arange(_MAX_BITS, dtype=np.int64)


#: Probabilities of a coded number's bit length 1.._MAX_BITS: counts and Rice
#: quotients are mostly small, so each length is half as likely as the one before.
_LENGTH_PROBABILITIES = 0.5 ** np.arange(_MAX_BITS, dtype=np.float64) / (2 - 0.5 ** (_MAX_BITS - 1))
_LENGTHS = constriction.stream.model.Categorical(_LENGTH_PROBABILITIES, perfect=False)


@dataclass(frozen=True)
class Decided:
    """The decisions of one batch of coded elements."""

    #: Table row of each element.
    rows: np.ndarray
    #: What each element's symbol is added to: μ̂ (mean-shift) or the centre (integer).
    centers: np.ndarray
    #: Every decision index, kind-major: (kinds × n) int32; digested with the symbols.
    codes: np.ndarray
    #: Flat indices into codes of the decisions within the tolerance of a boundary.
    near: np.ndarray


class Guard:
    """Turns a batch's scales and means into decisions.

    A decision is *pinned* to the interval just below its nearest boundary:
    the encoder pins every decision near a boundary (either interval codes
    the element equally well) and records it; the decoder pins the decisions
    the side stream names. So a side stream needs no bit for the side.

    Args:
        scale_table: The bundle's scale table.
        quantization: ``mean-shift`` or ``integer``.
        tolerance: Decisions within it of a boundary (relative, see above) are "near".
        mean_step: The mean grid of a ``mean-shift`` codec (None: μ is used as it is).
    """

    def __init__(self, scale_table: ScaleTable, quantization: str, tolerance: float, mean_step: float | None):
        self.table = scale_table
        self.integer = quantization == "integer"
        self.tolerance = tolerance
        self.mean_step = mean_step
        self._boundaries = scale_table.boundaries.astype(np.float64)
        #: Decisions per element: the scale, and the mean unless a mean-shift codec keeps μ as is.
        self.kinds = 2 if self.integer or mean_step is not None else 1

    def decide(self, scales: np.ndarray, means: np.ndarray, pinned: np.ndarray | None = None,
               pin_near: bool = False) -> Decided:
        """Decide every element of a batch.

        Args:
            scales, means: float32, one per element (any shape; flattened).
            pinned: Flat indices into the batch's codes of decisions to pin
                (the decoder's, from a side stream).
            pin_near: Pin every decision near a boundary (the encoder's, with the guard on).

        Raises:
            UndecodableError: a pinned decision is a scale decision where the
                table has a single scale (the side stream is corrupt).
        """
        scales = np.asarray(scales, np.float32).ravel()
        means = np.asarray(means, np.float32).ravel()
        n = scales.size
        pinned = np.empty(0, np.int64) if pinned is None else pinned
        scale_index, scale_near = self._scale(scales, pinned[pinned < n], pin_near)
        rows = self.table.first_row[scale_index]
        if self.kinds == 1:
            return Decided(rows.astype(np.int16), means, scale_index[None].astype(np.int32),
                           np.flatnonzero(scale_near))
        magnitude = np.maximum(np.abs(means.astype(np.float64)), 1.0)
        if self.integer:
            per_unit = self.table.fraction_bins[scale_index]
            grid = (means.astype(np.float64) + 0.5) * per_unit
        else:
            per_unit = np.float64(1.0 / self.mean_step)
            grid = _mean_grid(means, self.mean_step)
        mean_index, mean_near = _grid_decisions(grid, self.tolerance * magnitude * per_unit,
                                                pinned[pinned >= n] - n, pin_near)
        if self.integer:
            centers = np.floor_divide(mean_index, per_unit)
            rows = rows + mean_index - centers * per_unit
        else:
            centers = mean_index * self.mean_step
        return Decided(rows.astype(np.int16), centers.astype(np.float32),
                       np.stack([scale_index, mean_index]).astype(np.int32),
                       np.concatenate([np.flatnonzero(scale_near), n + np.flatnonzero(mean_near)]))

    def _scale(self, scales: np.ndarray, pinned: np.ndarray, pin_near: bool):
        """Scale decisions (table scale index) and which are near a boundary."""
        boundaries = self._boundaries
        index = np.searchsorted(self.table.boundaries, scales, side="left").astype(np.int64)
        if boundaries.size == 0:
            if pinned.size:
                raise UndecodableError("the coded data is corrupt: its side stream names a scale decision "
                                       "where the table has a single scale")
            return index, np.zeros(scales.size, bool)
        values = scales.astype(np.float64)
        below = boundaries[np.maximum(index - 1, 0)]
        above = boundaries[np.minimum(index, boundaries.size - 1)]
        # The nearest boundary j separates index j (below it, where a pinned decision goes) from j + 1.
        upper_nearer = (index == 0) | ((index < boundaries.size) & (above - values <= values - below))
        nearest = np.where(upper_nearer, index, index - 1)
        near = np.abs(values - boundaries[nearest]) <= self.tolerance * values
        _pin(index, nearest, near, pinned, pin_near)
        return index, near


@dataclass(frozen=True)
class MixtureDecided:
    """The decisions of one batch of elements coded with a K-component Gaussian mixture each."""

    #: (K, n) table row of each component.
    rows: np.ndarray
    #: (K, n) integer centre of each component (float32, as :attr:`Decided.centers`).
    centers: np.ndarray
    #: (K, n) integer weight of each component, 1 to the weight grid G.
    weights: np.ndarray
    #: Every decision index, (3K × n) int32: each component's scale and mean, then the weights.
    codes: np.ndarray
    #: Flat indices into codes of the decisions within the tolerance of a boundary.
    near: np.ndarray


class MixtureGuard:
    """Turns a batch's mixture weights, means and scales into decisions, pinned as :class:`Guard` pins.

    Each component's scale and mean are decided as an ``integer`` codec's
    (a table row with its mean's fraction slot, and an integer centre);
    each weight w becomes 1 + min(⌊w·G⌋, G − 1) on the bundle's weight grid
    of G steps (boundaries at the integers 1 … G − 1, "near" within the
    tolerance relative to w·G, at least 1; a weight of exactly 1 is decided
    as one a hair below, which another backend may compute), so every
    component keeps some mass.

    Args:
        scale_table: The bundle's scale table, with fraction slots.
        tolerance: As :class:`Guard`'s.
        components: K, the mixture's number of components.
        weight_grid: G.
    """

    def __init__(self, scale_table: ScaleTable, tolerance: float, components: int, weight_grid: int):
        self.component = Guard(scale_table, "integer", tolerance, None)
        self.components = components
        self.tolerance = tolerance
        self.weight_grid = weight_grid
        self.kinds = components * (self.component.kinds + 1)

    def decide(self, weights: np.ndarray, means: np.ndarray, scales: np.ndarray, pinned: np.ndarray | None = None,
               pin_near: bool = False) -> MixtureDecided:
        """Decide every element of a batch: weights, means and scales are (K, n) float32 (see :meth:`Guard.decide`
        for pinned and pin_near)."""
        scales, means = np.asarray(scales, np.float32), np.asarray(means, np.float32)
        size = scales[0].size
        pinned = np.empty(0, np.int64) if pinned is None else pinned
        per_component = self.component.kinds * size
        parts = []
        for k in range(self.components):
            start = k * per_component
            mine = pinned[(pinned >= start) & (pinned < start + per_component)] - start
            parts.append(self.component.decide(scales[k], means[k], mine, pin_near))
        start = self.components * per_component
        grid = np.asarray(weights, np.float32).astype(np.float64).ravel() * self.weight_grid
        nearest = np.rint(grid)
        inner = (nearest >= 1) & (nearest <= self.weight_grid - 1)  # 0 and G are the grid's ends, not boundaries
        tolerance = np.where(inner, self.tolerance * np.maximum(grid, 1.0), -1.0)  # relative, as a scale's
        index, weight_near = _grid_decisions(grid, tolerance, pinned[pinned >= start] - start, pin_near)
        index = np.clip(index, 0, self.weight_grid - 1)
        return MixtureDecided(
            np.stack([part.rows for part in parts]), np.stack([part.centers for part in parts]),
            (index + 1).reshape(self.components, size),
            np.concatenate([*(part.codes for part in parts), index.reshape(self.components, size).astype(np.int32)]),
            np.concatenate([*(part.near + k * per_component for k, part in enumerate(parts)),
                            start + np.flatnonzero(weight_near)]))


def _pin(index: np.ndarray, pinned_index: np.ndarray, near: np.ndarray, pinned: np.ndarray, pin_near: bool) -> None:
    """Set the pinned decisions (and with pin_near, the near ones) to their pinned index, in place."""
    if pin_near:
        index[near] = pinned_index[near]
    index[pinned] = pinned_index[pinned]


def grid_means(means: np.ndarray, step: float) -> np.ndarray:
    """μ̂: the means on a grid of step, as :class:`Guard` decides them where no boundary is near."""
    return (np.floor(_mean_grid(means, step)) * step).astype(np.float32)


def _mean_grid(means: np.ndarray, step: float) -> np.ndarray:
    """μ/step + ½ in float64: its integer part is μ̂/step (exact: step is a power of two)."""
    return np.asarray(means, np.float32).astype(np.float64) / step + 0.5


def _grid_decisions(grid: np.ndarray, tolerance: np.ndarray, pinned: np.ndarray, pin_near: bool):
    """⌊grid⌋ per element (boundaries at the integers) and which are near a boundary; pinned ones below it."""
    index = np.floor(grid).astype(np.int64)
    nearest = np.rint(grid).astype(np.int64)
    near = np.abs(grid - nearest) <= tolerance
    _pin(index, nearest - 1, near, pinned, pin_near)
    return index, near


def encode_side_stream(encoder, positions: np.ndarray, size: int) -> None:
    """Append the positions of a pass's pinned decisions (ascending, < size) to a RangeEncoder."""
    count = positions.size
    _encode_numbers(encoder, np.array([count + 1]))
    if not count:
        return
    rice = _rice_parameter(size, count)
    gaps = np.diff(positions, prepend=-1) - 1
    _encode_numbers(encoder, (gaps >> rice) + 1)
    _encode_bits(encoder, gaps & ((1 << rice) - 1), rice)


def decode_side_stream(decoder, size: int) -> np.ndarray:
    """Read what :func:`encode_side_stream` wrote for a pass of size decisions.

    Raises:
        UndecodableError: the count or a position is out of range (the data is corrupt).
    """
    count = int(_decode_numbers(decoder, 1)[0]) - 1
    if not 0 <= count <= size:
        raise UndecodableError(f"the coded data is corrupt: its side stream records {count:,} decisions "
                               f"of a pass that takes {size:,}")
    if not count:
        return np.empty(0, np.int64)
    rice = _rice_parameter(size, count)
    quotients = _decode_numbers(decoder, count) - 1
    if np.any(quotients > size >> rice):
        raise UndecodableError("the coded data is corrupt: a side stream position is out of range")
    gaps = (quotients << rice) | _decode_bits(decoder, count, rice)
    positions = np.cumsum(gaps + 1) - 1
    if positions[-1] >= size:
        raise UndecodableError("the coded data is corrupt: a side stream position is out of range")
    return positions


def side_stream_bits(positions: np.ndarray, size: int) -> float:
    """What :func:`encode_side_stream` spends on a pass, in bits (as its models price it)."""
    count = positions.size
    bits = _number_bits(np.array([count + 1]))
    if count:
        rice = _rice_parameter(size, count)
        gaps = np.diff(positions, prepend=-1) - 1
        bits += _number_bits((gaps >> rice) + 1) + count * rice
    return float(bits)


def max_side_stream_bytes(size: int) -> int:
    """The most bytes :func:`encode_side_stream` can write for a pass of size decisions.

    The count costs at most 24 bits of bit length (no entry of a model is less
    probable than 2⁻²⁴) plus its bits below the leading one; each recorded
    decision at most as much again for its Rice quotient, and the Rice bits.
    """
    width = max(1, size.bit_length())
    return -(-(24 + width + size * (24 + 2 * width)) // 8)


def _rice_parameter(size: int, count: int) -> int:
    """log2 of the mean gap, rounded down: both sides know size and count."""
    return max(0, (size // count).bit_length() - 1)


def _bit_lengths(numbers: np.ndarray) -> np.ndarray:
    return np.searchsorted(_POWERS_OF_TWO, numbers, side="right")


def _encode_numbers(encoder, numbers: np.ndarray) -> None:
    """Positive integers: bit length (categorical), then the bits below the leading one."""
    lengths = _bit_lengths(numbers)
    encoder.encode((lengths - 1).astype(np.int32), _LENGTHS)
    for width in np.unique(lengths - 1):
        members = lengths - 1 == width
        _encode_bits(encoder, numbers[members] - (1 << width), int(width))


def _decode_numbers(decoder, count: int) -> np.ndarray:
    widths = decoder.decode(_LENGTHS, count).astype(np.int64)
    numbers = np.empty(count, np.int64)
    for width in np.unique(widths):
        members = widths == width
        numbers[members] = (1 << width) + _decode_bits(decoder, int(members.sum()), int(width))
    return numbers


def _encode_bits(encoder, values: np.ndarray, width: int) -> None:
    """width raw bits per value, in chunks, low chunk first."""
    for shift in range(0, width, _CHUNK_BITS):
        bits = min(_CHUNK_BITS, width - shift)
        encoder.encode(((values >> shift) & ((1 << bits) - 1)).astype(np.int32),
                       constriction.stream.model.Uniform(1 << bits))


def _decode_bits(decoder, count: int, width: int) -> np.ndarray:
    values = np.zeros(count, np.int64)
    for shift in range(0, width, _CHUNK_BITS):
        bits = min(_CHUNK_BITS, width - shift)
        values |= decoder.decode(constriction.stream.model.Uniform(1 << bits), count).astype(np.int64) << shift
    return values


def _number_bits(numbers: np.ndarray) -> float:
    lengths = _bit_lengths(numbers)
    return float(np.sum(-np.log2(_LENGTH_PROBABILITIES[lengths - 1]) + lengths - 1))
