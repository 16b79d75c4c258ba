"""``licrt::TopkAttention`` in PyTorch: the differentiable implementation models call.

In eager mode (training, the reference coder) :func:`topk_attention` computes
with plain torch ops, which hold the N×N logits. Inference on CUDA (no
gradient needed) runs the fused Triton kernel instead (:mod:`.triton_kernel`):
memory linear in N, the same tie rule. While torch.onnx exports, it calls
the registered custom op, which :data:`ONNX_TRANSLATIONS` turns into one
``licrt::TopkAttention`` node: the exported graph keeps the op whole.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass

import torch

from . import DOMAIN, MASKS, PLUGIN_ATTRIBUTES
from .onnx_function import OPSET, register_schema


def _negative(logits: torch.Tensor) -> float:
    """What masked and dropped logits become: −FLT_MAX in float32 (the op's definition), the type's lowest
    otherwise."""
    return torch.finfo(logits.dtype).min


def _indices(query_start: torch.Tensor, queries: int, keys: int, width: int, device):
    query = (query_start + torch.arange(queries, device=device))[:, None]
    key = torch.arange(keys, device=device)[None, :]
    return query, key


def attention_logits(q, k, table, query_start, scale: float, positions: int, width: int, mask: int):
    """Scaled dot products plus relative-position terms, masked: what top-k selects from."""
    query, key = _indices(query_start, q.shape[2], k.shape[2], width, q.device)
    dv, dh = key // width - query // width, key % width - query % width
    half = positions // 2
    bucket = torch.where(dv.abs() + dh.abs() <= half, (dv + half) * positions + dh + half, torch.zeros_like(dv))
    position = torch.gather(q @ table.t(), -1, bucket.expand(*q.shape[:2], *bucket.shape))
    logits = (q @ k.transpose(-2, -1) + position) * scale
    if mask == MASKS["causal"]:
        logits = logits.masked_fill(key > query, _negative(logits))
    elif mask == MASKS["anchors"]:
        logits = logits.masked_fill(((key // width + key % width) % 2 == 0) & (key != query), _negative(logits))
    return logits


@dataclass
class ForcedSelections:
    """Which keys top-k keeps, given from outside (another backend's choice), call by call."""

    #: Per call, in call order (consumed): the (…, N) boolean mask of the keys kept.
    kept: list[torch.Tensor]
    #: Logits within this distance of the k-th (relative, at least absolute) count as tied with it.
    margin: float
    #: Rows whose given keys differ from the ones top-k would keep.
    flipped_rows: int = 0
    #: Keys kept on one side only whose logit is not within the margin of the k-th: no tie explains them.
    unexplained_keys: int = 0


_forced: ContextVar[ForcedSelections | None] = ContextVar("forced_selections", default=None)


def keep_topk(logits: torch.Tensor, topk: int) -> torch.Tensor:
    """Logits below their row's k-th largest (counting repeats) become the lowest value: what top-k drops.

    Within :func:`selections_forced`, the given keys are kept instead, and the rows where they differ from
    this choice are counted.
    """
    kth = torch.topk(logits, min(topk, logits.shape[-1]), dim=-1).values[..., -1:]
    forced = _forced.get()
    if forced is None:
        return torch.where(logits >= kth, logits, torch.full_like(logits, _negative(logits)))
    if not forced.kept:
        raise ValueError("more top-k selections than were given")
    kept = forced.kept.pop(0).to(logits.device)
    if kept.shape != logits.shape:
        raise ValueError(f"given top-k keys {list(kept.shape)} do not fit logits {list(logits.shape)}")
    flipped = kept ^ (logits >= kth)
    tied = (logits - kth).abs() <= forced.margin * kth.abs().clamp_min(1.0)
    forced.flipped_rows += int(flipped.any(dim=-1).sum())
    forced.unexplained_keys += int((flipped & ~tied).sum())
    return torch.where(kept, logits, torch.full_like(logits, _negative(logits)))


@contextlib.contextmanager
def selections_forced(kept: list[torch.Tensor], margin: float) -> Iterator[ForcedSelections]:
    """Within this context, eager top-k keeps the given keys (another implementation's choice, call by
    call) and counts where they differ from its own: export verification reruns a stage with ONNX Runtime's
    choices to compare like with like, and checks that every differing choice was a near-tie."""
    forced = ForcedSelections(list(kept), margin)
    token = _forced.set(forced)
    try:
        yield forced
    finally:
        _forced.reset(token)


def eager_topk_attention(q, k, v, table, query_start, topk: int, scale: float, positions: int, width: int,
                         mask: int):
    logits = keep_topk(attention_logits(q, k, table, query_start, scale, positions, width, mask), topk)
    return torch.softmax(logits.float(), dim=-1).to(v.dtype) @ v


@torch.library.custom_op(f"{DOMAIN}::topk_attention", mutates_args=())
def _exported(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, table: torch.Tensor, query_start: torch.Tensor,
              topk: int, scale: float, positions: int, width: int, mask: int) -> torch.Tensor:
    return eager_topk_attention(q, k, v, table, query_start, topk, scale, positions, width, mask)


@_exported.register_fake
def _(q, k, v, table, query_start, topk, scale, positions, width, mask):
    return q.new_empty(*q.shape[:3], v.shape[3])


def topk_attention(q, k, v, table, query_start, *, topk: int, scale: float, positions: int, width: int, mask: str):
    """Top-k attention of q (B, heads, Nq, d) over k, v (B, heads, Nk, d); see the package docstring."""
    arguments = (q, k, v, table, query_start, topk, float(scale), positions, width, MASKS[mask])
    if torch.onnx.is_in_onnx_export():
        return torch.ops.licrt.topk_attention(*arguments)
    if q.is_cuda and not (torch.is_grad_enabled() and q.requires_grad):
        from .triton_kernel import MAX_TOPK, fused_topk_attention

        if topk <= MAX_TOPK:
            return fused_topk_attention(q, k, v, table, query_start.to(q.device), topk=topk, scale=scale,
                                        positions=positions, width=width, mask=MASKS[mask])
    return eager_topk_attention(*arguments)


def _translate(q, k, v, table, query_start, topk, scale, positions, width, mask):
    return OPSET.TopkAttention(q, k, v, table, query_start, topk=topk, scale=scale, positions=positions,
                               width=width, mask=mask, **PLUGIN_ATTRIBUTES)


register_schema()
#: For ``torch.onnx.export(custom_translation_table=...)``.
ONNX_TRANSLATIONS = {torch.ops.licrt.topk_attention.default: _translate}
