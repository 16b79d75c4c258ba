"""Entropy models in PyTorch, and the coding tables the runtime uses for them.

Conventions shared by all licrt codecs (and by the runtime, which reproduces
them in numpy):

* rounding is round-half-to-even (``torch.round`` / ``numpy.rint``);
* Gaussian scales are lower-bounded at 0.11 and coded against the row of the
  nearest table scale on a log scale (:data:`SCALE_TABLE`);
* likelihoods are lower-bounded at 1e-9 during training, as in CompressAI.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

SCALE_BOUND = 0.11
LIKELIHOOD_BOUND = 1e-9
#: Tail mass left outside each table row's explicit symbols (coded via escape).
TAIL_MASS = 1e-9
#: 48 log-spaced scales from 0.11 to 256 (CompressAI has 64). Each boundary
#: between scales is a decision the guard may have to record; on Kodak 48
#: scales cost 0.06 % of the rate against 64 and save a third of the guard's
#: side streams (0.41 % of the file instead of 0.59 %, bench/results/scale-table.json).
SCALE_TABLE = np.exp(np.linspace(math.log(0.11), math.log(256.0), 48)).astype(np.float32)


def ste_round(x: torch.Tensor) -> torch.Tensor:
    """Round in the forward pass, identity gradient in the backward pass."""
    return x + (torch.round(x) - x).detach()


def add_uniform_noise(x: torch.Tensor) -> torch.Tensor:
    """The training-time stand-in for rounding: x + U(-0.5, 0.5)."""
    return x + torch.empty_like(x).uniform_(-0.5, 0.5)


class _LowerBound(torch.autograd.Function):
    """max(x, bound), letting gradients through where they push x upwards."""

    @staticmethod
    def forward(ctx, x, bound):
        ctx.save_for_backward(x)
        ctx.bound = bound
        return x.clamp_min(bound)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        passes = (x >= ctx.bound) | (grad < 0)
        return grad * passes, None


def lower_bound(x: torch.Tensor, bound: float) -> torch.Tensor:
    return _LowerBound.apply(x, bound)


def standard_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.erfc(-x / math.sqrt(2.0))


def gaussian_bin_mass(values: torch.Tensor, scales: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    """P(bin of width 1 around values) under N(means, scales²), scales bounded below at SCALE_BOUND; computed on
    the side of the mean where the tail is, so small masses keep their precision."""
    scales = lower_bound(scales, SCALE_BOUND)
    distance = (values - means).abs()
    return standard_normal_cdf((0.5 - distance) / scales) - standard_normal_cdf((-0.5 - distance) / scales)


def gaussian_likelihood(values: torch.Tensor, scales: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    """:func:`gaussian_bin_mass`, lower-bounded at LIKELIHOOD_BOUND."""
    return lower_bound(gaussian_bin_mass(values, scales, means), LIKELIHOOD_BOUND)


def table_arrays(rows: list[tuple[int, np.ndarray]]) -> dict[str, np.ndarray]:
    """The arrays of a ``CategoricalTables`` from (offset, probabilities with escape bin) rows."""
    return {
        "probabilities": np.concatenate([p for _, p in rows]),
        "lengths": np.array([p.size for _, p in rows]),
        "offsets": np.array([offset for offset, _ in rows]),
    }


def fraction_bins(scale_table: np.ndarray, per_scale: float = 8.0, most: int = 64) -> np.ndarray:
    """How finely to slice the mean's fraction for each scale s: per_scale/s slices, a power of two from 1 to
    most.

    The rate lost to coding with the slice's central fraction instead of the
    true one grows like (δ/σ)², so narrow Gaussians need fine slices and wide
    ones need none; with the default rule the loss stays near 0.001 bit per
    symbol. Coarser slices put fewer of a pass's means near a slice boundary,
    where the guard must record them.
    """
    wanted = np.ceil(np.log2(per_scale / scale_table.astype(np.float64)))
    return (2 ** np.clip(wanted, 0, np.log2(most))).astype(np.int64)


def gaussian_tables(scale_table: np.ndarray = SCALE_TABLE, bins: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Coding tables for Gaussians, one row per table scale (and per mean-fraction slice).

    Without ``bins`` the Gaussians are centred on 0 (symbols are round(y − μ)).
    With ``bins[s]`` slices for scale s, row (s, b) is centred on the middle
    of slice b of [−½, ½] (symbols are ŷ − rint(μ)). Each row covers −c..c
    with c = ceil(scale · Φ⁻¹(1 − TAIL_MASS/2) + ½), then an escape bin with
    the remaining mass.
    """
    multiplier = -_normal_ppf(TAIL_MASS / 2)
    bins = np.ones(len(scale_table), np.int64) if bins is None else bins
    rows = []
    for scale, count in zip(scale_table.astype(np.float64), bins, strict=True):
        center = int(np.ceil(scale * multiplier + (0.5 if count > 1 else 0)))
        symbols = torch.arange(-center, center + 1, dtype=torch.float64)
        for slot in range(count):
            shift = -0.5 + (slot + 0.5) / count if count > 1 else 0.0
            pmf = (standard_normal_cdf((symbols + 0.5 - shift) / scale)
                   - standard_normal_cdf((symbols - 0.5 - shift) / scale)).numpy()
            rows.append((-center, np.append(pmf, max(1.0 - pmf.sum(), 0.0))))
    tables = {**table_arrays(rows), "scale_table": scale_table.astype(np.float32)}
    if bins.max() > 1:
        tables["fraction_bins"] = bins
    return tables


