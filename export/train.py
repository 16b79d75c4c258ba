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
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from licrt.runtime.cli import CommandParser
from licrt.runtime.errors import LicrtError

from . import registry

# torch and the training loop (licrt.export.training) are imported once the arguments are parsed, so that
# help, version and usage errors come quickly.


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


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="licrt-train", description="Rate-distortion training of a codec on a folder of "
                           "images: loss λ·255²·MSE + bpp (1 − MS-SSIM with --metric ms-ssim), Adam with warm-up, "
                           "step decay and gradient clipping. Writes OUT (half-precision weights), OUT.state (for "
                           "--resume) and OUT.log.jsonl.",
                           epilog=lambda: "codecs: " + ", ".join(sorted(registry.codecs())),
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
    from .training import train

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
