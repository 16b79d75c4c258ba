"""The public entry point: turn pixels into bytes and back with a bundle.

Example:
    >>> from licrt.runtime import Codec
    >>> codec = Codec.open("bundle")                         # doctest: +SKIP
    >>> data = codec.compress("photo.png")                   # doctest: +SKIP
    >>> image = codec.decompress(data)   # (H, W, 3) uint8   # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .backends import Backend, open_backend
from .bundle import DEFAULT_BUNDLE, Bundle
from .container import Container, TileSection
from .errors import BitstreamError
from .images import check_rgb, read_image
from .scheduler import TileCoder
from .tiling import TileGrid, choose_grid, crop, pad


def profile_fingerprint(profile: str) -> bytes:
    return hashlib.sha256(profile.encode()).digest()[:8]


@dataclass(frozen=True)
class FileReport:
    """What a compressed file holds, as decoded with a bundle."""

    container: Container
    grid: TileGrid
    #: −Σ log2 p per pass name, summed over tiles.
    bits_per_pass: dict[str, float]
    symbols_per_pass: dict[str, int]


class Codec:
    """Compresses images with one bundle on one backend.

    Args:
        bundle: An opened :class:`Bundle`.
        backend: The backend that runs its stage graphs.
    """

    def __init__(self, bundle: Bundle, backend: Backend):
        self.bundle = bundle
        self.backend = backend
        self._coders: dict[int, TileCoder] = {}

    @classmethod
    def open(cls, bundle: str | Path | Bundle | None = None, backend: str | Backend = "auto") -> Codec:
        """Open a bundle directory (or take an opened one) on a backend by name.

        ``None`` opens the default bundle shipped with licrt.
        """
        if not isinstance(bundle, Bundle):
            bundle = Bundle.open(DEFAULT_BUNDLE if bundle is None else bundle)
        if not isinstance(backend, Backend):
            backend = open_backend(backend)
        return cls(bundle, backend)

    @property
    def profile_fingerprint(self) -> bytes:
        return profile_fingerprint(self.backend.profile)

    def _coder(self, bucket_index: int) -> TileCoder:
        if bucket_index not in self._coders:
            bucket = self.bundle.manifest.buckets[bucket_index]

            def load_stage(name: str):
                graph = bucket.stages[name]
                return self.backend.load(name, self.bundle.path(graph.file), graph)

            self._coders[bucket_index] = TileCoder(self.bundle, bucket, load_stage)
        return self._coders[bucket_index]

    def compress(self, image: str | Path | np.ndarray, *, progress: bool = False) -> bytes:
        """Compress an image file or an (H, W, 3) uint8 RGB array to bytes.

        Raises:
            ImageError: the image cannot be read or is not 8-bit RGB/gray.
            CodingError: the model produces latents that cannot be coded.
        """
        pixels = read_image(image) if isinstance(image, (str, Path)) else check_rgb(image)
        height, width = pixels.shape[:2]
        grid = choose_grid(height, width, self.bundle.bucket_shapes)
        coder = self._coder(grid.bucket)
        padding = self.bundle.manifest.padding
        sections = []
        for rows, cols in _progress(grid, progress, "compress"):
            tile = pad(pixels[rows, cols], grid.tile_height, grid.tile_width, padding)
            x = (tile.transpose(2, 0, 1)[None] / np.float32(255)).astype(np.float32)
            coded = coder.encode(x)
            sections.append(TileSection(coded.payload, coded.digests))
        return Container(
            bundle_fingerprint=self.bundle.fingerprint,
            profile_fingerprint=self.profile_fingerprint,
            height=height,
            width=width,
            bucket=grid.bucket,
            tile_rows=grid.rows,
            tile_cols=grid.cols,
            passes=1 + len(self.bundle.manifest.schedule.steps),
            sections=tuple(sections),
        ).to_bytes()

    def decompress(self, data: bytes, *, progress: bool = False) -> np.ndarray:
        """Decompress bytes made by :meth:`compress` to an (H, W, 3) uint8 array.

        Raises:
            BitstreamError: the data is truncated, corrupted, not a licrt file,
                made with another bundle, or decodes differently from how it was
                encoded (another backend computed other floats).
        """
        container, grid = self._open_container(data)
        image = np.empty((container.height, container.width, 3), dtype=np.uint8)
        padding = self.bundle.manifest.padding
        for (rows, cols), coded in self._decode_tiles(container, grid, progress, reconstruct=True):
            tile = np.rint(np.clip(coded.x_hat[0], 0.0, 1.0) * 255).astype(np.uint8)
            image[rows, cols] = crop(
                tile.transpose(1, 2, 0), rows.stop - rows.start, cols.stop - cols.start, padding
            )
        return image

    def inspect(self, data: bytes) -> FileReport:
        """Decode a file's symbols (without reconstructing pixels) and account for its bits."""
        container, grid = self._open_container(data)
        names = ["z", *(step.name for step in self.bundle.manifest.schedule.steps)]
        bits = dict.fromkeys(names, 0.0)
        counts = dict.fromkeys(names, 0)
        for _, coded in self._decode_tiles(container, grid, False, reconstruct=False):
            for name, pass_bits, symbols in zip(names, coded.bits, coded.symbols, strict=True):
                bits[name] += pass_bits
                counts[name] += symbols.size
        return FileReport(container, grid, bits, counts)

    def _open_container(self, data: bytes) -> tuple[Container, TileGrid]:
        container = Container.from_bytes(bytes(data))
        if container.bundle_fingerprint != self.bundle.fingerprint:
            raise BitstreamError(
                f"the file was made with another bundle (fingerprint "
                f"{container.bundle_fingerprint.hex()}; this bundle is "
                f"{self.bundle.fingerprint.hex()})"
            )
        grid = choose_grid(container.height, container.width, self.bundle.bucket_shapes)
        if (grid.bucket, grid.rows, grid.cols) != (
            container.bucket,
            container.tile_rows,
            container.tile_cols,
        ):
            raise BitstreamError("the file's tile layout does not match its image size")
        return container, grid

    def _decode_tiles(self, container: Container, grid: TileGrid, progress: bool, reconstruct: bool):
        """Yield (image region, decoded tile) for every tile, row-major."""
        coder = self._coder(grid.bucket)
        if container.profile_fingerprint == self.profile_fingerprint:
            note = f"Encoder and decoder share the profile '{self.backend.profile}'."
        else:
            note = (
                f"The file was encoded under profile {container.profile_fingerprint.hex()}, "
                f"this decoder runs '{self.backend.profile}' "
                f"({self.profile_fingerprint.hex()}); decode with the encoder's backend."
            )
        for region, section in zip(_progress(grid, progress, "decompress"), container.sections, strict=True):
            yield region, coder.decode(section.payload, section.digests, note, reconstruct=reconstruct)


def _progress(grid: TileGrid, enabled: bool, what: str):
    total = grid.rows * grid.cols
    return tqdm(
        grid.regions(), total=total, desc=what, unit="tile", disable=not enabled or total == 1
    )


__all__ = ["Codec", "FileReport"]
