"""``export-onnx``: turn a codec model into a verified static-shape bundle.

Example::

    export-onnx s2c-hybrid-s --random-init --shape 256x256 --out bundle
    export-onnx s2c-hybrid-s --checkpoint model.pt --shape 512x768 --shape 768x512 --out bundle
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from licrt.runtime.cli import CommandParser
from licrt.runtime.errors import LicrtError

from . import registry
from .bundle_writer import GUARD_EPSILON, write_bundle
from .checkpoint import load_model


def parse_shape(text: str) -> tuple[int, int]:
    height, sep, width = text.lower().partition("x")
    try:
        if not sep:
            raise ValueError
        return int(height), int(width)
    except ValueError:
        raise argparse.ArgumentTypeError(f"shape {text!r} is not HEIGHTxWIDTH, e.g. 512x768") from None


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="export-onnx",
        description="Export a learned image codec to a licrt bundle of static-shape ONNX graphs.",
        epilog="codecs: " + ", ".join(sorted(registry.codecs())),
    )
    parser.add_argument("codec", help="codec id, e.g. s2c-hybrid-s")
    weights = parser.add_mutually_exclusive_group(required=True)
    weights.add_argument("--checkpoint", type=Path, help="trained weights (.pt)")
    weights.add_argument("--random-init", action="store_true", help="random weights (for testing)")
    parser.add_argument("--seed", type=int, default=0, help="seed for --random-init (default 0)")
    parser.add_argument("--shape", type=parse_shape, action="append", required=True,
                        metavar="HxW", help="a shape bucket; repeat for several")
    parser.add_argument("--out", type=Path, required=True, help="bundle directory to write")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help="change a codec setting, e.g. blocks=1,1,1 (repeatable)")
    parser.add_argument("--guard-epsilon", type=float, default=GUARD_EPSILON, metavar="EPS",
                        help="relative difference between backends' floats the guard covers (default "
                             f"{GUARD_EPSILON:g}; see README, Decoding anywhere)")
    parser.add_argument("--force", action="store_true", help="replace --out if it exists")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        overrides = registry.parse_assignments(args.settings)
        if args.checkpoint is not None:
            model = load_model(args.checkpoint, args.codec, overrides)
        else:
            config = registry.make_config(args.codec, None, overrides)
            torch.manual_seed(args.seed)
            model = registry.build(args.codec, config)
        _, checks = write_bundle(model, args.shape, args.out, force=args.force, guard_epsilon=args.guard_epsilon)
    except LicrtError as exc:
        print(f"export-onnx: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # the bundle is written to a staging folder, removed on the way out
        print("export-onnx: interrupted", file=sys.stderr)
        return 130
    exact = [c for c in checks if c.max_error <= c.tolerance]
    worst = max(exact or checks, key=lambda c: c.max_error / max(1.0, c.magnitude))
    print(f"verified {len(checks)} graphs against PyTorch in ONNX Runtime: max error "
          f"{worst.max_error:.2e} ({worst.stage}@{worst.bucket}, output magnitude {worst.magnitude:.3g})")
    for check in checks:
        if check.max_error > check.tolerance:
            print(f"  {check.stage}@{check.bucket}: {100 * check.beyond:.2f} % of outputs differ by up to "
                  f"{check.max_error:.2e}, where near-tied keys are kept differently by top-k attention")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
