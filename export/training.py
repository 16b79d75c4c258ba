"""The training loop behind ``licrt-train`` (see :mod:`licrt.export.train`): loss, validation, checkpoints."""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader
from tqdm import tqdm

from licrt.runtime.errors import LicrtError
from licrt.runtime.images import list_images

from . import registry
from .checkpoint import checkpoint_dict, read_checkpoint
from .data import RandomCrops
from .metrics import ms_ssim
from .train import TrainSettings

#: Training steps between two log lines.
LOG_EVERY = 50


def rate_distortion(output: dict, x: torch.Tensor, lmbda: float, metric: str) -> dict[str, torch.Tensor]:
    """The training loss and its parts for one batch."""
    pixels = x.shape[0] * x.shape[2] * x.shape[3]
    bpp = sum(-torch.log2(v).sum() for v in output["likelihoods"].values()) / pixels
    mse = (output["x_hat"] - x).pow(2).mean()
    if metric == "ms-ssim":
        distortion = 1 - ms_ssim(output["x_hat"].clamp(0, 1), x)
    else:
        distortion = 255**2 * mse
    return {"loss": lmbda * distortion + bpp, "bpp": bpp, "mse": mse,
            "psnr": -10 * torch.log10(mse.clamp_min(1e-10))}


@torch.no_grad()
def validate(model, images: list[torch.Tensor], device) -> dict[str, float]:
    """Exact coding (rounding, likelihood estimate) of validation images, center-cropped to the stride."""
    model.eval()
    bits = pixels = squared = 0.0
    for image in images:
        reference = model.reference(image.to(device))
        bits += sum(reference.bits)
        pixels += image.shape[2] * image.shape[3]
        squared += float((reference.x_hat.clamp(0, 1) - image.to(device)).pow(2).sum())
    model.train()
    mse = squared / (3 * pixels)
    return {"val_bpp": bits / pixels, "val_psnr": -10 * math.log10(max(mse, 1e-10))}


def load_validation(root: Path, stride: int, limit: int) -> list[torch.Tensor]:
    images = []
    for path in list_images(root)[:limit]:
        pixels = torch.from_numpy(np.asarray(Image.open(path).convert("RGB")).copy())
        height, width = (pixels.shape[0] // stride) * stride, (pixels.shape[1] // stride) * stride
        top, left = (pixels.shape[0] - height) // 2, (pixels.shape[1] - width) // 2
        crop = pixels[top : top + height, left : left + width]
        images.append(crop.permute(2, 0, 1)[None].float() / 255)
    return images


def _save(path: Path, payload: dict) -> None:
    """torch.save through a temporary file, so a crash never leaves a broken checkpoint."""
    temporary = path.with_name(f".{path.name}.tmp")
    torch.save(payload, temporary)
    os.replace(temporary, path)


def train(codec_id: str, data: Path, out: Path, settings: TrainSettings, overrides: dict[str, str],
          resume: bool, device: str, workers: int, val: Path | None, val_every: int, save_every: int,
          command: str) -> None:
    state_path = out.with_name(out.name + ".state")
    log_path = out.with_name(out.name + ".log.jsonl")
    device = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                          "cpu" if device == "auto" else device)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(settings.seed)

    config = registry.make_config(codec_id, None, overrides)
    step = 0
    if resume:
        if not state_path.is_file():
            raise LicrtError(f"--resume: no training state {state_path}")
        saved = read_checkpoint(state_path)
        if saved["codec"] != codec_id:
            raise LicrtError(f"--resume: {state_path} trains {saved['codec']}, not {codec_id}")
        config = registry.make_config(codec_id, saved["config"])
        step = saved["step"]
    model = registry.build(codec_id, config).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, settings.learning_rate_factor)
    if resume:
        model.load_state_dict(saved["state_dict"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        torch.set_rng_state(saved["rng"])
        if step >= settings.steps:
            raise LicrtError(f"--resume: {state_path} is already at step {step} of --steps {settings.steps}")

    dataset = RandomCrops(data, settings.patch)
    loader = DataLoader(dataset, batch_size=settings.batch_size, shuffle=True, drop_last=True,
                        num_workers=workers, persistent_workers=workers > 0, pin_memory=device.type == "cuda")
    if len(loader) == 0:
        raise LicrtError(f"{data} has {len(dataset)} images, fewer than one batch of {settings.batch_size}")
    validation = load_validation(val, model.stride, 8) if val else []

    def save() -> None:
        metadata = {"step": step, "training": {**asdict(settings), "command": command}}
        _save(out, checkpoint_dict(model, half=True, **metadata))
        _save(state_path, {**checkpoint_dict(model), **metadata, "optimizer": optimizer.state_dict(),
                           "scheduler": scheduler.state_dict(), "rng": torch.get_rng_state()})

    model.train()
    skipped = 0
    started = time.perf_counter()
    with open(log_path, "a") as log, tqdm(total=settings.steps, initial=step, desc=out.name, unit="step") as bar:
        while step < settings.steps:
            for x in loader:
                x = x.to(device, non_blocking=True)
                parts = rate_distortion(model(x), x, settings.lmbda, settings.metric)
                optimizer.zero_grad(set_to_none=True)
                parts["loss"].backward()
                gradient_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), settings.clip)
                if torch.isfinite(gradient_norm):  # one bad batch must not poison the weights
                    optimizer.step()
                else:
                    skipped += 1
                scheduler.step()
                step += 1
                bar.update()
                last = step == settings.steps
                validation_due = bool(validation) and (step % val_every == 0 or last)
                if step % LOG_EVERY == 0 or validation_due or last:
                    record = {k: round(float(v.detach()), 5) for k, v in parts.items()}
                    bar.set_postfix(bpp=record["bpp"], psnr=record["psnr"])
                    record.update(step=step, lr=scheduler.get_last_lr()[0], skipped=skipped,
                                  seconds=round(time.perf_counter() - started, 1))
                    if validation_due:
                        record.update(validate(model, validation, device))
                    log.write(json.dumps(record) + "\n")
                    log.flush()
                if step % save_every == 0 or last:
                    save()
                if last:
                    break
