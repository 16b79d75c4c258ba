"""Entroformer's main transforms: Ballé-style convolutions with GDN.

Module and attribute names follow the official code (damo-cv/entroformer,
``module/ballenet.py`` and ``module/ops.py``) so that its state dicts load
unchanged: ``encoder.{0..6}`` and ``decoder.{0..6}``, with the transposed
convolutions wrapped as ``decoder.N.transpose``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

#: GDN's reparametrisation constants (official ``GDN``, as in CompressAI).
_PEDESTAL = (2.0**-18) ** 2
_BETA_MIN = 1e-6


class GDN(nn.Module):
    """Generalized divisive normalization, y = x / sqrt(β + Σ γ x²), or its inverse.

    Ballé et al., https://arxiv.org/abs/1511.06281. Parameters are stored
    reparametrised (official ``beta``, ``gamma``) and bounded below in forward.
    """

    def __init__(self, channels: int, inverse: bool = False, gamma_init: float = 0.1):
        super().__init__()
        self.inverse = inverse
        self.beta = nn.Parameter(torch.sqrt(torch.ones(channels) + _PEDESTAL))
        self.gamma = nn.Parameter(torch.sqrt(gamma_init * torch.eye(channels) + _PEDESTAL))

    def forward(self, x):
        beta = torch.clamp_min(self.beta, (_BETA_MIN + _PEDESTAL) ** 0.5) ** 2 - _PEDESTAL
        gamma = torch.clamp_min(self.gamma, _PEDESTAL**0.5) ** 2 - _PEDESTAL
        norm = torch.sqrt(F.conv2d(x * x, gamma[:, :, None, None], beta))
        return x * norm if self.inverse else x / norm


class Upsample(nn.Module):
    """×2 transposed convolution (kernel 5), the official ``ops.Upsample`` wrapper."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.transpose = nn.ConvTranspose2d(in_channels, out_channels, 5, stride=2, padding=2, output_padding=1)

    def forward(self, x):
        return self.transpose(x)


def _conv(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 5, stride=2, padding=2)


class Balle2Encoder(nn.Module):
    """g_a: four stride-2 5×5 convolutions with GDN between them (x in [-1, 1])."""

    def __init__(self, channels: int, latent_channels: int):
        super().__init__()
        self.encoder = nn.Sequential(
            _conv(3, channels), GDN(channels),
            _conv(channels, channels), GDN(channels),
            _conv(channels, channels), GDN(channels),
            _conv(channels, latent_channels),
        )

    def forward(self, x):
        return self.encoder(x)


class Balle2Decoder(nn.Module):
    """g_s: four stride-2 transposed convolutions with inverse GDN between them."""

    def __init__(self, channels: int, latent_channels: int):
        super().__init__()
        self.decoder = nn.Sequential(
            Upsample(latent_channels, channels), GDN(channels, inverse=True),
            Upsample(channels, channels), GDN(channels, inverse=True),
            Upsample(channels, channels), GDN(channels, inverse=True),
            Upsample(channels, 3),
        )

    def forward(self, y_hat):
        return self.decoder(y_hat)
