"""Whether files cross between a float32 bundle and its calibration, and what each decode returns."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from licrt.evaluation.metrics import psnr
from licrt.runtime.codec import Codec
from licrt.runtime.errors import LicrtError
from licrt.runtime.images import read_image


@dataclass(frozen=True)
class Crossing:
    """An image compressed by one bundle at one level, decompressed by that bundle and by the other."""

    image: str
    level: str
    encoder: str
    decoder: str
    bytes: int
    #: PSNR (dB) of the encoder's own decode.
    own_psnr: float
    #: PSNR (dB) of the other bundle's decode, None where it refused the file.
    other_psnr: float | None
    #: The other bundle's error, where it refused the file.
    refusal: str | None

    def line(self) -> str:
        other = f"{self.other_psnr:.2f} dB" if self.refusal is None else f"refused: {self.refusal}"
        return (f"{self.image} {self.level}: {self.encoder} file ({self.bytes:,} bytes) decoded by {self.encoder} "
                f"{self.own_psnr:.2f} dB, by {self.decoder} {other}")


def crossings(reference: Codec, calibrated: Codec, image: Path) -> Iterator[Crossing]:
    """Each quality level, each way: the image compressed by one bundle, decompressed by both."""
    pixels = read_image(image)
    for quality, level in enumerate(reference.qualities, 1):
        for encoder, decoder in ((reference, calibrated), (calibrated, reference)):
            data = encoder.compress(pixels, quality=quality)
            own = psnr(pixels, encoder.decompress(data))
            try:
                other, refusal = psnr(pixels, decoder.decompress(data)), None
            except LicrtError as exc:
                other, refusal = None, str(exc)
            yield Crossing(image.name, level, precision_name(encoder), precision_name(decoder), len(data), own,
                           other, refusal)


def precision_name(codec: Codec) -> str:
    """float32, or the precisions a calibrated bundle's stages compute in."""
    precision = codec.bundle.manifest.precision
    return "float32" if not precision else "/".join(sorted(set(precision.values())))
