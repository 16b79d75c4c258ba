"""The licrt bitstream container.

Byte layout (all integers big-endian)::

    offset  size  field
    0       8     magic  89 'L' 'I' 'C' 0D 0A 1A 0A  (PNG-style: catches text-mode
                  transfers and truncation to 7 bits)
    8       1     container format version (1)
    9       8     bundle fingerprint (the bundle a file can only be decoded with)
    17      8     decoding-profile fingerprint (backend and precision that encoded it)
    25      4     original image height
    29      4     original image width
    33      1     bucket index into the bundle's shape buckets
    34      2     tile rows
    36      2     tile columns
    38      1     coded passes per tile P (ẑ, then every schedule step)
    39      4     CRC-32 of bytes 0..38
    43            one section per tile, row-major:
                    4      payload length L (bytes, a multiple of 4)
                    4      CRC-32 of the payload
                    2·P    per-pass digests: CRC-32 of the pass's symbols, low 16 bits
                    L      payload: one range-coder stream, little-endian u32 words

The payload CRC catches corruption before decoding. The per-pass digests
catch what no CRC can: a decoder whose floats differ from the encoder's (other
backend, other CPU) selects another probability row, decodes different symbols
from intact bytes, and would return a garbage image; instead it stops with an
error naming the pass.

Every read is bounds-checked; any inconsistency raises :class:`BitstreamError`.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

from .errors import BitstreamError

MAGIC = b"\x89LIC\r\n\x1a\n"
VERSION = 1
_HEADER = struct.Struct(">8sB8s8sIIBHHB")
_HEADER_CRC = struct.Struct(">I")
_SECTION = struct.Struct(">II")
HEADER_SIZE = _HEADER.size + _HEADER_CRC.size


def symbol_digest(symbols: np.ndarray) -> int:
    """16-bit digest of a pass's decoded symbols (CRC-32 of int32 little-endian)."""
    return zlib.crc32(np.ascontiguousarray(symbols, dtype="<i4").tobytes()) & 0xFFFF


@dataclass(frozen=True)
class TileSection:
    """The coded data of one tile."""

    payload: bytes
    digests: tuple[int, ...]


@dataclass(frozen=True)
class Container:
    bundle_fingerprint: bytes
    profile_fingerprint: bytes
    height: int
    width: int
    bucket: int
    tile_rows: int
    tile_cols: int
    passes: int
    sections: tuple[TileSection, ...]

    def to_bytes(self) -> bytes:
        header = _HEADER.pack(
            MAGIC,
            VERSION,
            self.bundle_fingerprint,
            self.profile_fingerprint,
            self.height,
            self.width,
            self.bucket,
            self.tile_rows,
            self.tile_cols,
            self.passes,
        )
        parts = [header, _HEADER_CRC.pack(zlib.crc32(header))]
        for section in self.sections:
            if len(section.digests) != self.passes or len(section.payload) % 4:
                raise ValueError("section does not match the container's pass count")
            parts.append(_SECTION.pack(len(section.payload), zlib.crc32(section.payload)))
            parts.append(struct.pack(f">{self.passes}H", *section.digests))
            parts.append(section.payload)
        return b"".join(parts)

    @property
    def section_overhead(self) -> int:
        """Bytes spent on header and section framing rather than coded data."""
        return HEADER_SIZE + len(self.sections) * (_SECTION.size + 2 * self.passes)

    @classmethod
    def from_bytes(cls, data: bytes) -> Container:
        """Parse and check a container.

        Raises:
            BitstreamError: wrong magic or version, truncated, trailing bytes,
                or a CRC mismatch.
        """
        if len(data) == 0:
            raise BitstreamError("the file is empty")
        if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
            raise BitstreamError("not a licrt file (bad magic bytes)")
        if len(data) < HEADER_SIZE:
            raise BitstreamError("the file is truncated inside its header")
        fields = _HEADER.unpack_from(data)
        (crc,) = _HEADER_CRC.unpack_from(data, _HEADER.size)
        if zlib.crc32(data[: _HEADER.size]) != crc:
            raise BitstreamError("the file header is corrupted (CRC mismatch)")
        _, version, bundle_fp, profile_fp, height, width, bucket, rows, cols, passes = fields
        if version != VERSION:
            raise BitstreamError(
                f"container version {version} is not supported (this licrt reads {VERSION})"
            )
        if height == 0 or width == 0 or rows == 0 or cols == 0 or passes == 0:
            raise BitstreamError("the file header describes an empty image")
        sections = []
        offset = HEADER_SIZE
        for index in range(rows * cols):
            if offset + _SECTION.size + 2 * passes > len(data):
                raise BitstreamError(f"the file is truncated (tile {index} of {rows * cols})")
            length, payload_crc = _SECTION.unpack_from(data, offset)
            offset += _SECTION.size
            digests = struct.unpack_from(f">{passes}H", data, offset)
            offset += 2 * passes
            if length % 4 or offset + length > len(data):
                raise BitstreamError(f"the file is truncated (tile {index} of {rows * cols})")
            payload = data[offset : offset + length]
            offset += length
            if zlib.crc32(payload) != payload_crc:
                raise BitstreamError(f"tile {index} is corrupted (CRC mismatch)")
            sections.append(TileSection(payload, digests))
        if offset != len(data):
            raise BitstreamError(f"{len(data) - offset} unexpected bytes after the last tile")
        return cls(bundle_fp, profile_fp, height, width, bucket, rows, cols, passes, tuple(sections))