def _normal_ppf(p: float) -> float:
    return math.sqrt(2.0) * torch.special.erfinv(torch.tensor(2 * p - 1, dtype=torch.float64)).item()


class FactorizedPrior(nn.Module):
    """A learned per-channel density for ẑ (Ballé et al. 2018, appendix 6.1).

    https://arxiv.org/abs/1802.01436 — the cumulative is a per-channel
    monotone MLP with filters (3, 3, 3, 3). Unlike CompressAI's
    EntropyBottleneck it needs no quantile parameters or auxiliary loss: the
    coding range of each channel is found when the tables are built.

    Args:
        channels: Number of channels of z.
        filters: Hidden widths of the cumulative MLP.
        init_scale: Rough width of the initial density.
    """

    def __init__(self, channels: int, filters=(3, 3, 3, 3), init_scale: float = 10.0):
        super().__init__()
        widths = (1, *filters, 1)
        scale = init_scale ** (1 / (len(filters) + 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(filters) + 1):
            init = math.log(math.expm1(1 / scale / widths[i + 1]))
            self.matrices.append(nn.Parameter(torch.full((channels, widths[i + 1], widths[i]), init)))
            self.biases.append(nn.Parameter(torch.empty(channels, widths[i + 1], 1).uniform_(-0.5, 0.5)))
            if i < len(filters):
                self.factors.append(nn.Parameter(torch.zeros(channels, widths[i + 1], 1)))

    def _logits_cumulative(self, values: torch.Tensor) -> torch.Tensor:
        """values: (C, 1, n) → logits of the CDF at those values, (C, 1, n)."""
        logits = values
        dtype = values.dtype
        for i, (matrix, bias) in enumerate(zip(self.matrices, self.biases, strict=True)):
            logits = torch.matmul(F.softplus(matrix.to(dtype)), logits) + bias.to(dtype)
            if i < len(self.factors):
                logits = logits + torch.tanh(self.factors[i].to(dtype)) * torch.tanh(logits)
        return logits

    def _bin_probability(self, values: torch.Tensor) -> torch.Tensor:
        lower = self._logits_cumulative(values - 0.5)
        upper = self._logits_cumulative(values + 0.5)
        # Evaluate on the side of the median where the sigmoids are not saturated.
        sign = -torch.sign(lower + upper).detach()
        return (torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower)).abs()

    def likelihood(self, z: torch.Tensor) -> torch.Tensor:
        """Likelihood of each element of z (N, C, H, W), lower-bounded."""
        channels = z.shape[1]
        flat = z.transpose(0, 1).reshape(channels, 1, -1)
        probability = self._bin_probability(flat).reshape(channels, z.shape[0], *z.shape[2:])
        return lower_bound(probability.transpose(0, 1), LIKELIHOOD_BOUND)

    @torch.no_grad()
    def tables(self, search_range: int = 4096) -> dict[str, np.ndarray]:
        """Per-channel coding tables: explicit symbols where the density lives, escape for the rest."""
        channels = self.matrices[0].shape[0]
        device = self.matrices[0].device
        grid = torch.arange(-search_range, search_range + 1, dtype=torch.float64, device=device)
        values = grid.expand(channels, 1, -1)
        cdf_below = torch.sigmoid(self._logits_cumulative(values - 0.5))[:, 0].cpu()
        cdf_above = torch.sigmoid(self._logits_cumulative(values + 0.5))[:, 0].cpu()
        pmf = self._bin_probability(values)[:, 0].cpu()
        rows = []
        for c in range(channels):
            kept = (cdf_above[c] > TAIL_MASS / 2) & (cdf_below[c] < 1 - TAIL_MASS / 2)
            index = torch.nonzero(kept).flatten()
            first, last = (int(index[0]), int(index[-1])) if index.numel() else (search_range,) * 2
            tail = float(cdf_below[c, first] + (1 - cdf_above[c, last]))
            rows.append((first - search_range, np.append(pmf[c, first : last + 1].numpy(), tail)))
        return table_arrays(rows)
