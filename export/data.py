"""Training images: random square crops with flips from every image in a folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from licrt.runtime.images import list_images


class RandomCrops(Dataset):
    """One random ``patch``×``patch`` crop per image and epoch, flipped at random.

    Images are decoded once and kept in memory as uint8 (BSDS500 takes about
    230 MB); images smaller than the patch are padded by reflection.
    """

    def __init__(self, root: str | Path, patch: int = 256):
        self.patch = patch
        self.images = [np.asarray(Image.open(p).convert("RGB")) for p in list_images(root)]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        image = self.images[index]
        short = max(0, self.patch - image.shape[0]), max(0, self.patch - image.shape[1])
        if any(short):
            image = np.pad(image, ((0, short[0]), (0, short[1]), (0, 0)), mode="reflect")
        top = int(torch.randint(0, image.shape[0] - self.patch + 1, ()))
        left = int(torch.randint(0, image.shape[1] - self.patch + 1, ()))
        crop = torch.from_numpy(image[top : top + self.patch, left : left + self.patch].copy())
        crop = crop.permute(2, 0, 1).float().div_(255)
        if torch.rand(()) < 0.5:
            crop = crop.flip(2)
        if torch.rand(()) < 0.5:
            crop = crop.flip(1)
        return crop
