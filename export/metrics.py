"""Differentiable image metrics for training.

MS-SSIM follows Wang et al. 2003 with the usual constants (11-tap Gaussian
window, σ = 1.5, five scales); images are in [0, 1] and at least 176 pixels
on each side.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _gaussian_window(channels: int, size: int = 11, sigma: float = 1.5, device=None) -> torch.Tensor:
    offsets = torch.arange(size, dtype=torch.float32, device=device) - size // 2
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    return (kernel[:, None] * kernel[None, :]).expand(channels, 1, size, size).contiguous()


def _ssim_parts(a: torch.Tensor, b: torch.Tensor, window: torch.Tensor):
    c1, c2 = 0.01**2, 0.03**2
    channels = a.shape[1]

    def blur(x):
        return F.conv2d(x, window, groups=channels)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    covariance = blur(a * b) - mu_a * mu_b
    contrast_structure = (2 * covariance + c2) / (var_a + var_b + c2)
    luminance = (2 * mu_a * mu_b + c1) / (mu_a**2 + mu_b**2 + c1)
    return luminance.mean(dim=(1, 2, 3)), contrast_structure.mean(dim=(1, 2, 3))


def ms_ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean MS-SSIM of two (N, C, H, W) batches in [0, 1]."""
    window = _gaussian_window(a.shape[1], device=a.device)
    weights = torch.tensor(MS_SSIM_WEIGHTS, device=a.device)
    values = []
    for scale in range(len(weights)):
        luminance, contrast_structure = _ssim_parts(a, b, window)
        values.append(contrast_structure.clamp_min(0) if scale < len(weights) - 1 else luminance * contrast_structure)
        a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
    stacked = torch.stack(values, dim=1).clamp_min(1e-8)
    return torch.prod(stacked ** weights, dim=1).mean()
