"""Helpers shared by the tests: test images, the tiny model configuration, running the CLIs, reference coding."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from licrt.export import registry
from licrt.runtime.tiling import crop, image_area, pad

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


def run(*command, cwd):
    """Run ``main()`` of module command[0] with the rest as its arguments, in a process of its own; its stdout."""
    result = subprocess.run([sys.executable, "-c", f"import sys; from {command[0]} import main; sys.exit(main())",
                             *map(str, command[1:])], cwd=cwd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout


def reference_coding(model, image: np.ndarray, bucket: tuple[int, int]):
    """The PyTorch reference coding of an image that fits one bucket (padded as the model pads, only its
    latents coded): the model's ReferenceResult, and the decoded pixels at the image's size (float, 0…255)."""
    height, width = image.shape[:2]
    padded = pad(image, *bucket, model.padding)
    x = torch.from_numpy(padded.transpose(2, 0, 1)[None] / np.float32(255)).float()
    with torch.no_grad():
        result = model.reference(x, area=image_area(height, width, bucket, model.padding))
    pixels = np.rint(np.clip(result.x_hat[0].numpy().transpose(1, 2, 0), 0, 1) * 255)
    return result, crop(pixels, height, width, model.padding)
