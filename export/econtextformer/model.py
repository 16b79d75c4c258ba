"""eContextformer (Koyuncu et al., TCSVT 2024): Cheng-style transforms, a 5×5 hyperprior, spatio-channel window
attention (:mod:`.context`) and a Gaussian mixture per latent element.

No official code or weights exist; the paper's framework, with the choices it
leaves open decided here (and in the README):

* **g_a**: four 3×3 stride-2 convolutions with GDN between them and one
  residual attention module (Cheng et al. 2020's simplified one: a trunk of
  three residual units gated by a sigmoid mask of three more) after the
  second; **g_s** mirrors it: a residual unit, 3×3 stride-2 transposed
  convolutions with inverse GDN, the attention module after the second.
* **Hyperprior** with 5×5 convolutions: h_a M → N (stride 1, 2, 2), h_s back
  to 2M features ("hyper"); ẑ under a factorized prior.
* **Entropy parameters**: for the group being coded, its cells' hyper
  features (2M, squeezed like the group) and context embedding (d_e; zeros
  for the first group: SFG) go through a 1×1 network per channel segment,
  (2M + d_e) → 2·d_e → 3·K_m·M/N_cs: mixture weight logits (softmax over the
  K_m components), means and log-scales (scales ≥ 0.11).
* **ŷ = round(y)** (half to even); the runtime codes it under the mixture of
  its components' rows of the Gaussian tables (:mod:`licrt.runtime.mixture`).
* **Training**: noise for the rate, straight-through rounding for g_s and for
  the context model's input (all groups at once, teacher forcing).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from licrt.runtime.schedule import CodingSchedule, ContextStep

from ..entroformer.transforms import GDN
from ..entropy_models import (LIKELIHOOD_BOUND, SCALE_BOUND, FactorizedPrior, add_uniform_noise, gaussian_bin_mass,
                              lower_bound, ste_round)
from ..hyperprior import HyperpriorCodec, TransformModules
from ..registry import register_codec
from ..s2cformer.blocks import downsample
from .context import SpatioChannelContext, segment_and_parity, squeeze_group, unsqueeze_group


@dataclass(frozen=True)
class EContextformerConfig:
    """Widths and depths (defaults: the paper's N = M = 192 model; ``latent_channels=312``, ``dim=624`` for its
    three highest rates)."""

    channels: int = 192  # N
    latent_channels: int = 192  # M
    segments: int = 4  # N_cs
    dim: int = 384  # d_e = 8M / N_cs
    depth: int = 8  # L: 4 window + 4 shifted-window layers
    heads: int = 12
    window: int = 8  # K
    components: int = 3  # K_m

    def __post_init__(self):
        if self.latent_channels % self.segments:
            raise ValueError(f"latent_channels {self.latent_channels} is not a multiple of segments {self.segments}")
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} is not a multiple of heads {self.heads}")


def mixture_likelihood(values: torch.Tensor, weights: torch.Tensor, means: torch.Tensor,
                       scales: torch.Tensor) -> torch.Tensor:
    """P(bin of width 1 around values) under Σ_k w_k N(μ_k, σ_k²); parameters have a leading component axis."""
    return lower_bound((weights * gaussian_bin_mass(values, scales, means)).sum(dim=0), LIKELIHOOD_BOUND)


class _ResidualUnit(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, channels // 2, 1), nn.ReLU(),
                                  nn.Conv2d(channels // 2, channels // 2, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(channels // 2, channels, 1))

    def forward(self, x):
        return F.relu(x + self.body(x))


class _AttentionModule(nn.Module):
    """Cheng et al. 2020's simplified attention: x + trunk(x) · sigmoid(mask(x))."""

    def __init__(self, channels: int):
        super().__init__()
        self.trunk = nn.Sequential(*(_ResidualUnit(channels) for _ in range(3)))
        self.mask = nn.Sequential(*(_ResidualUnit(channels) for _ in range(3)), nn.Conv2d(channels, channels, 1))

    def forward(self, x):
        return x + self.trunk(x) * torch.sigmoid(self.mask(x))


