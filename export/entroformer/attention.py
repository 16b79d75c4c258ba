"""Entroformer's transformer: top-k attention with the diamond relative position encoding.

Qian et al., "Entroformer: A Transformer-based Entropy Model for Learned
Image Compression", https://arxiv.org/abs/2202.05492. Names and semantics
follow the official code (``module/entroformer_helper.py``), including its
quirks, so official checkpoints load and behave identically:

* qkv is one bias-free projection whose output features interleave q, k, v
  (q = features 0, 3, 6, …);
* logits are (q·kᵀ + q·r_ij) · dim^-½ with dim the embedding width (384), not
  the head width; r_ij is the relative-position embedding of the offset
  between query i and key j, shared by all heads;
* the diamond RPE: offsets with |dv| + |dh| ≤ P // 2 get their own embedding,
  every other offset shares bucket 0 (the corner (-P//2, -P//2));
* masked logits become -finfo.max; then top-k keeps every logit ≥ the k-th
  largest of its row (ties keep more) and sets the rest to -finfo.max;
* the softmax runs in float32; pre-LN blocks with a LeakyReLU(0.2) FFN.

The official code materialises an (N, N, 64) tensor of r_ij; licrt computes
q·Eᵀ (N × P²) once and gathers it by bucket, the same sums in another order.
That core is one op, ``licrt::TopkAttention`` (:mod:`licrt.plugins.topk_attention`),
which exported graphs keep whole for a fused kernel to replace.
"""

from __future__ import annotations

import torch
from torch import nn

from licrt.plugins.topk_attention import MASKS
from licrt.plugins.topk_attention.torch_op import attention_logits, keep_topk, topk_attention

class Attention(nn.Module):
    """Multi-head top-k attention; the first block of a group owns the RPE table."""

    def __init__(self, dim: int, heads: int, dim_head: int, positions: int | None):
        super().__init__()
        self.heads, self.dim_head, self.scale = heads, dim_head, dim**-0.5
        self.qkv = nn.Linear(dim, 3 * heads * dim_head, bias=False)
        self.o = nn.Linear(heads * dim_head, dim, bias=False)
        if positions is not None:
            self.relative_attention_bias = nn.Embedding(positions * positions, dim_head)

    def project(self, x):
        """(B, N, dim) → q, k, v, each (B, heads, N, d), from the interleaved projection."""
        batch, tokens, _ = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, self.heads, self.dim_head, 3)
        return [qkv[..., i].transpose(1, 2) for i in range(3)]

    def merge(self, out):
        """(B, heads, N, d) → (B, N, dim) through the output projection."""
        batch, _, tokens, _ = out.shape
        return self.o(out.transpose(1, 2).reshape(batch, tokens, self.heads * self.dim_head))

    def attend(self, q, k, v, table, query_start, topk: int, width: int, mask: str):
        """The attention core for these queries, keys and values (query_start: token index of query 0)."""
        positions = round(table.shape[0] ** 0.5)
        return topk_attention(q, k, v, table, query_start, topk=topk, scale=self.scale, positions=positions,
                              width=width, mask=mask)

    def attend_cached(self, q, k, v, k_cache, v_cache, table, row, topk: int, width: int):
        """attend() for one query, token ``row``, under the causal mask: against the cached keys and values
        of the tokens before it and its own k and v, which are not written into the cache first, so a step
        graph reads the caches where they lie and copies none of them.

        Args:
            q, k, v: (1, heads, 1, d) of token ``row``.
            k_cache, v_cache: (1, heads, N, d); rows ≥ ``row`` are ignored.
            row: (1,) int64.
        """
        positions = round(table.shape[0] ** 0.5)
        logits = attention_logits(q, k_cache, table, row, self.scale, positions, width, MASKS["causal"])
        centre = positions // 2 * (positions + 1)  # the bucket of offset (0, 0)
        own_logit = (q @ k.transpose(-2, -1) + q @ table[centre : centre + 1].t()) * self.scale
        own = torch.arange(k_cache.shape[-2], device=q.device) == row
        weights = torch.softmax(keep_topk(torch.where(own, own_logit, logits), topk), dim=-1)
        return weights.masked_fill(own, 0.0) @ v_cache + weights.index_select(-1, row) * v

    def forward(self, x, table, topk: int, width: int, mask: str):
        q, k, v = self.project(x)
        start = torch.zeros(1, dtype=torch.long, device=x.device)
        return self.merge(self.attend(q, k, v, table, start, topk, width, mask))


class AttentionBlock(nn.Module):
    """h + Attention(LayerNorm(h)), T5-style (official ``AttentionBlock``)."""

    def __init__(self, dim: int, heads: int, dim_head: int, positions: int | None):
        super().__init__()
        self.SelfAttention = Attention(dim, heads, dim_head, positions)  # noqa: N815 (official key)
        self.layer_norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(0.0)

    def forward(self, h, table, topk, width, mask):
        return h + self.dropout(self.SelfAttention(self.layer_norm(h), table, topk, width, mask))


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, dim), nn.Dropout(0.0))

    def forward(self, x):
        return self.net(x)


class PreNorm(nn.Module):
    def __init__(self, dim: int, fn: nn.Module):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fn = fn

    def forward(self, x):
        return self.fn(self.norm(x))


class Block(nn.Module):
    """One pre-LN transformer block: attention, then the feed-forward network."""

    def __init__(self, dim: int, heads: int, dim_head: int, mlp_ratio: int, positions: int | None = None):
        super().__init__()
        self.layer = nn.ModuleList([
            AttentionBlock(dim, heads, dim_head, positions),
            PreNorm(dim, FeedForward(dim, dim * mlp_ratio)),
        ])

    @property
    def attention(self) -> Attention:
        return self.layer[0].SelfAttention

    def forward(self, h, table, topk: int, width: int, mask: str):
        h = self.layer[0](h, table, topk, width, mask)
        return h + self.layer[1](h)


def run_blocks(blocks, h, topk: int, width: int, mask: str):
    """A group of blocks sharing the first block's RPE table, over tokens of a grid ``width`` wide."""
    table = blocks[0].attention.relative_attention_bias.weight
    for block in blocks:
        h = block(h, table, topk, width, mask)
    return h


def to_tokens(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) → (B, H·W, C), raster order."""
    return x.flatten(2).transpose(1, 2)


def to_map(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, H·W, C) → (B, C, H, W)."""
    return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], height, width)
