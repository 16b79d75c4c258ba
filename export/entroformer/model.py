"""Entroformer codecs: ``entroformer`` (parallel, 2 passes) and ``entroformer-serial``.

Qian et al., https://arxiv.org/abs/2202.05492, reproduced from the official
code (damo-cv/entroformer) so that its checkpoints load as they are::

    x ─(2x−1)─► encode (GDN) ─► y ─► cit_he ─► z ─► ẑ ─► cit_hd ─► hyper
    ŷ ─► cit_ar ─► context;  cit_pn(hyper, context) ─► [log σ, μ]
    ŷ ─► decode (IGDN) ─(x/2 + ½)─► x̂

Conventions reproduced exactly: input in [-1, 1]; ŷ = clamp(⌊y + ½⌋, −128,
127) without mean shift (and likewise ẑ); parameters ordered [log σ, μ] with
log σ ≥ −7; a per-channel Gaussian prior for ẑ; anchors at (i + j) odd;
replicate padding centred to a multiple of 64.

licrt codes ŷ − rint(μ) against tables selected by σ and by the fractional
part of μ (quantised to a grid), so the file approaches the official
likelihood without a per-symbol table. One deviation: the official loss gives
the edge symbols −128 and 127 logistic tails; licrt's tables treat them like
any other symbol, which only matters for means near the clamp range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from licrt.runtime.manifest import Padding
from licrt.runtime.schedule import RASTER_POSITION, RASTER_ROW_INDEX, CodingSchedule, ContextStep

from ..entropy_models import TAIL_MASS, add_uniform_noise, standard_normal_cdf, ste_round, table_arrays
from ..hyperprior import HyperpriorCodec
from ..registry import register_codec
from .official import load_official
from .stacks import TransDecoder, TransDecoder2, TransHyperScale
from .transforms import Balle2Decoder, Balle2Encoder

#: ŷ and ẑ are integers in this range (official ``table_range`` 128).
SYMBOL_RANGE = (-128, 127)
LOG_SCALE_MIN = -7.0
LIKELIHOOD_MIN = 1e-12
#: Entroformer predicts scales down to exp(−7), so its table starts lower than
#: CompressAI's, and is twice as dense: its symbols are coded without mean
#: shift, where σ matters more.
SCALE_TABLE = np.exp(np.linspace(math.log(0.02), math.log(256.0), 128)).astype(np.float32)


@dataclass(frozen=True)
class EntroformerConfig:
    """Hyperparameters; the defaults are those of every official script."""

    channels: int = 192
    latent_channels: int = 384
    hyper_channels: int = 192
    dim_embed: int = 384
    depth: int = 6
    heads: int = 6
    dim_head: int = 64
    mlp_ratio: int = 4
    position_num: int = 7
    attn_topk: int = 32
    scale: int = 2

    def __post_init__(self):
        if self.heads * self.dim_head != self.dim_embed:
            raise ValueError(f"heads × dim_head ({self.heads}×{self.dim_head}) must equal dim_embed {self.dim_embed}")
        if self.depth // 2 // (self.scale + 1) < 1:
            raise ValueError(f"depth {self.depth} leaves the hyper transforms without blocks "
                             f"(depth // 2 // (scale + 1) must be ≥ 1)")


def round_half_up(x: torch.Tensor) -> torch.Tensor:
    """⌊x + ½⌋, the official rounding (``torch.floor(x + 0.5)``)."""
    return torch.floor(x + 0.5)


def quantize(x: torch.Tensor) -> torch.Tensor:
    return round_half_up(x).clamp(*SYMBOL_RANGE)


def gaussian_bin(values, means, scales):
    """Official likelihood: P(|x − μ| ± ½) under N(μ, σ²), floored at 1e-12."""
    distance = (values - means).abs()
    probability = standard_normal_cdf((0.5 - distance) / scales) - standard_normal_cdf((-0.5 - distance) / scales)
    return probability.clamp_min(LIKELIHOOD_MIN)


class Entropy(nn.Module):
    """The per-channel Gaussian prior of ẑ (official ``prob_model.Entropy``)."""

    def __init__(self, channels: int):
        super().__init__()
        self.mu = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.log_sigma = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def likelihood(self, z_hat):
        sigma = self.log_sigma.exp().clamp_min(1e-12)
        return gaussian_bin(z_hat, self.mu, sigma)

    @torch.no_grad()
    def tables(self) -> dict[str, np.ndarray]:
        """Per-channel tables over ẑ's range, trimmed where the mass is below TAIL_MASS."""
        values = torch.arange(SYMBOL_RANGE[0], SYMBOL_RANGE[1] + 1, dtype=torch.float64)
        mu = self.mu.detach().double().flatten()[:, None]
        sigma = self.log_sigma.detach().double().exp().clamp_min(1e-12).flatten()[:, None]
        pmf = gaussian_bin(values[None, :], mu, sigma).numpy()
        pmf /= pmf.sum(axis=1, keepdims=True)
        rows = []
        for row in pmf:
            cumulative = np.cumsum(row)
            first = int(np.searchsorted(cumulative, TAIL_MASS / 2))
            last = min(max(first, int(np.searchsorted(cumulative, 1 - TAIL_MASS / 2))), row.size - 1)
            kept = row[first : last + 1]
            rows.append((first + SYMBOL_RANGE[0], np.append(kept, max(1 - kept.sum(), 0.0))))
        return table_arrays(rows)


