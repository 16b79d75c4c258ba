"""Helpers shared by the tests: test images and the tiny model configuration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from licrt.export import registry

DATA = Path(__file__).parent / "data"

#: A shrunken S2C-Hybrid for fast tests: every kind of block and pass, few channels.
TINY_SETTINGS = {
    "channels": "16,32,32",
    "blocks": "1,1,1",
    "latent_channels": "32",
    "groups": "8,8,16",
    "hyper_channels": "16",
    "context_width": "16",
    "aggregation_width": "32",
}


def load_image(name: str) -> np.ndarray:
    return np.asarray(Image.open(DATA / name).convert("RGB"))


def tiny_model(seed: int = 0):
    torch.manual_seed(seed)
    config = registry.make_config("s2c-hybrid-s", None, TINY_SETTINGS)
    return registry.build("s2c-hybrid-s", config).eval()
