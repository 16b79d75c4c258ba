"""Official-format Entroformer fixtures, and the official computations to check licrt against.

:func:`write_official_checkpoint` writes what the official code's
``torch.save`` writes: a dict of seven whole modules whose classes live in a
package named ``module`` (stand-in classes here, created for the duration of
the save, with the official names and some of the official attributes that
licrt does not use). Loading it must work without that package.

:func:`official_attention` is the official attention written out as the
official code computes it, with the (Nq, Nk, d) tensor of relative-position
embeddings materialised, independent of licrt's gathered form.
"""

from __future__ import annotations

import contextlib
import math
import sys
import types

import torch
from torch.nn import functional as F

from licrt.export.entroformer import attention, stacks, transforms
from licrt.export.entroformer.model import Entropy
from licrt.export.entroformer.official import OFFICIAL_MODULES
from licrt.plugins.topk_attention.reference import buckets_and_mask

OFFICIAL_CLASSES = {
    transforms.GDN: ("module.ops", "GDN"),
    transforms.Upsample: ("module.ops", "Upsample"),
    stacks.UpPixelShuffle: ("module.ops", "UpPixelShuffle"),
    transforms.Balle2Encoder: ("module.ballenet", "Balle2Encoder"),
    transforms.Balle2Decoder: ("module.ballenet", "Balle2Decoder"),
    stacks.TransHyperScale: ("module.entroformer", "TransHyperScale"),
    stacks.TransDecoder: ("module.entroformer", "TransDecoder"),
    stacks.TransDecoder2: ("module.entroformer", "TransDecoder2"),
    attention.Block: ("module.entroformer_helper", "Block"),
    attention.AttentionBlock: ("module.entroformer_helper", "AttentionBlock"),
    attention.Attention: ("module.entroformer_helper", "Attention"),
    attention.PreNorm: ("module.entroformer_helper", "PreNorm"),
    attention.FeedForward: ("module.entroformer_helper", "FeedForward"),
    Entropy: ("module.prob_model", "Entropy"),
}


@contextlib.contextmanager
def official_package():
    """A temporary importable package ``module`` with the official class names."""
    names = {"module", *(module for module, _ in OFFICIAL_CLASSES.values())}
    packages = {name: types.ModuleType(name) for name in names}
    classes = {}
    for source, (module, name) in OFFICIAL_CLASSES.items():
        classes[source] = type(name, (torch.nn.Module,), {"__module__": module})
        setattr(packages[module], name, classes[source])
    packages["module.entroformer_helper"].Config = type("Config", (), {"__module__": "module.entroformer_helper"})
    sys.modules.update(packages)
    try:
        yield classes, packages["module.entroformer_helper"].Config
    finally:
        for name in names:
            del sys.modules[name]


def write_official_checkpoint(model, path) -> None:
    """Save model's seven modules as the official code would (the model itself is left intact)."""
    copies = {name: _copy(getattr(model, name)) for name in OFFICIAL_MODULES}
    with official_package() as (classes, config):
        for module in copies.values():
            for child in module.modules():
                if type(child) in classes:
                    if isinstance(child, transforms.GDN):  # plain tensors of the official GDN
                        child.beta_bound = torch.tensor(1e-3)
                        child.gamma_bound = torch.tensor(2.0**-18)
                    if isinstance(child, stacks.TransHyperScale):
                        child.config = config()
                    child.__class__ = classes[type(child)]
        torch.save(copies, path)


def _copy(module):
    import copy

    return copy.deepcopy(module)


def official_attention(q, k, v, table, query_start, topk, scale, positions, width, mask):
    """The official attention: r_ij materialised as (Nq, Nk, d), added to the logits before scaling.

    Same signature as ``licrt.plugins.topk_attention.torch_op.eager_topk_attention``; the
    bucket and mask matrices come from the plugin's numpy reference.
    """
    buckets, visible = buckets_and_mask(int(query_start[0]), q.shape[2], k.shape[2], positions, width, mask)
    buckets, mask = torch.from_numpy(buckets), torch.from_numpy(visible)
    relative = table[buckets]  # (Nq, Nk, d)
    logits = q @ k.transpose(-2, -1) + torch.einsum("bhqd,qkd->bhqk", q, relative)
    logits = logits * scale
    logits = logits.masked_fill(~mask, -torch.finfo(logits.dtype).max)
    threshold = logits.topk(min(topk, logits.shape[-1]), dim=-1).values[..., -1:]
    logits = logits.masked_fill(logits < threshold, -torch.finfo(logits.dtype).max)
    return logits.float().softmax(dim=-1).to(v.dtype) @ v


def official_y_bits(y_hat, means, scales) -> float:
    """−Σ log2 P(ŷ) as the official DiscretizedMixGaussLoss computes it (K = 1), edge bins included."""
    centered = y_hat - means
    plus_in = (centered + 0.5) / scales
    min_in = (centered - 0.5) / scales
    normal = torch.distributions.Normal(0.0, 1.0)
    interior = torch.log((normal.cdf(plus_in) - normal.cdf(min_in)).clamp_min(1e-12))
    lowest = plus_in - F.softplus(plus_in)
    highest = -F.softplus(min_in)
    log_probability = torch.where(y_hat <= -128, lowest, torch.where(y_hat >= 127, highest, interior))
    return float(-log_probability.sum() / math.log(2))
