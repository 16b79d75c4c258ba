"""S2CFormer codecs (S2C-Identity, -Conv, -Attention, -Hybrid S/M/L/T).

Chen et al., https://arxiv.org/abs/2502.00700. Transforms (paper Fig. 3)::

    g_a: conv5↓ → L1×S2C(C1) → conv3↓ → L2×S2C(C2) → conv3↓ → L3×S2C(C3) → conv3↓ → y (M)
    g_s: sub-pixel↑ → L3×S2C(C3) → ↑ → L2×S2C(C2) → ↑ → L1×S2C(C1) → ↑ → x̂
    h_a: conv3 → S2C-Conv → conv3↓ → S2C-Conv → conv3↓ → z (N)
    h_s: ↑ → S2C-Conv → ↑ → S2C-Conv → conv3 → hyper (2N)

Stage channels {C1, C2, C3, M} = {192, 192, 192, 320}, window 8, depthwise
kernel 5, Gated-FFN ratio 4 (paper §4.1). The hyper transforms' layout is
licrt's choice (the paper does not give it). The entropy model is ELIC's
SCCTX (see :mod:`.context`); ẑ has a factorized prior.

Variants (paper §4.4): Hybrid-S [C, A, A] with {3, 3, 3} blocks, -M {3, 5, 5},
-L {3, 8, 8}, -T with channels 96/192/256 and {3, 5, 8}. ``s2c-hybrid-xs`` is
licrt's own compact variant (4.7 M parameters, ~30/53 kMAC per pixel for
g_a/g_s) for CPU deployment and the bundled default model. Shrink any of them
for tests or small reference models, e.g. ``--set channels=32,32,32
--set latent_channels=64 --set groups=8,8,16,32 --set blocks=1,1,1``.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..entropy_models import FactorizedPrior
from ..hyperprior import HyperpriorCodec, TransformModules
from ..registry import register_codec
from .blocks import SPATIAL_KINDS, S2CBlock, downsample, run_as_tokens, upsample
from .context import SpaceChannelContext, scctx_schedule


@dataclass(frozen=True)
class S2CConfig:
    """Hyperparameters of an S2CFormer codec."""

    channels: tuple[int, ...] = (192, 192, 192)
    blocks: tuple[int, ...] = (3, 3, 3)
    spatial: tuple[str, ...] = ("conv", "attention", "attention")
    latent_channels: int = 320
    hyper_channels: int = 192
    groups: tuple[int, ...] = (16, 16, 32, 64, 192)
    ffn_ratio: int = 4
    kernel: int = 5
    window: int = 8
    head_dim: int = 32
    context_width: int = 192
    aggregation_width: int = 256

    def __post_init__(self):
        if not len(self.channels) == len(self.blocks) == len(self.spatial) == 3:
            raise ValueError("channels, blocks and spatial need one entry per stage (3)")
        if unknown := set(self.spatial) - set(SPATIAL_KINDS):
            raise ValueError(f"spatial kinds {sorted(unknown)} are not among {SPATIAL_KINDS}")
        if sum(self.groups) != self.latent_channels:
            raise ValueError(f"groups {self.groups} do not add up to latent_channels {self.latent_channels}")
        for channels, spatial in zip(self.channels, self.spatial, strict=True):
            if spatial == "attention" and channels % self.head_dim:
                raise ValueError(f"attention stage channels {channels} are not a multiple of "
                                 f"head_dim {self.head_dim}")
        if self.hyper_channels % 2:
            raise ValueError("hyper_channels must be even")


def _stage(channels: int, blocks: int, spatial: str, config: S2CConfig) -> list[nn.Module]:
    return [S2CBlock(channels, spatial, config.ffn_ratio, config.kernel, config.window, config.head_dim)
            for _ in range(blocks)]


HYBRID = ("conv", "attention", "attention")


@register_codec("s2c-identity", S2CConfig(spatial=("identity",) * 3), "S2C-Identity: channel aggregation only")
@register_codec("s2c-conv", S2CConfig(spatial=("conv",) * 3), "S2C-Conv: separable 5x5 convolutions")
@register_codec("s2c-attention", S2CConfig(spatial=("attention",) * 3), "S2C-Attention: 8x8 window attention")
@register_codec("s2c-hybrid-s", S2CConfig(spatial=HYBRID, blocks=(3, 3, 3)), "S2C-Hybrid-S [C,A,A] {3,3,3}")
@register_codec("s2c-hybrid-m", S2CConfig(spatial=HYBRID, blocks=(3, 5, 5)), "S2C-Hybrid-M [C,A,A] {3,5,5}")
@register_codec("s2c-hybrid-l", S2CConfig(spatial=HYBRID, blocks=(3, 8, 8)), "S2C-Hybrid-L [C,A,A] {3,8,8}")
@register_codec("s2c-hybrid-t", S2CConfig(spatial=HYBRID, channels=(96, 192, 256), blocks=(3, 5, 8)),
                "S2C-Hybrid-T: channels 96/192/256, {3,5,8}")
@register_codec("s2c-hybrid-xs", S2CConfig(spatial=HYBRID, channels=(64, 96, 128), blocks=(1, 2, 2),
                                           latent_channels=160, groups=(16, 16, 32, 32, 64), hyper_channels=64,
                                           ffn_ratio=2, context_width=64, aggregation_width=96),
                "licrt's compact S2C-Hybrid (not in the paper): 4.7 M parameters, fast on CPUs")
class S2CFormer(TransformModules, HyperpriorCodec):
    """An S2CFormer codec; see the module docstring for the layout."""

    def __init__(self, codec_id: str, config: S2CConfig):
        super().__init__()
        self.codec_id = codec_id
        self.config = config
        c1, c2, c3 = config.channels
        m, n = config.latent_channels, config.hyper_channels
        spatial = config.spatial
        self.g_a = nn.Sequential(
            downsample(3, c1, 5), *_stage(c1, config.blocks[0], spatial[0], config),
            downsample(c1, c2), *_stage(c2, config.blocks[1], spatial[1], config),
            downsample(c2, c3), *_stage(c3, config.blocks[2], spatial[2], config),
            downsample(c3, m),
        )
        self.g_s = nn.Sequential(
            upsample(m, c3), *_stage(c3, config.blocks[2], spatial[2], config),
            upsample(c3, c2), *_stage(c2, config.blocks[1], spatial[1], config),
            upsample(c2, c1), *_stage(c1, config.blocks[0], spatial[0], config),
            upsample(c1, 3),
        )
        self.h_a = nn.Sequential(
            nn.Conv2d(m, n, 3, padding=1), *_stage(n, 1, "conv", config),
            downsample(n, n), *_stage(n, 1, "conv", config),
            downsample(n, n),
        )
        self.h_s = nn.Sequential(
            upsample(n, n), *_stage(n, 1, "conv", config),
            upsample(n, 3 * n // 2), *_stage(3 * n // 2, 1, "conv", config),
            nn.Conv2d(3 * n // 2, 2 * n, 3, padding=1),
        )
        self.z_prior = FactorizedPrior(n)
        self.schedule = scctx_schedule(config.groups)
        self.context = SpaceChannelContext(
            config.groups, 2 * n, config.context_width, config.aggregation_width,
            config.ffn_ratio, config.kernel,
        )

    def context_step(self, step, state):
        return self.context(step, state)

    def graph_forms(self):
        # The blocks in the token layout (see .blocks): the same functions, exported without layout round trips.
        return {
            "g_a": lambda codec, x: run_as_tokens(codec.g_a, x),
            "h_a": lambda codec, y: run_as_tokens(codec.h_a, y),
            "h_s": lambda codec, z_hat: {"hyper": run_as_tokens(codec.h_s, z_hat)},
            "g_s": lambda codec, y_hat: run_as_tokens(codec.g_s, y_hat),
        }
