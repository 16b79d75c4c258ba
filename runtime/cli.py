"""``licrt``: compress, decompress and inspect images with a bundle.

Example::

    licrt compress photo.png photo.lic --bundle bundle
    licrt decompress photo.lic photo.png --bundle bundle
    licrt info photo.lic --bundle bundle
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .backends import BACKENDS
from .codec import Codec
from .container import Container
from .errors import LicrtError
from .images import encode_image, image_format, read_image, write_atomic


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise LicrtError(f"{path}: no such file") from None
    except OSError as exc:
        raise LicrtError(f"cannot read {path}: {exc.strerror}") from None


def _open_codec(args) -> Codec:
    if args.bundle is None:
        raise LicrtError("no bundle given: pass --bundle DIR (a directory written by export-onnx)")
    return Codec.open(args.bundle, backend=args.backend)


def compress(args) -> None:
    codec = _open_codec(args)
    image = read_image(args.input)
    data = codec.compress(image, progress=True)
    write_atomic(args.output, data)
    height, width = image.shape[:2]
    print(f"{args.output}: {len(data):,} bytes, {8 * len(data) / (height * width):.4f} bpp "
          f"({width}x{height})")


def decompress(args) -> None:
    image_format(args.output)  # an unknown extension fails before any decoding
    codec = _open_codec(args)
    image = codec.decompress(_read_bytes(args.input), progress=True)
    write_atomic(args.output, encode_image(image, args.output))
    print(f"{args.output}: {image.shape[1]}x{image.shape[0]}")


def info(args) -> None:
    data = _read_bytes(args.input)
    container = Container.from_bytes(data)
    pixels = container.height * container.width
    rows = [
        ("file", f"{args.input}"),
        ("size", f"{len(data):,} bytes, {8 * len(data) / pixels:.4f} bpp"),
        ("image", f"{container.width}x{container.height}"),
        ("tiles", f"{container.tile_rows}x{container.tile_cols} (bucket {container.bucket})"),
        ("bundle", container.bundle_fingerprint.hex()),
        ("encoder profile", container.profile_fingerprint.hex()),
        ("framing", f"{container.section_overhead} bytes (header and per-tile sections)"),
    ]
    if args.bundle is not None:
        codec = _open_codec(args)
        if codec.bundle.fingerprint != container.bundle_fingerprint:
            rows.append(("estimate", f"unavailable: {args.bundle} is not this file's bundle"))
        else:
            report = codec.inspect(data)
            estimate = sum(report.bits_per_pass.values()) / 8
            coded = len(data) - container.section_overhead
            rows += [
                ("codec", f"{codec.bundle.manifest.codec} ({args.bundle})"),
                ("coded data", f"{coded:,} bytes"),
                ("model estimate", f"{estimate:,.0f} bytes (−Σlog2 p); coded data is "
                                   f"{100 * (coded / estimate - 1):+.2f} %"),
            ]
            rows += [
                (f"  {name}", f"{report.bits_per_pass[name] / 8:,.1f} bytes, "
                              f"{report.symbols_per_pass[name]:,} symbols")
                for name in report.bits_per_pass
            ]
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="licrt", description="Learned image compression runtime.")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name, function, help_text, input_help, output_help=None):
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("input", type=Path, help=input_help)
        if output_help:
            sub.add_argument("output", type=Path, help=output_help)
        sub.add_argument("--bundle", type=Path, help="bundle directory written by export-onnx")
        sub.add_argument("--backend", choices=BACKENDS, default="auto", help="default: auto")
        sub.set_defaults(function=function)

    command("compress", compress, "compress an image", "image file (PNG, JPEG, ...)", "output .lic file")
    command("decompress", decompress, "decompress to an image", ".lic file", "output image (.png, ...)")
    command("info", info, "describe a compressed file", ".lic file")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.function(args)
    except LicrtError as exc:
        print(f"licrt: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("licrt: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