def parallel_schedule(latent_channels: int) -> CodingSchedule:
    """Anchors ((i + j) odd) from the hyperprior alone, then the rest from all anchors."""
    return CodingSchedule(latent_channels, (
        ContextStep("anchors", (0, latent_channels), "checkerboard-odd", reads=("hyper",)),
        ContextStep("non-anchors", (0, latent_channels), "checkerboard-even", reads=("hyper", "y_hat")),
    ))


class Entroformer(HyperpriorCodec):
    """The Entroformer codec with the official module tree (see the module docstring)."""

    padding = Padding("replicate", "center")
    load_official = staticmethod(load_official)
    y_quantization = "integer"
    mean_step = None
    rounding = "half-up"
    symbol_range = SYMBOL_RANGE
    scale_table = SCALE_TABLE

    def __init__(self, codec_id: str, config: EntroformerConfig):
        super().__init__()
        self.codec_id, self.config = codec_id, config
        c = config
        transformer = dict(dim=c.dim_embed, depth=c.depth, heads=c.heads, dim_head=c.dim_head,
                           mlp_ratio=c.mlp_ratio, positions=c.position_num, topk=c.attn_topk, scale=c.scale)
        self.encode = Balle2Encoder(c.channels, c.latent_channels)
        self.decode = Balle2Decoder(c.channels, c.latent_channels)
        self.cit_he = TransHyperScale(c.latent_channels, c.hyper_channels, down=True, **transformer)
        self.cit_hd = TransHyperScale(c.hyper_channels, c.dim_embed, down=False, **transformer)
        self.prob = Entropy(c.hyper_channels)
        self.cit_ar = TransDecoder2(c.latent_channels, c.dim_embed, c.depth, c.heads, c.dim_head, c.mlp_ratio,
                                    c.position_num, c.attn_topk)
        self.cit_pn = nn.Sequential(
            nn.Conv2d(2 * c.dim_embed, 4 * c.dim_embed, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(4 * c.dim_embed, 2 * c.latent_channels, 1),
        )
        self.schedule = parallel_schedule(c.latent_channels)

    @property
    def z_prior(self) -> Entropy:
        return self.prob

    def parameters_from(self, hyper, context):
        """cit_pn → (σ, μ); channels [0, M) are log σ, [M, 2M) are μ (the official order)."""
        log_scale, mean = self.cit_pn(torch.cat([hyper, context], dim=1)).chunk(2, dim=1)
        return log_scale.clamp_min(LOG_SCALE_MIN).exp(), mean

    def analysis(self, x):
        return self.encode(x * 2 - 1)

    def hyper_analysis(self, y):
        return self.cit_he(y)

    def quantize_hyper(self, z):
        return quantize(z)

    def hyper_synthesis(self, z_hat):
        return {"hyper": self.cit_hd(z_hat)}

    def context_step(self, step, state):
        hyper = state["hyper"]
        context = self.cit_ar(state["y_hat"]) if "y_hat" in step.reads else torch.zeros_like(hyper)
        scales, means = self.parameters_from(hyper, context)
        return {"scales": scales, "means": means}

    def synthesis(self, y_hat):
        return self.decode(y_hat) / 2 + 0.5

    def quantize_latent(self, y, parameters, exact):
        return quantize(y) if exact else ste_round(y).clamp(*SYMBOL_RANGE)

    def latent_symbols(self, y_hat, parameters):
        return y_hat - torch.round(parameters["means"])

    def latent_likelihood(self, y_hat, parameters):
        return gaussian_bin(y_hat, parameters["means"], parameters["scales"])

    def forward(self, x):
        """Training, as the official code: noise for the rate and the context, STE for g_s."""
        y = self.analysis(x)
        z = self.hyper_analysis(y)
        z_noisy = add_uniform_noise(z).clamp(*SYMBOL_RANGE)
        hyper = self.cit_hd(z_noisy)
        y_noisy = add_uniform_noise(y).clamp(*SYMBOL_RANGE)
        scales, means = self.parameters_from(hyper, self.cit_ar(y_noisy))
        return {
            "x_hat": self.synthesis(ste_round(y).clamp(*SYMBOL_RANGE)),
            "likelihoods": {"y": gaussian_bin(y_noisy, means, scales), "z": self.prob.likelihood(z_noisy)},
        }


register_codec("entroformer", EntroformerConfig(), "Entroformer, parallel: checkerboard, 2 passes after ẑ")(Entroformer)


def serial_schedule(latent_channels: int, depth: int) -> CodingSchedule:
    """Every position in raster order, all channels at once, with cached keys and values: one cache per
    block (a graph input of its own, which the step reads without slicing it out of a stacked one)."""
    caches = (*(f"k_cache{i}" for i in range(depth)), *(f"v_cache{i}" for i in range(depth)))
    return CodingSchedule(latent_channels, (
        ContextStep("raster", (0, latent_channels), "raster", reads=("hyper", "y_hat"), caches=caches),
    ))


class EntroformerSerial(Entroformer):
    """The unidirectional Entroformer: causal raster context, decoded with a key/value cache.

    The official decoder re-runs the whole transformer for every position
    (H·W/256 full passes). licrt's step graph computes one token per run
    against cached keys and values, which the causal mask makes exact.
    """

    def __init__(self, codec_id: str, config: EntroformerConfig):
        super().__init__(codec_id, config)
        c = config
        self.cit_ar = TransDecoder(c.latent_channels, c.dim_embed, c.depth, c.heads, c.dim_head, c.mlp_ratio,
                                   c.position_num, c.attn_topk)
        self.schedule = serial_schedule(c.latent_channels, c.depth)

    def initial_caches(self, step, y):
        c = self.config
        shape = (c.heads, y.shape[2] * y.shape[3], c.dim_head)
        return {name: y.new_zeros(shape) for name in step.caches}

    def context_step(self, step, state):
        position, depth = state[RASTER_POSITION], self.config.depth
        feature, key_rows, value_rows, row = self.cit_ar.step(
            state["y_hat"], position, [state[f"k_cache{i}"] for i in range(depth)],
            [state[f"v_cache{i}"] for i in range(depth)])
        hyper = torch.index_select(state["hyper"].flatten(2), 2, position)[..., None]  # (1, dim, 1, 1)
        scales, means = self.parameters_from(hyper, feature[..., None, None])
        rows = {f"k_cache{i}_row": key for i, key in enumerate(key_rows)}
        rows.update({f"v_cache{i}_row": value for i, value in enumerate(value_rows)})
        return {"scales": scales.flatten(1), "means": means.flatten(1), **rows, RASTER_ROW_INDEX: row}


register_codec("entroformer-serial", EntroformerConfig(),
               "Entroformer, serial: causal raster context with a key/value cache")(EntroformerSerial)
