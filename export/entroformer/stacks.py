"""Entroformer's transformer stacks: the hyper encoder/decoder and the two context models.

Official classes (``module/entroformer.py``), same attribute names:

* ``TransHyperScale`` (``cit_he`` down, ``cit_hd`` up): one block per stage,
  three stages, 3×3 stride-2 convolutions between stages going down and
  conv + PixelShuffle going up; RPE sizes P = 7, 5, 5 and top-k 32, 16, 8
  from the y resolution down (reversed going up); global attention.
* ``TransDecoder2`` (parallel): checkerboard context. Inputs are the anchors,
  (i + j) odd, every query sees every anchor and itself, and features come
  out only at the non-anchors.
* ``TransDecoder`` (serial): causal raster context; the output is shifted by
  one token behind a learned start token, so token t sees only tokens < t.
"""

from __future__ import annotations

import random

import torch
from torch import nn

from .attention import Block, run_blocks, to_map, to_tokens


def _odd(n: int) -> int:
    return n if n % 2 else n + 1


def _topk(base: int, training: bool) -> int:
    """Fixed k at inference; a random k in [k/2, 2k) while training, as the official code."""
    return random.randrange(max(base // 2, 1), 2 * base) if training else base


class UpPixelShuffle(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.conv2d = nn.Conv2d(dim, 4 * dim, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x):
        return self.shuffle(self.conv2d(x))


class TransHyperScale(nn.Module):
    """The hyper transform: tokens ↔ conv resampling, one transformer stage per scale."""

    def __init__(self, cin: int, cout: int, dim: int, depth: int, heads: int, dim_head: int,
                 mlp_ratio: int, positions: int, topk: int, scale: int, down: bool):
        super().__init__()
        per_stage = depth // 2 // (scale + 1)
        sizes, size = [], positions
        for _ in range(scale + 1):
            sizes.append(size)
            size = max(_odd(size // 2), 5)
        topks = [max(topk // 2**i, 2) for i in range(scale + 1)]
        stages = [nn.ModuleList([Block(dim, heads, dim_head, mlp_ratio, p if j == 0 else None)
                                 for j in range(per_stage)]) for p in sizes]
        if down:
            self.trans_blocks = nn.ModuleList(stages)
            self.scale_blocks = nn.ModuleList([nn.Conv2d(dim, dim, 3, stride=2, padding=1) for _ in range(scale)])
            self.mlp_head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, cout))
        else:
            self.trans_blocks = nn.ModuleList(stages[::-1])
            self.scale_blocks = nn.ModuleList([UpPixelShuffle(dim) for _ in range(scale)])
            self.mlp_head = nn.Identity()
            sizes, topks = sizes[::-1], topks[::-1]
        self.to_patch_embedding = nn.Linear(cin, dim)
        self.sizes, self.topks = sizes, topks

    def forward(self, x):
        height, width = x.shape[2:]
        h = self.to_patch_embedding(to_tokens(x))
        for i, blocks in enumerate(self.trans_blocks):
            h = run_blocks(blocks, h, _topk(self.topks[i], self.training), width, "none")
            if i < len(self.scale_blocks):
                resampled = self.scale_blocks[i](to_map(h, height, width))
                height, width = resampled.shape[2:]
                h = to_tokens(resampled)
        return to_map(self.mlp_head(h), height, width)


def anchor_mask(height: int, width: int, device=None) -> torch.Tensor:
    """(H·W,) True at the anchors, (i + j) odd, in raster order (the official parity)."""
    rows = torch.arange(height, device=device).repeat_interleave(width)
    cols = torch.arange(width, device=device).repeat(height)
    return (rows + cols) % 2 == 1


class _Context(nn.Module):
    def __init__(self, latent_channels: int, dim: int, depth: int, heads: int, dim_head: int,
                 mlp_ratio: int, positions: int, topk: int):
        super().__init__()
        self.positions, self.topk = positions, topk
        self.to_patch_embedding = nn.Linear(latent_channels, dim)
        self.blocks = nn.ModuleList([Block(dim, heads, dim_head, mlp_ratio, positions if i == 0 else None)
                                     for i in range(depth)])
        self.mlp_head = nn.Identity()

    def _transform(self, tokens, width, mask: str):
        h = run_blocks(self.blocks, self.to_patch_embedding(tokens), _topk(self.topk, self.training), width, mask)
        return self.mlp_head(h)


class TransDecoder2(_Context):
    """Bidirectional checkerboard context: non-anchor features from all anchors."""

    def forward(self, y_hat):
        height, width = y_hat.shape[2:]
        anchors = anchor_mask(height, width, y_hat.device)
        tokens = to_tokens(y_hat) * anchors[None, :, None]
        features = self._transform(tokens, width, "anchors") * ~anchors[None, :, None]
        return to_map(features, height, width)


class TransDecoder(_Context):
    """Causal raster context: the feature of token t depends on tokens < t only."""

    def __init__(self, latent_channels: int, dim: int, *args, **kwargs):
        super().__init__(latent_channels, dim, *args, **kwargs)
        self.sos_pred_token = nn.Parameter(torch.zeros(1, 1, dim))

    def forward(self, y_hat):
        height, width = y_hat.shape[2:]
        features = self._transform(to_tokens(y_hat), width, "causal")
        start = self.sos_pred_token.expand(features.shape[0], 1, -1)
        return to_map(torch.cat([start, features[:, :-1]], dim=1), height, width)

    def step(self, y_hat, position, k_caches, v_caches):
        """The context feature of token ``position`` from cached keys and values.

        The output at position t is the transformer's output at token t − 1
        (or the start token for t = 0). This computes only that token: its
        queries, keys and values in every block, attention against the
        cached keys and values of the tokens before it
        (:meth:`Attention.attend_cached`), and returns its key and value rows
        for the cache. Equal to the corresponding row of :meth:`forward` (the
        causal mask hides every later token).

        Args:
            y_hat: (1, M, H, W); only token t − 1 is read.
            position: (1,) int64, the token t whose context is wanted.
            k_caches, v_caches: One (heads, H·W, d) cache per block, with the
                rows of tokens < t − 1 filled; later rows are ignored.

        Returns:
            The feature (1, dim), the key and value rows (heads, d) of token
            t − 1 per block and its row index t − 1 (for t = 0: the start
            token, and rows for index 0 that the next run replaces).
        """
        width = y_hat.shape[3]
        row = (position - 1).clamp_min(0)
        token = torch.index_select(y_hat.flatten(2), 2, row).transpose(1, 2)  # (1, 1, M)
        table = self.blocks[0].attention.relative_attention_bias.weight
        h = self.to_patch_embedding(token)
        key_rows, value_rows = [], []
        for block, k_cache, v_cache in zip(self.blocks, k_caches, v_caches, strict=True):
            attention = block.attention
            q, k, v = attention.project(block.layer[0].layer_norm(h))
            out = attention.attend_cached(q, k, v, k_cache[None], v_cache[None], table, row, self.topk, width)
            h = h + block.layer[0].dropout(attention.merge(out))
            h = h + block.layer[1](h)
            key_rows.append(k[0, :, 0])
            value_rows.append(v[0, :, 0])
        feature = torch.where(position > 0, self.mlp_head(h)[0], self.sos_pred_token[0])
        return feature, key_rows, value_rows, row
