"""How a batch of ŷ's elements is decided, coded and added to ŷ: under a Gaussian each, or a Gaussian mixture.

The scheduler walks the passes and hands each batch's entropy parameters
(the step graph's outputs at the coded elements) to a coding: it takes the
guard's decisions, gives the encoder's symbols, writes and reads them, and
says what ŷ becomes. A Gaussian codec codes ``round(y − μ̂)`` (``mean-shift``)
or ``round(y) − ⌊μ + ½⌋`` (``integer``) against one table row; a mixture codec
codes ``round(y)`` against the mixture of its components' rows
(:mod:`licrt.runtime.mixture`).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np

from .guard import Guard, MixtureGuard
from .mixture import MixtureTables
from .schedule import MIXTURE_PARAMETERS


class GaussianCoding:
    """Each element under one Gaussian: parameters ``scales`` and ``means``, (C, n) or (C,) each."""

    def __init__(self, bundle):
        manifest = bundle.manifest
        self.guard = Guard(bundle.scale_table, manifest.y_quantization, manifest.guard_tolerance, manifest.mean_step)
        self.kinds = self.guard.kinds
        self.tables = bundle.y_tables
        self.mean_shift = manifest.y_quantization == "mean-shift"

    def decide(self, parameters: dict[str, np.ndarray], pinned: np.ndarray | None, pin_near: bool):
        return self.guard.decide(parameters["scales"], parameters["means"], pinned, pin_near)

    def symbols(self, values: np.ndarray, decided, rounding: Callable) -> np.ndarray:
        """The encoder's symbols of these values of y (flat, channel-major)."""
        coded = np.rint(values - decided.centers) if self.mean_shift else rounding(values) - decided.centers
        return coded.astype(np.int32)

    def writer(self, symbols: np.ndarray, decided) -> Callable:
        return partial(self.tables.encode, values=symbols, rows=decided.rows)

    def read(self, decoder, decided, echo) -> np.ndarray:
        """Decode a batch's symbols, writing to ``echo`` what the encoder wrote for them."""
        return self.tables.decode(decoder, decided.rows, echo)

    def latent(self, symbols: np.ndarray, decided) -> np.ndarray:
        """ŷ's values: symbol + μ̂ or centre."""
        return symbols + decided.centers

    def bits(self, symbols: np.ndarray, decided) -> float:
        return self.tables.information_bits(symbols, decided.rows)


class MixtureCoding:
    """Each element under a K-component mixture: parameters ``weights``, ``means`` and ``scales``, (K·C, n) or
    (K·C,) each, component-major."""

    def __init__(self, bundle):
        manifest = bundle.manifest
        self.components = manifest.schedule.components
        self.guard = MixtureGuard(bundle.scale_table, manifest.guard_tolerance, self.components,
                                  manifest.weight_grid)
        self.kinds = self.guard.kinds
        self.tables = MixtureTables(bundle.y_tables)

    def decide(self, parameters: dict[str, np.ndarray], pinned: np.ndarray | None, pin_near: bool):
        weights, means, scales = (parameters[name].reshape(self.components, -1) for name in MIXTURE_PARAMETERS)
        return self.guard.decide(weights, means, scales, pinned, pin_near)

    def symbols(self, values: np.ndarray, decided, rounding: Callable) -> np.ndarray:
        return rounding(values).astype(np.int32)

    def writer(self, symbols: np.ndarray, decided) -> Callable:
        return partial(self.tables.encode, values=symbols, decided=decided)

    def read(self, decoder, decided, echo) -> np.ndarray:
        return self.tables.decode(decoder, decided, echo)

    def latent(self, symbols: np.ndarray, decided) -> np.ndarray:
        return symbols.astype(np.float32)

    def bits(self, symbols: np.ndarray, decided) -> float:
        return self.tables.information_bits(symbols, decided)


def latent_coding(bundle) -> GaussianCoding | MixtureCoding:
    """The coding of a bundle's ŷ, as its schedule declares."""
    return MixtureCoding(bundle) if bundle.manifest.schedule.components > 1 else GaussianCoding(bundle)
