"""The math of ``licrt::TopkAttention`` in numpy: the reference every implementation is held to."""

from __future__ import annotations

import numpy as np

from . import MASKS

NEGATIVE = -np.finfo(np.float32).max


def buckets_and_mask(query_start: int, queries: int, keys: int, positions: int, width: int, mask: int):
    """(Nq, Nk) diamond buckets and visibility of queries ``query_start..`` against keys ``0..``."""
    q = np.arange(query_start, query_start + queries)[:, None]
    k = np.arange(keys)[None, :]
    dv, dh = k // width - q // width, k % width - q % width
    half = positions // 2
    buckets = np.where(np.abs(dv) + np.abs(dh) <= half, (dv + half) * positions + dh + half, 0)
    visible = {MASKS["none"]: np.ones_like(buckets, dtype=bool),
               MASKS["causal"]: k <= q,
               MASKS["anchors"]: ((k // width + k % width) % 2 == 1) | (k == q)}[mask]
    return buckets, visible


def masked_logits(q, k, table, query_start: int, *, scale: float, positions: int, width: int, mask: int):
    """(B, heads, Nq, Nk) float32 logits (q·kᵀ + q·E[bucket]) · scale, −FLT_MAX where masked."""
    buckets, visible = buckets_and_mask(query_start, q.shape[2], k.shape[2], positions, width, mask)
    position = np.take_along_axis(q @ table.T, np.broadcast_to(buckets, (*q.shape[:2], *buckets.shape)), axis=-1)
    logits = ((q @ np.swapaxes(k, -1, -2) + position) * np.float32(scale)).astype(np.float32)
    return np.where(visible, logits, NEGATIVE)


def kth_largest(logits, topk: int):
    """Each row's k-th largest logit (counting repeats; the smallest where a row has fewer): what it keeps."""
    count = min(topk, logits.shape[-1])
    return -np.sort(-logits, axis=-1)[..., count - 1 : count]


def topk_attention(q, k, v, table, query_start: int, *, topk: int, scale: float, positions: int, width: int,
                   mask: int) -> np.ndarray:
    """float32 reference: (B, heads, Nq, d)."""
    logits = masked_logits(q, k, table, query_start, scale=scale, positions=positions, width=width, mask=mask)
    logits = np.where(logits >= kth_largest(logits, topk), logits, NEGATIVE)
    weights = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return (weights / weights.sum(axis=-1, keepdims=True)) @ v
