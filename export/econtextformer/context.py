"""eContextformer's context model: spatio-channel window attention over coding groups.

Koyuncu et al., "Efficient Contextformer: Spatio-Channel Window Attention for
Fast Context Modeling in Learned Image Compression", IEEE TCSVT 34(8), 2024.
No official code exists; what the paper leaves open is decided here:

* **Groups** (checkered × channel grouping, spatial-first order): segment s
  of N_cs channel segments, anchors ((i + j) even) then non-anchors, for
  s = 0 … N_cs − 1: 2·N_cs groups.
* **EGR**: a group's positions, squeezed to half width, make one
  (H, W/2) grid of tokens: position (i, j) of parity a sits at (i, j // 2),
  so the anchor and non-anchor of a horizontal pair share a grid cell. A
  token is the segment's M/N_cs channels there, embedded linearly to d_e,
  plus a learned embedding of its group.
* **Windows** of K × K grid cells (K × 2K latents); every second layer
  shifts them by K // 2 (Swin's cyclic shift, with its mask for cells that
  wrapped around). A grid that is no multiple of K is padded; padded cells
  are masked as keys. Relative position bias: Swin's, per head, over the
  (2K − 1)² offsets of the grid, the same between any two groups.
* **Causality**: a token of group g attends to the tokens of groups ≤ g in
  its window. The output of group g's tokens predicts group g + 1 at the
  same grid cells (**SFG**: group 0 is predicted from the hyperprior alone,
  so the transformer runs on groups 0 … 2·N_cs − 2: 2·N_cs − 1 passes).
* **Caching**: pass n runs only the tokens of group n − 1, against the keys
  and values of groups < n − 1 that earlier passes left, per layer and
  window (:meth:`SpatioChannelContext.step`); the same numbers as running
  all groups at once (:meth:`SpatioChannelContext.forward`), which training uses.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def segment_and_parity(group: int) -> tuple[int, int]:
    """The channel segment and checkerboard parity (0: anchors, (i + j) even) of coding group ``group``, in
    spatial-first order: each segment's anchors, then its non-anchors."""
    return divmod(group, 2)


def _parity_first(height: int, parity: int, device) -> torch.Tensor:
    """(height, 1) bool: whether a row's position of that parity is the first of each horizontal pair."""
    odd_row = (torch.arange(height, device=device) % 2 == 1).view(height, 1)
    return (parity == 0) != odd_row