def _up(cin: int, cout: int, kernel: int = 3) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(cin, cout, kernel, stride=2, padding=kernel // 2, output_padding=1)


def econtextformer_schedule(channels: int, segments: int, components: int) -> CodingSchedule:
    """Spatial-first groups: for each channel segment, anchors ((i + j) even) then non-anchors. The first group
    reads the hyperprior alone (SFG); pass g ≥ 1 reads ŷ and the keys and values of the groups before g − 1
    (from pass g − 1) and leaves those of the groups before g for pass g + 1."""
    width = channels // segments
    steps = []
    groups = 2 * segments
    for g in range(groups):
        segment, parity = segment_and_parity(g)
        reads = ("hyper",) if g == 0 else ("hyper", "y_hat", *((f"keys{g - 1}", f"values{g - 1}") if g > 1 else ()))
        writes = (f"keys{g}", f"values{g}") if 0 < g < groups - 1 else ()
        name, positions = ("anchor", "checkerboard-even") if parity == 0 else ("nonanchor", "checkerboard-odd")
        steps.append(ContextStep(f"s{segment}-{name}", (segment * width, (segment + 1) * width), positions,
                                 reads=reads, writes=writes))
    return CodingSchedule(channels, tuple(steps), components=components)


class EContextformer(TransformModules, HyperpriorCodec):
    """The eContextformer codec (see the module docstring)."""

    y_quantization = "integer"
    mean_step = None
    #: Coarser grids than a Gaussian codec's (8/σ mean slices, up to 64): a mixture takes nine decisions per
    #: element, and the guard records those near a boundary at ~11 bits each. On Kodak with the small
    #: reference model, 8/σ slices and 61 weight steps spent 8.3 % of the coded data on side streams; 2/σ
    #: slices (up to 8) and 31 steps (prime: equal weights 1/2, 1/3 … lie mid-interval) spend 3.2 %, for
    #: 5.3 % less coded data (bench/results/mixture-guard-cost.json).
    fraction_slices = (2.0, 8)
    weight_grid = 31

    def __init__(self, codec_id: str, config: EContextformerConfig):
        super().__init__()
        self.codec_id, self.config = codec_id, config
        c = config
        n, m = c.channels, c.latent_channels
        self.g_a = nn.Sequential(downsample(3, n), GDN(n), downsample(n, n), GDN(n), _AttentionModule(n),
                                 downsample(n, n), GDN(n), downsample(n, m))
        self.g_s = nn.Sequential(_ResidualUnit(m), _up(m, n), GDN(n, inverse=True), _up(n, n), GDN(n, inverse=True),
                                 _AttentionModule(n), _up(n, n), GDN(n, inverse=True), _up(n, 3))
        self.h_a = nn.Sequential(nn.Conv2d(m, n, 5, padding=2), nn.LeakyReLU(), downsample(n, n, 5), nn.LeakyReLU(),
                                 downsample(n, n, 5))
        self.h_s = nn.Sequential(_up(n, m, 5), nn.LeakyReLU(), _up(m, 3 * m // 2, 5), nn.LeakyReLU(),
                                 nn.Conv2d(3 * m // 2, 2 * m, 5, padding=2))
        self.z_prior = FactorizedPrior(n)
        self.context = SpatioChannelContext(m, c.segments, c.dim, c.depth, c.heads, c.window)
        width = m // c.segments
        self.parameter_nets = nn.ModuleList(
            nn.Sequential(nn.Linear(2 * m + c.dim, 2 * c.dim), nn.GELU(),
                          nn.Linear(2 * c.dim, 3 * c.components * width))
            for _ in range(c.segments))
        self.schedule = econtextformer_schedule(m, c.segments, c.components)
        self._steps = {step.name: g for g, step in enumerate(self.schedule.steps)}

    def mixture(self, group: int, hyper: torch.Tensor, context: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """Weights, means and scales of a group's cells, (B, K_m·M/N_cs, H, W/2) each, component-major, from the
        hyper features and the context embeddings (B, H, W/2, d_e) of its cells (None: the first group)."""
        segment, parity = segment_and_parity(group)
        features = squeeze_group(hyper, parity).permute(0, 2, 3, 1)
        if context is None:
            context = features.new_zeros((*features.shape[:3], self.config.dim))
        out = self.parameter_nets[segment](torch.cat([features, context], dim=-1)).permute(0, 3, 1, 2)
        logits, means, log_scales = out.chunk(3, dim=1)
        batch, _, height, half = logits.shape
        components = self.config.components
        weights = torch.softmax(logits.reshape(batch, components, -1, height, half), dim=1).flatten(1, 2)
        return {"weights": weights, "means": means, "scales": log_scales.exp().clamp_min(SCALE_BOUND)}

    def context_step(self, step, state):
        group = self._steps[step.name]
        context, writes = None, {}
        if group > 0:
            caches = None
            if group > 1:
                caches = list(zip(state[f"keys{group - 1}"].unbind(0), state[f"values{group - 1}"].unbind(0),
                                  strict=True))
            context, extended = self.context.step(state["y_hat"], group - 1, caches)
            if step.writes:
                writes = {f"keys{group}": torch.stack([k for k, _ in extended]),
                          f"values{group}": torch.stack([v for _, v in extended])}
        _, parity = segment_and_parity(group)
        parameters = {name: unsqueeze_group(value, parity)
                      for name, value in self.mixture(group, state["hyper"], context).items()}
        return {**parameters, **writes}

    def quantize_latent(self, y, parameters, exact):
        return torch.round(y) if exact else ste_round(y)

    def latent_symbols(self, y_hat, parameters):
        return torch.round(y_hat)

    def latent_likelihood(self, y_hat, parameters):
        components = self.config.components
        weights, means, scales = (parameters[name].reshape(components, *y_hat.shape)
                                  for name in ("weights", "means", "scales"))
        return mixture_likelihood(y_hat, weights, means, scales)

    def forward(self, x):
        """Training: every group's mixture at once, the context model fed ŷ (straight-through)."""
        y = self.analysis(x)
        z = self.hyper_analysis(y)
        z_noisy = add_uniform_noise(z)
        hyper = self.h_s(ste_round(z))
        y_hat = ste_round(y)
        y_noisy = add_uniform_noise(y)
        contexts = self.context(y_hat)
        components = self.config.components
        segments = [0.0] * self.config.segments
        for group in range(len(self.schedule.steps)):
            (channels, parity), (segment, _) = self.context.group(group), segment_and_parity(group)
            mixture = self.mixture(group, hyper, None if group == 0 else contexts[:, group - 1])
            batch, _, height, half = mixture["weights"].shape
            weights, means, scales = (value.reshape(batch, components, -1, height, half).transpose(0, 1)
                                      for value in mixture.values())
            values = squeeze_group(y_noisy[:, channels], parity)
            # Anchors and non-anchors of a segment: each element is in one of them, zero in the other.
            segments[segment] = segments[segment] + unsqueeze_group(mixture_likelihood(values, weights, means, scales),
                                                                    parity)
        likelihoods = {"y": torch.cat(segments, dim=1), "z": self.z_prior.likelihood(z_noisy)}
        return {"x_hat": self.synthesis(y_hat), "likelihoods": likelihoods}


register_codec("econtextformer", EContextformerConfig(),
               "eContextformer: spatio-channel window attention, 7 cached context passes, 3-Gaussian mixtures")(
    EContextformer)
register_codec("econtextformer-hr", EContextformerConfig(latent_channels=312, dim=624),
               "eContextformer for its highest rates: M = 312")(EContextformer)
