"""ELIC's space-channel context model (SCCTX) with S2CFormer blocks.

He et al., "ELIC: Efficient Learned Image Compression with Unevenly Grouped
Space-Channel Contextual Adaptive Coding", https://arxiv.org/abs/2203.10886.
ŷ is split into uneven channel groups (default [16, 16, 32, 64, 192]); each
group is coded in two checkerboard passes, anchors first::

    group k, anchors:      params = agg_k( 0,        ctx_k(ŷ_<k), hyper )
    group k, non-anchors:  params = agg_k( sp_k(ŷ_k), ctx_k(ŷ_<k), hyper )

* ctx_k (k ≥ 1) is the channel context: conv 3×3 → S2C-Conv block → conv 1×1.
  It is computed in the anchor pass and handed to the non-anchor pass as the
  state tensor ``ctx{k}``, so each group's channel context runs once.
* sp_k is ELIC's checkerboard spatial context, a 5×5 convolution over the
  group's anchors. At that point ŷ_k holds only anchors (the rest are still
  zero), so a plain convolution sees exactly what a masked one would.
* agg_k is the parameter aggregation: conv 1×1 → S2C-Identity block → conv
  1×1 → (scales, means), in that order, as in CompressAI's ELIC.

The paper states the S2C-Conv/S2C-Identity roles; the widths are licrt's.
Anchors are the positions with (i + j) even, as in CompressAI.
"""

from __future__ import annotations

import torch
from torch import nn

from licrt.runtime.schedule import CodingSchedule, ContextStep

from .blocks import S2CBlock

ANCHORS = "checkerboard-even"
NON_ANCHORS = "checkerboard-odd"


def scctx_schedule(groups: tuple[int, ...]) -> CodingSchedule:
    """Anchor and non-anchor pass for each channel group, group by group."""
    steps, start = [], 0
    for k, size in enumerate(groups):
        channels = (start, start + size)
        context = (f"ctx{k}",) if k else ()
        steps.append(ContextStep(f"y{k}-anchor", channels, ANCHORS,
                                 reads=("hyper", "y_hat") if k else ("hyper",), writes=context))
        steps.append(ContextStep(f"y{k}-nonanchor", channels, NON_ANCHORS,
                                 reads=("hyper", "y_hat", *context)))
        start += size
    return CodingSchedule(channels=start, steps=tuple(steps), sources=("hyper",))


class SpaceChannelContext(nn.Module):
    """The per-group networks of SCCTX, run one schedule step at a time."""

    def __init__(self, groups: tuple[int, ...], hyper_channels: int, context_width: int,
                 aggregation_width: int, ffn_ratio: int, kernel: int):
        super().__init__()
        self.groups = groups
        self.offsets = [sum(groups[:k]) for k in range(len(groups))]
        self.channel_context = nn.ModuleList()
        self.spatial_context = nn.ModuleList()
        self.aggregation = nn.ModuleList()
        for k, size in enumerate(groups):
            if k:
                self.channel_context.append(nn.Sequential(
                    nn.Conv2d(self.offsets[k], context_width, 3, padding=1),
                    S2CBlock(context_width, "conv", ffn_ratio, kernel),
                    nn.Conv2d(context_width, 2 * size, 1),
                ))
            self.spatial_context.append(nn.Conv2d(size, 2 * size, 5, padding=2))
            inputs = 2 * size + (2 * size if k else 0) + hyper_channels
            self.aggregation.append(nn.Sequential(
                nn.Conv2d(inputs, aggregation_width, 1),
                S2CBlock(aggregation_width, "identity", ffn_ratio, kernel),
                nn.Conv2d(aggregation_width, 2 * size, 1),
            ))

    def forward(self, step: ContextStep, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        start, stop = step.channels
        k = self.offsets.index(start)
        hyper = state["hyper"]
        outputs = {}
        context = None
        if step.positions == ANCHORS:
            spatial = hyper.new_zeros(hyper.shape[0], 2 * self.groups[k], *hyper.shape[2:])
            if k:
                context = outputs[f"ctx{k}"] = self.channel_context[k - 1](state["y_hat"][:, :start])
        else:
            spatial = self.spatial_context[k](state["y_hat"][:, start:stop])
            if k:
                context = state[f"ctx{k}"]
        parts = [spatial, hyper] if context is None else [spatial, context, hyper]
        scales, means = self.aggregation[k](torch.cat(parts, dim=1)).chunk(2, dim=1)
        outputs.update(scales=scales, means=means)
        return outputs