def squeeze_group(values: torch.Tensor, parity: int) -> torch.Tensor:
    """(B, C, H, W) → (B, C, H, W/2): the positions of one checkerboard parity ((i + j) % 2 == parity)."""
    batch, channels, height, width = values.shape
    pairs = values.reshape(batch, channels, height, width // 2, 2)
    first = _parity_first(height, parity, values.device)
    return torch.where(first, pairs[..., 0], pairs[..., 1])


def unsqueeze_group(values: torch.Tensor, parity: int) -> torch.Tensor:
    """The inverse of :func:`squeeze_group`: (B, C, H, W/2) → (B, C, H, W), zero at the other parity."""
    batch, channels, height, half = values.shape
    first = _parity_first(height, parity, values.device)
    zero = torch.zeros_like(values)
    pairs = torch.stack([torch.where(first, values, zero), torch.where(first, zero, values)], dim=-1)
    return pairs.reshape(batch, channels, height, 2 * half)


class _Windows:
    """How a (height, width) grid of cells is cut into K × K windows: padding, shift, and what may attend to what."""

    def __init__(self, height: int, width: int, size: int, shift: int, device=None):
        self.size, self.shift = size, shift
        self.height, self.width = height, width
        self.padded = (-(-height // size) * size, -(-width // size) * size)
        rows, cols = self.padded
        # Regions that the cyclic shift brings together; cells of different regions must not attend to each other.
        region = torch.zeros(rows, cols, dtype=torch.long, device=device)
        if shift:
            cuts = [slice(0, -size), slice(-size, -shift), slice(-shift, None)]
            for label, (r, c) in enumerate((r, c) for r in cuts for c in cuts):
                region[r, c] = label
        inside = torch.zeros(rows, cols, dtype=torch.bool, device=device)
        inside[:height, :width] = True
        self.region = self.partition(region[None, :, :, None])[..., 0]  # (windows, K²)
        self.inside = self.partition(inside[None, :, :, None])[..., 0]

    def partition(self, cells: torch.Tensor) -> torch.Tensor:
        """(B, rows, cols, d) on the padded grid, shifted → (B · windows, K², d)."""
        if self.shift:
            cells = torch.roll(cells, (-self.shift, -self.shift), dims=(1, 2))
        batch, rows, cols, depth = cells.shape
        k = self.size
        cells = cells.reshape(batch, rows // k, k, cols // k, k, depth).transpose(2, 3)
        return cells.reshape(-1, k * k, depth)

    def merge(self, windows: torch.Tensor, batch: int) -> torch.Tensor:
        """The inverse of :meth:`partition`: (B · windows, K², d) → (B, rows, cols, d), shift undone."""
        rows, cols = self.padded
        k = self.size
        cells = windows.reshape(batch, rows // k, cols // k, k, k, -1).transpose(2, 3).reshape(batch, rows, cols, -1)
        if self.shift:
            cells = torch.roll(cells, (self.shift, self.shift), dims=(1, 2))
        return cells

    def pad(self, cells: torch.Tensor) -> torch.Tensor:
        """(B, height, width, d) → the padded grid."""
        rows, cols = self.padded
        return F.pad(cells, (0, 0, 0, cols - self.width, 0, rows - self.height))

    def key_mask(self, groups: int) -> torch.Tensor:
        """(windows, K², groups · K²) bool: which keys (groups of cells, group-major) a cell of the last group
        may see: same region, not padding, and itself (so a padding cell's query, whose output is dropped,
        still has a key). Group causality is the caller's."""
        same = self.region[:, :, None] == self.region[:, None, :]
        allowed = same & self.inside[:, None, :]
        allowed |= torch.eye(allowed.shape[1], dtype=torch.bool, device=allowed.device)
        return allowed.repeat(1, 1, groups)


class SpatioChannelAttention(nn.Module):
    """Multi-head attention within windows, with Swin's relative position bias."""

    def __init__(self, dim: int, heads: int, window: int):
        super().__init__()
        self.heads, self.window = heads, window
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        nn.init.trunc_normal_(self.bias_table, std=0.02)
        coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
        offsets = coords[:, :, None] - coords[:, None, :] + window - 1
        self.register_buffer("bias_index", offsets[0] * (2 * window - 1) + offsets[1], persistent=False)

    def project(self, tokens: torch.Tensor):
        """(N, T, dim) → q, k, v, each (N, heads, T, d)."""
        count, length, dim = tokens.shape
        q, k, v = self.qkv(tokens).reshape(count, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        return q, k, v

    def attend(self, q, k, v, allowed: torch.Tensor) -> torch.Tensor:
        """Queries of one or more groups of a window's cells against keys of groups of them (both group-major):
        q (N, h, Gq·K², d), k and v (N, h, Gk·K², d), allowed (N or 1, Gq·K², Gk·K²) → (N, Gq·K², dim)."""
        cells = self.window * self.window
        groups_q, groups_k = q.shape[2] // cells, k.shape[2] // cells
        bias = self.bias_table[self.bias_index].permute(2, 0, 1)  # (h, K², K²): the same between any two groups
        bias = bias.repeat(1, groups_q, groups_k)
        logits = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1) + bias
        logits = logits.masked_fill(~allowed[:, None], float("-inf"))
        out = torch.softmax(logits, dim=-1) @ v
        count, heads, length, depth = out.shape
        return self.out(out.transpose(1, 2).reshape(count, length, heads * depth))


class _Layer(nn.Module):
    """Pre-norm transformer layer: window attention, then an MLP of 4·d_e."""

    def __init__(self, dim: int, heads: int, window: int, shifted: bool):
        super().__init__()
        self.shift = window // 2 if shifted else 0
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attention = SpatioChannelAttention(dim, heads, window)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))


class SpatioChannelContext(nn.Module):
    """The context model: ŷ of the coded groups → one context embedding per cell of the next group.

    Args:
        channels: M, the latent's channels.
        segments: N_cs, channel segments.
        dim: d_e, the token width.
        depth: L, layers (window and shifted-window attention alternating).
        heads: Attention heads.
        window: K, window side in grid cells.
    """

    def __init__(self, channels: int, segments: int, dim: int, depth: int, heads: int, window: int):
        super().__init__()
        self.segments, self.window = segments, window
        self.segment_channels = channels // segments
        self.groups = 2 * segments
        self.embed = nn.Linear(self.segment_channels, dim)
        self.group_embedding = nn.Parameter(torch.zeros(self.groups - 1, dim))
        nn.init.trunc_normal_(self.group_embedding, std=0.02)
        self.layers = nn.ModuleList(_Layer(dim, heads, window, shifted=i % 2 == 1) for i in range(depth))
        self.norm = nn.LayerNorm(dim)

    def group(self, index: int) -> tuple[slice, int]:
        """The channels and checkerboard parity of coding group index (spatial-first order)."""
        segment, parity = segment_and_parity(index)
        return slice(segment * self.segment_channels, (segment + 1) * self.segment_channels), parity

    def tokens(self, y_hat: torch.Tensor, index: int) -> torch.Tensor:
        """The embedded tokens of group index: (B, H, W/2, d_e)."""
        channels, parity = self.group(index)
        cells = squeeze_group(y_hat[:, channels], parity).permute(0, 2, 3, 1)
        return self.embed(cells) + self.group_embedding[index]

    def forward(self, y_hat: torch.Tensor) -> torch.Tensor:
        """All passes at once (training; every group of ŷ known): context embeddings of groups 1 … 2·N_cs − 1,
        (B, groups − 1, H, W/2, d_e), each from the groups before it."""
        inputs = torch.stack([self.tokens(y_hat, g) for g in range(self.groups - 1)], dim=1)
        batch, groups, height, half, dim = inputs.shape
        x = inputs
        for layer in self.layers:
            windows = _Windows(height, half, self.window, layer.shift, x.device)
            cells = windows.partition(windows.pad(layer.norm1(x).flatten(0, 1)))  # (B·G·nW, K², d)
            count = cells.shape[0] // (batch * groups)
            cells = cells.reshape(batch, groups, count, -1, dim).transpose(1, 2).reshape(batch * count, -1, dim)
            causal = torch.ones(groups, groups, dtype=torch.bool, device=x.device).tril()
            cells_per = self.window**2
            allowed = windows.key_mask(groups).repeat(batch, groups, 1)
            allowed &= causal.repeat_interleave(cells_per, 0).repeat_interleave(cells_per, 1)
            out = layer.attention.attend(*layer.attention.project(cells), allowed)
            out = out.reshape(batch, count, groups, cells_per, dim).transpose(1, 2).reshape(-1, cells_per, dim)
            attended = windows.merge(out, batch * groups)[:, :height, :half].reshape(x.shape)
            x = x + attended
            x = x + layer.mlp(layer.norm2(x))
        return self.norm(x)

    def step(self, y_hat: torch.Tensor, index: int, caches: list[tuple[torch.Tensor, torch.Tensor]] | None):
        """Pass index + 1 (index ≥ 0): group index's tokens against the cached keys and values of the groups
        before it. Returns its context embeddings (B, H, W/2, d_e) and the caches extended by its keys and
        values: per layer (keys, values), each (B · windows, heads, (index + 1) · K², d)."""
        x = self.tokens(y_hat, index)
        batch, height, half, _ = x.shape
        extended = []
        for number, layer in enumerate(self.layers):
            windows = _Windows(height, half, self.window, layer.shift, x.device)
            cells = windows.partition(windows.pad(layer.norm1(x)))
            q, k, v = layer.attention.project(cells)
            if caches is not None:
                cached_k, cached_v = caches[number]
                k, v = torch.cat([cached_k, k], dim=2), torch.cat([cached_v, v], dim=2)
            extended.append((k, v))
            allowed = windows.key_mask(index + 1).repeat(batch, 1, 1)
            out = layer.attention.attend(q, k, v, allowed)
            x = x + windows.merge(out, batch)[:, :height, :half]
            x = x + layer.mlp(layer.norm2(x))
        return self.norm(x), extended
