"""``export-onnx``: turn a codec model into a verified static-shape bundle.

Example::

    export-onnx s2c-hybrid-s --random-init --shape 256x256 --out bundle
    export-onnx s2c-hybrid-s --checkpoint model.pt --shape 512x768 --shape 768x512 --out bundle
    export-onnx s2c-hybrid-xs --checkpoint q1.pt --checkpoint q2.pt --checkpoint q3.pt --out bundle

Without ``--shape`` the bundle gets the shapes that tile any image with little padding
(:data:`licrt.runtime.tiling.DEFAULT_SHAPES`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from licrt.runtime.cli import CommandParser
from licrt.runtime.errors import ExportError, LicrtError
from licrt.runtime.manifest import GUARD_EPSILON
from licrt.runtime.tiling import DEFAULT_SHAPES

from . import registry

# torch and the model code are imported once the arguments are parsed (help, version and usage errors
# come quickly), except to list the codecs in --help.


def parse_shape(text: str) -> tuple[int, int]:
    height, sep, width = text.lower().partition("x")
    try:
        if not sep:
            raise ValueError
        return int(height), int(width)
    except ValueError:
        raise argparse.ArgumentTypeError(f"shape {text!r} is not HEIGHTxWIDTH, e.g. 512x768") from None


def checkpoint_levels(path: Path, codec_id: str, overrides: dict[str, str]) -> dict:
    """The quality levels a checkpoint gives, by name: a checkpoint file is one, named after the file; a
    bundle gives all of its own.

    Raises:
        ExportError: the checkpoint or bundle cannot be read or does not fit the codec.
    """
    from licrt.runtime.bundle import Bundle

    from .checkpoint import load_model, model_from_bundle

    if not path.is_dir():
        return {path.stem: load_model(path, codec_id, overrides)}
    bundle = Bundle.open(path)
    if bundle.manifest.codec != codec_id:
        raise ExportError(f"{path} is a {bundle.manifest.codec} bundle, not {codec_id}")
    return {level.name: model_from_bundle(bundle.at_level(index), overrides)
            for index, level in enumerate(bundle.manifest.levels)}


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="export-onnx",
        description="Export a learned image codec to a licrt bundle of static-shape ONNX graphs.",
        epilog=lambda: "codecs: " + ", ".join(sorted(registry.codecs())),
    )
    parser.add_argument("codec", help="codec id, e.g. s2c-hybrid-s")
    weights = parser.add_mutually_exclusive_group(required=True)
    weights.add_argument("--checkpoint", type=Path, action="append",
                         help="trained weights (.pt), or a bundle (all its quality levels); repeat for quality "
                              "levels, lowest rate first (a .pt's level is named after its file, e.g. q1)")
    weights.add_argument("--random-init", action="store_true", help="random weights (for testing)")
    parser.add_argument("--seed", type=int, default=0, help="seed for --random-init (default 0)")
    parser.add_argument("--shape", type=parse_shape, action="append", metavar="HxW",
                        help="a shape bucket; repeat for several (default: the 20 shapes that tile any image with "
                             "less than 64 pixels of padding per side, 256x256 to 448x448 in steps of 64, "
                             "512x768, 768x512, 1088x1920 and 1920x1088)")
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
    import torch

    from .bundle_writer import write_bundle

    try:
        overrides = registry.parse_assignments(args.settings)
        if args.checkpoint is not None:
            levels = {}
            for path in args.checkpoint:
                for name, model in checkpoint_levels(path, args.codec, overrides).items():
                    if name in levels:
                        raise ExportError(f"two quality levels are named {name} (levels are named after their "
                                          "checkpoint files, e.g. q1.pt, q2.pt)")
                    levels[name] = model
        else:
            config = registry.make_config(args.codec, None, overrides)
            torch.manual_seed(args.seed)
            levels = registry.build(args.codec, config)
        shapes = args.shape or list(DEFAULT_SHAPES)
        _, checks = write_bundle(levels, shapes, args.out, force=args.force, guard_epsilon=args.guard_epsilon)
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
            print(f"  {check.stage}@{check.bucket}{check.level_suffix}: {100 * check.beyond:.2f} % of outputs "
                  f"differ by up to {check.max_error:.2e}: top-k kept other keys in {check.flipped_rows} rows, all "
                  f"near-ties; with ONNX Runtime's keys, PyTorch differs by {check.same_keys_error:.2e}")
    print(f"wrote {args.out}: {_disk_use(args.out, len(shapes))}")
    return 0


def _disk_use(bundle: Path, buckets: int) -> str:
    """What the bundle costs on disk: its graphs per shape bucket, and the rest."""
    graphs = sum(path.stat().st_size for path in (bundle / "stages").iterdir())
    total = sum(path.stat().st_size for path in bundle.rglob("*") if path.is_file())
    return (f"{total / 1e6:.1f} MB, of which stage graphs {graphs / 1e6:.1f} MB for {buckets} shape "
            f"bucket{'s' * (buckets > 1)} ({graphs / buckets / 1e6:.2f} MB each)")


if __name__ == "__main__":
    sys.exit(main())
