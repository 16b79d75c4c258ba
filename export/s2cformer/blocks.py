"""S2CFormer blocks: spatial interaction followed by channel aggregation.

Chen et al., "S2CFormer: Revisiting the RD-Latency Trade-off in
Transformer-based Learned Image Compression", https://arxiv.org/abs/2502.00700.
No official code is public; where the paper is silent (Fig. 3 was not
readable) the choices below are licrt's and are marked as such.

Every block is MetaFormer-shaped::

    x = x + Spatial(LN(x))        # identity | separable conv | window attention
    x = x + GatedFFN(LN(x))       # channel aggregation, expansion ratio r

For the identity instance the spatial branch is dropped altogether (the paper's
Identity(X) = X; licrt does not add x + LN(x), which would only rescale x).

Each block computes in two layouts. ``forward`` takes NCHW feature maps, the
layout PyTorch trains and runs fastest in. ``forward_tokens`` computes the
same function on tokens (B, H·W, C), the layout the exported graphs use:
there LayerNorm normalises the last axis and 1×1 convolutions are matrix
products, so ONNX Runtime runs a run of blocks without the two transposes
around every channel LayerNorm, the layout reorders around every 1×1
convolution and the copies of a channel split, and fuses GELU (see
:func:`run_as_tokens`; ``bench/results/licrt-bench-default.json``).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

SPATIAL_KINDS = ("identity", "conv", "attention")


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of an NCHW tensor (exports as LayerNormalization)."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.norm = nn.LayerNorm(channels, eps=eps)

    def forward(self, x):
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class GatedFFN(nn.Module):
    """Gated-FFN (paper eq. 7): [GELU(X·W1) ⊙ (X·W2)]·W_out, with 1×1 convolutions."""

    def __init__(self, channels: int, ratio: int = 4):
        super().__init__()
        hidden = channels * ratio
        self.project_in = nn.Conv2d(channels, 2 * hidden, 1, bias=False)
        self.project_out = nn.Conv2d(hidden, channels, 1, bias=False)

    def forward(self, x):
        gate, value = self.project_in(x).chunk(2, dim=1)
        return self.project_out(F.gelu(gate) * value)

    def forward_tokens(self, x):
        weight, hidden = self.project_in.weight.flatten(1), self.project_out.in_channels
        gate, value = weight[:hidden], weight[hidden:]  # two products instead of one product and a split
        return F.linear(_gelu(F.linear(x, gate)) * F.linear(x, value), self.project_out.weight.flatten(1))


class SeparableConv(nn.Module):
    """SepConv (paper eq. 2): pointwise → GELU → depthwise k×k → pointwise."""

    def __init__(self, channels: int, kernel: int = 5):
        super().__init__()
        self.pointwise_in = nn.Conv2d(channels, channels, 1)
        self.depthwise = nn.Conv2d(channels, channels, kernel, padding=kernel // 2, groups=channels)
        self.pointwise_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        return self.pointwise_out(self.depthwise(F.gelu(self.pointwise_in(x))))

    def forward_tokens(self, x, size: tuple[int, int]):
        hidden = _gelu(_pointwise(x, self.pointwise_in))
        # The depthwise convolution is the one step that needs the feature-map layout.
        maps = self.depthwise(hidden.transpose(1, 2).unflatten(2, size))
        return _pointwise(maps.flatten(2).transpose(1, 2), self.pointwise_out)


class WindowAttention(nn.Module):
    """Plain multi-head self-attention inside non-overlapping windows (paper eq. 3).

    No shifted windows and no position bias, as the paper describes. The
    feature map must be a multiple of the window size (the codec's stride
    guarantees it).
    """

    def __init__(self, channels: int, window: int = 8, head_dim: int = 32):
        super().__init__()
        if channels % head_dim:
            raise ValueError(f"attention channels {channels} are not a multiple of head_dim {head_dim}")
        self.heads = channels // head_dim
        self.head_dim = head_dim
        self.window = window
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        batch, channels, height, width = x.shape
        w, rows, cols = self.window, height // self.window, width // self.window
        # (B, 3·heads·d, H, W) → (3, B·windows, heads, w·w, d)
        qkv = self.qkv(x).reshape(batch, 3, self.heads, self.head_dim, rows, w, cols, w)
        qkv = qkv.permute(1, 0, 4, 6, 2, 5, 7, 3).reshape(3, batch * rows * cols, self.heads, w * w, self.head_dim)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attention = (q @ k.transpose(-2, -1)) * self.head_dim**-0.5
        out = attention.softmax(dim=-1) @ v
        # (B·windows, heads, w·w, d) → (B, C, H, W)
        out = out.reshape(batch, rows, cols, self.heads, w, w, self.head_dim)
        out = out.permute(0, 3, 6, 1, 4, 2, 5).reshape(batch, channels, height, width)
        return self.proj(out)

    def forward_tokens(self, x, size: tuple[int, int]):
        batch, _, channels = x.shape
        (height, width), w = size, self.window
        rows, cols = height // w, width // w
        weight, bias = self.qkv.weight.flatten(1), self.qkv.bias
        parts = [slice(i * channels, (i + 1) * channels) for i in range(3)]

        def windows(weight, bias):  # (B, H·W, heads·d) → (B·windows, heads, w·w, d)
            t = F.linear(x, weight, bias).reshape(batch, rows, w, cols, w, self.heads, self.head_dim)
            return t.permute(0, 1, 3, 5, 2, 4, 6).reshape(batch * rows * cols, self.heads, w * w, self.head_dim)

        q, k, v = (windows(weight[part], bias[part]) for part in parts)
        attention = (q @ k.transpose(-2, -1)) * self.head_dim**-0.5
        out = attention.softmax(dim=-1) @ v
        out = out.reshape(batch, rows, cols, self.heads, w, w, self.head_dim)
        out = out.permute(0, 1, 4, 2, 5, 3, 6).reshape(batch, height * width, channels)
        return _pointwise(out, self.proj)


class S2CBlock(nn.Module):
    """One S2CFormer block with the given spatial interaction."""

    def __init__(self, channels: int, spatial: str, ffn_ratio: int = 4, kernel: int = 5,
                 window: int = 8, head_dim: int = 32):
        super().__init__()
        if spatial not in SPATIAL_KINDS:
            raise ValueError(f"spatial interaction {spatial!r} is not one of {SPATIAL_KINDS}")
        if spatial == "identity":
            self.norm1 = self.spatial = None
        else:
            self.norm1 = LayerNorm2d(channels)
            self.spatial = (SeparableConv(channels, kernel) if spatial == "conv"
                            else WindowAttention(channels, window, head_dim))
        self.norm2 = LayerNorm2d(channels)
        self.ffn = GatedFFN(channels, ffn_ratio)

    def forward(self, x):
        if self.spatial is not None:
            x = x + self.spatial(self.norm1(x))
        return x + self.ffn(self.norm2(x))

    def forward_tokens(self, x, size: tuple[int, int]):
        """forward() on tokens (B, H·W, C) of an H×W map (size)."""
        if self.spatial is not None:
            x = x + self.spatial.forward_tokens(self.norm1.norm(x), size)
        return x + self.ffn.forward_tokens(self.norm2.norm(x))


def run_as_tokens(transform: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """transform(x) on NCHW maps, each run of consecutive S2C blocks computed on tokens.

    A run that follows a sub-pixel upsampling takes its tokens straight from
    the convolution: the pixel shuffle and the change of layout are one
    transpose.
    """
    modules = list(transform)
    tokens = size = None
    for module, following in zip(modules, [*modules[1:], None], strict=True):
        if isinstance(module, S2CBlock):
            if tokens is None:
                size, tokens = tuple(x.shape[2:]), x.flatten(2).transpose(1, 2)
            tokens = module.forward_tokens(tokens, size)
            continue
        if tokens is not None:
            x, tokens = tokens.transpose(1, 2).unflatten(2, size), None
        if isinstance(following, S2CBlock) and _is_upsample(module):
            tokens, size = _upsample_to_tokens(module, x)
        else:
            x = module(x)
    return x if tokens is None else tokens.transpose(1, 2).unflatten(2, size)


def _is_upsample(module: nn.Module) -> bool:
    return isinstance(module, nn.Sequential) and len(module) == 2 and isinstance(module[1], nn.PixelShuffle)


def _upsample_to_tokens(upsample: nn.Sequential, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    """upsample(x) (a convolution, then PixelShuffle(r)) as tokens (B, rH·rW, C), and the map's size.

    The convolution's output channels are reordered (a constant expression of
    its weights) so that, channels last, each input pixel's r×r sub-pixels
    are whole C-channel vectors: the one transpose then moves rows of C
    floats, not single floats.
    """
    conv, shuffle = upsample
    factor = shuffle.upscale_factor
    channels = conv.out_channels // factor**2
    weight = conv.weight.unflatten(0, (channels, factor**2)).transpose(0, 1).flatten(0, 1)
    bias = conv.bias.unflatten(0, (channels, factor**2)).transpose(0, 1).flatten()
    maps = F.conv2d(x, weight, bias, conv.stride, conv.padding)
    batch, _, height, width = maps.shape
    maps = maps.permute(0, 2, 3, 1).reshape(batch, height, width, factor, factor, channels).transpose(2, 3)
    return maps.reshape(batch, -1, channels), (factor * height, factor * width)


def _pointwise(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """A 1×1 convolution on tokens."""
    return F.linear(x, conv.weight.flatten(1), conv.bias)


def _gelu(x: torch.Tensor) -> torch.Tensor:
    """Exact GELU, written in the order ONNX Runtime fuses into one Gelu node (F.gelu exports in another)."""
    return x * (1.0 + torch.erf(x / math.sqrt(2.0))) * 0.5


def upsample(in_channels: int, out_channels: int) -> nn.Sequential:
    """×2 upsampling by sub-pixel convolution (3×3 conv, then PixelShuffle)."""
    return nn.Sequential(nn.Conv2d(in_channels, 4 * out_channels, 3, padding=1), nn.PixelShuffle(2))


def downsample(in_channels: int, out_channels: int, kernel: int = 3) -> nn.Conv2d:
    """×2 downsampling by a strided convolution."""
    return nn.Conv2d(in_channels, out_channels, kernel, stride=2, padding=kernel // 2)
