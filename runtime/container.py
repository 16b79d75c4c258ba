"""The licrt bitstream container, format version 8.

Byte layout (integers big-endian)::

    offset  size  field
    0       8     magic  89 'L' 'I' 'C' 0D 0A 1A 0A  (PNG-style: catches text-mode
                  transfers and truncation to 7 bits)
    8       1     container format version (8)
    9       8     coding contract: what the decoding bundle must share with the
                  encoder's (see licrt.runtime.manifest.Manifest.coding_contract)
    17      1     quality level: index into the bundle's levels (weights and tables)
    18      4     original image height
    22      4     original image width
    26      1     bucket index of the first tile or window; with the rows, columns
                  and layout a check of the grid, which both sides derive from the
                  image size and the bundle (licrt.runtime.tiling.choose_grid)
    27      2     rows of tiles or windows
    29      2     columns of tiles or windows
    31      1     layout: 0 tiles side by side, one section each; 1 windows over
                  the whole image, one section per region of windows
                  (licrt.runtime.tiling.TileGrid.regions)
    32      2     rows of sections (tiles, or regions)
    34      2     columns of sections
    36      1     coded passes per section P (ẑ, then every schedule step)
    37      1     colour: 0 RGB, 1 gray (coded as R = G = B, returned as one channel)
    38      1     length n of the encoder's profile (1 ≤ n)
    39      4     length m of the image's ICC profile (0: none)
    43      n     encoder's profile: printable ASCII naming what set its floats
                  (backend, version, device, graph optimisation, precision)
    43+n    m     the image's ICC profile, as read from the input
    43+n+m  4     header check: CRC-32 of bytes 0 .. 42+n+m
    47+n+m        the sections, row-major:
                    4      payload length L (bytes, a multiple of 4, at least 4)
                    2·P    per-pass digests: CRC-32 of the pass's symbols and
                           coding decisions, low 16 bits
                    L      payload: one range-coder stream, little-endian u32
                           words: ẑ, then per schedule step its side stream
                           (see licrt.runtime.guard) and its symbols; only
                           the latents whose pixels overlap the image are
                           coded (see licrt.runtime.tiling.ImageArea)
                    4      section check: CRC-32 of the section's bytes above,
                           continued from the previous check (the header check
                           for the first section)

A section's check is thus the running CRC-32 of the file up to the end of
the section, earlier checks left out. It covers the section's length, digests
and payload, and it binds the section to the header and to its place: a
section swapped with another, moved, or spliced in from another file fails
its check, and so does every truncation. The decoder then checks that each
payload is consumed exactly as the coder left it.

The per-pass digests catch what no check on the bytes can: a decoder whose
floats differ from the encoder's by more than the guard covers takes another
coding decision, decodes other symbols from intact bytes, and would return a
wrong image; instead it stops with an error naming the pass and both
profiles. The profile is there for that message; it does not decide whether
a file decodes.

Files of formats 1 to 7 are refused with a message that says which licrt
reads them.

Every read is bounds-checked; any inconsistency raises :class:`BitstreamError`.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

from .errors import BitstreamError

MAGIC = b"\x89LIC\r\n\x1a\n"
#: Earlier formats, and what reads them.
_READ_BY = {1: "format 2 binds every tile to its place; decode it with licrt 0.1",
            2: "format 3 decodes on any backend; decode it with licrt 0.2",
            3: "format 4 records the quality level, gray images and ICC profiles; decode it with licrt 0.3",
            4: "format 5 names the coding contract, so that bundles calibrated from one another decode each "
               "other's files; decode it with licrt 0.4",
            5: "format 6 codes only the latents of the image, not those of its padding; decode it with licrt 0.5",
            6: "format 7 codes images larger than a bucket as one, window by window; decode it with licrt 0.8",
            7: "format 8 codes a large image's entropy path region by region, so that memory follows a region; "
               "decode it with licrt 0.9"}
VERSION = 8
_FIELDS = struct.Struct(">8sB8sBIIBHHBHHBBBI")
#: Layouts of a file's sections.
TILES, WINDOWS = 0, 1
_U32 = struct.Struct(">I")
#: The longest profile a header can hold (its length is one byte).
MAX_PROFILE_LENGTH = 255
#: The largest ICC profile a file carries (real ones are a few hundred bytes to a few hundred KiB).
MAX_ICC_PROFILE = 2**20
#: Colours a file can hold.
RGB, GRAY = 0, 1
#: The largest header: fields, the longest profile and ICC profile, and the header check.
MAX_HEADER_SIZE = _FIELDS.size + MAX_PROFILE_LENGTH + MAX_ICC_PROFILE + _U32.size
#: A tile codes at least one symbol, and the range coder writes at least one
#: word for any symbols: no payload is shorter.
MIN_PAYLOAD = 4


def pass_digest(symbols: np.ndarray, decisions: np.ndarray) -> int:
    """16-bit digest of a pass: CRC-32 of its symbols, then of its coding decisions (int32 little-endian)."""
    check = zlib.crc32(np.ascontiguousarray(symbols, dtype="<i4").tobytes())
    return zlib.crc32(np.ascontiguousarray(decisions, dtype="<i4").tobytes(), check) & 0xFFFF


def _is_profile(text: bytes) -> bool:
    """1 to 255 printable ASCII characters: safe to print in an error message."""
    return 1 <= len(text) <= MAX_PROFILE_LENGTH and all(0x20 <= byte < 0x7F for byte in text)


def section_framing(passes: int) -> int:
    """Bytes a section spends besides its payload: length, digests and check."""
    return 2 * _U32.size + 2 * passes


@dataclass(frozen=True)
class Header:
    """What a file says about itself before its tiles."""

    #: The encoder's bundle's :meth:`~licrt.runtime.manifest.Manifest.coding_contract`.
    contract: bytes
    #: The encoder's backend profile (see :attr:`licrt.runtime.backends.Backend.profile`).
    profile: str
    height: int
    width: int
    bucket: int
    tile_rows: int
    tile_cols: int
    passes: int
    #: Index into the bundle's quality levels.
    level: int = 0
    #: :data:`RGB` or :data:`GRAY`.
    colour: int = RGB
    #: The input's ICC profile, carried to the decoded image (empty: none).
    icc_profile: bytes = b""
    #: Windows over the whole image, one section per region (else tiles, one section each).
    windowed: bool = False
    #: Rows and columns of regions of windows, one section each (with windows only).
    regions: tuple[int, int] = (1, 1)

    @property
    def gray(self) -> bool:
        return self.colour == GRAY

    @property
    def sections(self) -> int:
        """Sections the file holds."""
        return self.regions[0] * self.regions[1] if self.windowed else self.tile_rows * self.tile_cols

    @property
    def size(self) -> int:
        """Bytes of the header, its check included."""
        return _FIELDS.size + len(self.profile) + len(self.icc_profile) + _U32.size

    def to_bytes(self) -> bytes:
        profile = self.profile.encode()
        if not _is_profile(profile):
            raise ValueError(f"a profile is 1 to {MAX_PROFILE_LENGTH} printable ASCII characters: {self.profile!r}")
        if len(self.icc_profile) > MAX_ICC_PROFILE:
            raise ValueError(f"an ICC profile of {len(self.icc_profile):,} bytes is more than a file carries "
                             f"({MAX_ICC_PROFILE:,})")
        if self.colour not in (RGB, GRAY):
            raise ValueError(f"colour {self.colour} is neither RGB ({RGB}) nor gray ({GRAY})")
        sections = self.regions if self.windowed else (self.tile_rows, self.tile_cols)
        fields = _FIELDS.pack(MAGIC, VERSION, self.contract, self.level, self.height, self.width,
                              self.bucket, self.tile_rows, self.tile_cols, WINDOWS if self.windowed else TILES,
                              *sections, self.passes, self.colour, len(profile),
                              len(self.icc_profile)) + profile + self.icc_profile
        return fields + _U32.pack(zlib.crc32(fields))

    @classmethod
    def from_bytes(cls, data: bytes) -> Header:
        """Parse and check the header at the start of data (whatever follows it).

        Raises:
            BitstreamError: not a licrt file, another format version, truncated
                or corrupted header, or an empty image.
        """
        if len(data) == 0:
            raise BitstreamError("the file is empty")
        if data[: len(MAGIC)] != MAGIC[: len(data)]:
            raise BitstreamError("not a licrt file (bad magic bytes)")
        if len(data) <= len(MAGIC):
            raise BitstreamError("the file is truncated inside its header")
        version = data[len(MAGIC)]
        if version != VERSION:
            if version in _READ_BY:
                raise BitstreamError(f"the file is in licrt's container format {version}, which this licrt no longer "
                                     f"reads ({_READ_BY[version]})")
            raise BitstreamError(f"container format {version} is not supported (this licrt reads {VERSION})")
        if len(data) < _FIELDS.size:
            raise BitstreamError("the file is truncated inside its header")
        (_, _, contract, level, height, width, bucket, rows, cols, layout, section_rows, section_cols, passes, colour,
         profile_length, icc_length) = _FIELDS.unpack_from(data)
        if icc_length > MAX_ICC_PROFILE:
            raise BitstreamError(f"the file header is corrupted (it claims an ICC profile of {icc_length:,} bytes, "
                                 f"more than {MAX_ICC_PROFILE:,})")
        end = _FIELDS.size + profile_length + icc_length
        if len(data) < end + _U32.size:
            raise BitstreamError("the file is truncated inside its header")
        (check,) = _U32.unpack_from(data, end)
        if zlib.crc32(data[:end]) != check:
            raise BitstreamError("the file header is corrupted (check mismatch)")
        profile = bytes(data[_FIELDS.size : _FIELDS.size + profile_length])
        if not _is_profile(profile):
            raise BitstreamError("the file header is malformed (its profile is not printable text)")
        if colour not in (RGB, GRAY):
            raise BitstreamError(f"the file header is malformed (colour {colour} is neither RGB nor gray)")
        if layout not in (TILES, WINDOWS):
            raise BitstreamError(f"the file header is malformed (layout {layout} is neither tiles nor windows)")
        if min(height, width, rows, cols, section_rows, section_cols, passes) == 0:
            raise BitstreamError("the file header describes an empty image")
        if layout == TILES and (section_rows, section_cols) != (rows, cols):
            raise BitstreamError("the file header is malformed (its tiles are not its sections)")
        return cls(contract, profile.decode(), height, width, bucket, rows, cols, passes, level, colour,
                   bytes(data[_FIELDS.size + profile_length : end]), layout == WINDOWS,
                   (section_rows, section_cols) if layout == WINDOWS else (1, 1))


@dataclass(frozen=True)
class TileSection:
    """The coded data of one tile, or of one region of windows."""

    payload: bytes
    digests: tuple[int, ...]


@dataclass(frozen=True)
class Container:
    """A whole file: its header and its sections (one per tile or region, row-major)."""

    header: Header
    sections: tuple[TileSection, ...]

    def to_bytes(self) -> bytes:
        """Serialize, computing every check; sections are written as given (a reader refuses a count
        other than the header's)."""
        header = self.header.to_bytes()
        parts = [header]
        check = zlib.crc32(header[: -_U32.size])
        for section in self.sections:
            if len(section.digests) != self.header.passes or len(section.payload) % 4 or not section.payload:
                raise ValueError("a section does not match the container's pass count or word size")
            body = (_U32.pack(len(section.payload)) + struct.pack(f">{self.header.passes}H", *section.digests)
                    + section.payload)
            check = zlib.crc32(body, check)
            parts += [body, _U32.pack(check)]
        return b"".join(parts)

    @property
    def framing(self) -> int:
        """Bytes spent on header and section framing rather than coded data."""
        return self.header.size + len(self.sections) * section_framing(self.header.passes)

    @classmethod
    def from_bytes(cls, data: bytes, header: Header | None = None, max_payload: int | None = None) -> Container:
        """Parse and check a whole container.

        Args:
            header: The file's header if already parsed (and vetted) from data.
            max_payload: The most bytes a section's coder can produce; a
                section claiming more is refused.

        Raises:
            BitstreamError: not a licrt file, truncated, trailing bytes, a
                failed check, or a payload of impossible length.
        """
        header = Header.from_bytes(data) if header is None else header
        passes, count = header.passes, header.sections
        view = memoryview(data)
        offset = header.size
        check = zlib.crc32(view[: offset - _U32.size])
        sections = []
        for index in range(count):
            place = f"section {index + 1} of {count}"
            if offset + section_framing(passes) > len(data):
                raise BitstreamError(f"the file is truncated ({place})")
            (length,) = _U32.unpack_from(data, offset)
            if length % 4 or length < MIN_PAYLOAD or (max_payload is not None and length > max_payload):
                bound = f"{MIN_PAYLOAD} to {max_payload}" if max_payload is not None else f"at least {MIN_PAYLOAD}"
                raise BitstreamError(f"{place} is corrupted: it claims {length:,} bytes of coded data, where its "
                                     f"coder writes whole 4-byte words, {bound} bytes")
            end = offset + _U32.size + 2 * passes + length
            if end + _U32.size > len(data):
                raise BitstreamError(f"the file is truncated ({place})")
            check = zlib.crc32(view[offset:end], check)
            if _U32.unpack_from(data, end)[0] != check:
                raise BitstreamError(f"{place} is corrupted or out of place (check mismatch)")
            digests = struct.unpack_from(f">{passes}H", data, offset + _U32.size)
            sections.append(TileSection(bytes(view[end - length : end]), digests))
            offset = end + _U32.size
        if offset != len(data):
            raise BitstreamError(f"{len(data) - offset:,} unexpected bytes after the last section")
        return cls(header, tuple(sections))
