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
"""

from __future__ import annotations

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


class SeparableConv(nn.Module):
    """SepConv (paper eq. 2): pointwise → GELU → depthwise k×k → pointwise."""

    def __init__(self, channels: int, kernel: int = 5):
        super().__init__()
        self.pointwise_in = nn.Conv2d(channels, channels, 1)
        self.depthwise = nn.Conv2d(channels, channels, kernel, padding=kernel // 2, groups=channels)
        self.pointwise_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        return self.pointwise_out(self.depthwise(F.gelu(self.pointwise_in(x))))


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


def upsample(in_channels: int, out_channels: int) -> nn.Sequential:
    """×2 upsampling by sub-pixel convolution (3×3 conv, then PixelShuffle)."""
    return nn.Sequential(nn.Conv2d(in_channels, 4 * out_channels, 3, padding=1), nn.PixelShuffle(2))


def downsample(in_channels: int, out_channels: int, kernel: int = 3) -> nn.Conv2d:
    """×2 downsampling by a strided convolution."""
    return nn.Conv2d(in_channels, out_channels, kernel, stride=2, padding=kernel // 2)
