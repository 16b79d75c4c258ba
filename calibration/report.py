"""Whether files cross between a float32 bundle and its calibration, and what each decode returns."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from licrt.evaluation.metrics import psnr
from licrt.runtime.codec import Codec
from licrt.runtime.errors import LicrtError
from licrt.runtime.images import read_image


def crossing_report(reference: Codec, calibrated: Codec, image: Path) -> Iterator[str]:
    """One line per quality level and direction: the image compressed by one bundle, decompressed by each."""
    pixels = read_image(image)
    for quality, level in enumerate(reference.qualities, 1):
        for encoder, decoder in ((reference, calibrated), (calibrated, reference)):
            data = encoder.compress(pixels, quality=quality)
            results = []
            for codec in (encoder, decoder):
                try:
                    results.append(f"{psnr(pixels, codec.decompress(data)):.2f} dB")
                except LicrtError as exc:
                    results.append(f"refused: {exc}")
            yield (f"{image.name} {level}: {_name(encoder)} file ({len(data):,} bytes) decoded by "
                   f"{_name(encoder)} {results[0]}, by {_name(decoder)} {results[1]}")


def _name(codec: Codec) -> str:
    precision = codec.bundle.manifest.precision
    return "float32" if not precision else "/".join(sorted(set(precision.values())))
