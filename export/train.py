"""``licrt-train``: rate–distortion training of a codec on a folder of images.

Example::

    licrt-train s2c-hybrid-xs --data photos/ --lambda 0.013 --steps 200000 --out q3.pt
    licrt-train s2c-hybrid-xs --data photos/ --lambda 0.013 --steps 300000 --out q3.pt --resume

The loss is ``λ · 255² · MSE + bpp`` (CompressAI's convention; with
``--metric ms-ssim`` the distortion is ``1 − MS-SSIM``), with each codec's
own quantisation convention (``HyperpriorCodec.forward``). Adam with linear
warm-up, step decay and gradient clipping.

Three files are written beside each other:

* ``OUT``: the released checkpoint (a licrt checkpoint with the weights rounded
  to half precision, which halves its size; export and evaluation use it);
* ``OUT.state``: full-precision weights, optimizer and RNG state for ``--resume``;
* ``OUT.log.jsonl``: one JSON line per logged step (and per validation).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader
from tqdm import tqdm

from licrt.runtime.cli import CommandParser
from licrt.runtime.errors import LicrtError

from . import registry
from .checkpoint import checkpoint_dict, read_checkpoint
from licrt.runtime.images import list_images

from .data import RandomCrops
from .metrics import ms_ssim

#: Training steps between two log lines.
LOG_EVERY = 50


@dataclass(frozen=True)
class TrainSettings:
    lmbda: float
    steps: int
    batch_size: int = 16
    patch: int = 256
    lr: float = 1e-4
    warmup: float = 0.02
    decay_at: tuple[float, ...] = (0.8, 0.95)
    decay: float = 0.1
    clip: float = 1.0
    metric: str = "mse"
    seed: int = 0

    def learning_rate_factor(self, step: int) -> float:
        """Linear warm-up over the first ``warmup`` of the steps, then ×decay at each ``decay_at``."""
        warm = max(1, int(self.warmup * self.steps))
        factor = min(1.0, (step + 1) / warm)
        return factor * self.decay ** sum(step >= fraction * self.steps for fraction in self.decay_at)


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


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="licrt-train", description="Rate-distortion training of a codec on a folder of "
                           "images: loss λ·255²·MSE + bpp (1 − MS-SSIM with --metric ms-ssim), Adam with warm-up, "
                           "step decay and gradient clipping. Writes OUT (half-precision weights), OUT.state (for "
                           "--resume) and OUT.log.jsonl.",
                           epilog="codecs: " + ", ".join(sorted(registry.codecs())),
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("codec", help="codec id (listed below)")
    parser.add_argument("--data", type=Path, required=True, help="folder of training images (searched recursively)")
    parser.add_argument("--lambda", dest="lmbda", type=float, required=True, help="rate-distortion trade-off")
    parser.add_argument("--steps", type=int, required=True, help="total optimizer steps")
    parser.add_argument("--out", type=Path, required=True, help="checkpoint to write")
    parser.add_argument("--resume", action="store_true", help="continue from OUT.state")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help="codec setting (see export-onnx --set)")
    defaults = TrainSettings(0, 0)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, help="images per step")
    parser.add_argument("--patch", type=int, default=defaults.patch, help="crop size (a multiple of 64)")
    parser.add_argument("--lr", type=float, default=defaults.lr, help="peak learning rate")
    parser.add_argument("--warmup", type=float, default=defaults.warmup, help="fraction of steps")
    parser.add_argument("--decay-at", type=float, nargs="*", default=list(defaults.decay_at),
                        help="fractions of steps where the learning rate is multiplied by --decay")
    parser.add_argument("--decay", type=float, default=defaults.decay, help="learning-rate factor at each --decay-at")
    parser.add_argument("--clip", type=float, default=defaults.clip, help="gradient norm limit")
    parser.add_argument("--metric", choices=("mse", "ms-ssim"), default=defaults.metric, help="distortion measure")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed of weights, crops and order")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument("--workers", type=int, default=4, help="data loader processes")
    parser.add_argument("--val", type=Path, help="folder of validation images (first 8 are used)")
    parser.add_argument("--val-every", type=int, default=1000, help="steps between validations")
    parser.add_argument("--save-every", type=int, default=1000, help="steps between checkpoints")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    try:
        if args.patch % 64:
            raise LicrtError(f"--patch {args.patch} is not a multiple of 64")
        settings = TrainSettings(
            lmbda=args.lmbda, steps=args.steps, batch_size=args.batch_size, patch=args.patch, lr=args.lr,
            warmup=args.warmup, decay_at=tuple(args.decay_at), decay=args.decay, clip=args.clip,
            metric=args.metric, seed=args.seed,
        )
        train(args.codec, args.data, args.out, settings, registry.parse_assignments(args.settings), args.resume,
              args.device, args.workers, args.val, args.val_every, args.save_every,
              command=shlex.join(["licrt-train", *argv]))
    except LicrtError as exc:
        print(f"licrt-train: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # checkpoints are replaced atomically: the last one saved stays whole
        print("licrt-train: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
