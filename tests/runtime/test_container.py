import os
import zlib

import numpy as np
import pytest

from licrt.runtime.container import GRAY, MAX_ICC_PROFILE, Container, Header, TileSection, pass_digest
from licrt.runtime.errors import BitstreamError

SAMPLE = Container(
    Header(
        contract=bytes(range(8)),
        profile="cpu",
        height=190,
        width=250,
        bucket=2,
        tile_rows=1,
        tile_cols=2,
        passes=2,
        level=1,
        colour=GRAY,
        icc_profile=b"\xaa\xbb",
    ),
    sections=(TileSection(b"\x01\x02\x03\x04", (7, 65535)), TileSection(b"\x05\x06\x07\x08", (0, 1))),
)

# The byte layout is a compatibility promise: this pins it.
GOLDEN = (
    "894c49430d0a1a0a08"          # magic, version 8
    "0001020304050607"            # coding contract
    "01"                          # quality level 2
    "000000be000000fa"            # height 190, width 250
    "02" "0001" "0002" "00"       # bucket 2, 1x2 tiles side by side
    "0001" "0002" "02"            # 1x2 sections (the tiles), 2 passes
    "01" "03" "00000002"          # gray, profile and ICC profile lengths
    "637075" "aabb"               # profile "cpu", ICC profile
    "f019053b"                    # header check
    "00000004" "0007ffff" "01020304" "03e7b68c"   # tile 1: length, digests, payload, running check
    "00000004" "00000001" "05060708" "57d090ca"   # tile 2
)


def test_layout_is_pinned():
    assert SAMPLE.to_bytes().hex() == GOLDEN
    assert Container.from_bytes(bytes.fromhex(GOLDEN)) == SAMPLE


def test_checks_are_running_crcs_of_the_file():
    data = SAMPLE.to_bytes()
    header_end = SAMPLE.header.size - 4
    assert data[header_end : header_end + 4] == zlib.crc32(data[:header_end]).to_bytes(4, "big")
    first_end = SAMPLE.header.size + 4 + 4 + 4
    assert data[first_end : first_end + 4] == zlib.crc32(data[:header_end] + data[header_end + 4 : first_end]
                                                         ).to_bytes(4, "big")


def test_every_truncation_is_detected():
    data = SAMPLE.to_bytes()
    for length in range(len(data)):
        with pytest.raises(BitstreamError):
            Container.from_bytes(data[:length])


def test_every_bit_flip_is_detected():
    """Digests included: the section checks cover them (format 1 left them unchecked)."""
    data = SAMPLE.to_bytes()
    for position in range(len(data)):
        for bit in range(8):
            flipped = bytearray(data)
            flipped[position] ^= 1 << bit
            with pytest.raises(BitstreamError):
                Container.from_bytes(bytes(flipped))


def test_sections_are_bound_to_their_place():
    data = SAMPLE.to_bytes()
    start = SAMPLE.header.size
    first, second = data[start : start + 16], data[start + 16 :]
    with pytest.raises(BitstreamError, match="section 1 of 2 is corrupted or out of place"):
        Container.from_bytes(data[:start] + second + first)
    other = Container(SAMPLE.header, (SAMPLE.sections[0], TileSection(b"\x09\x0a\x0b\x0c", (0, 1)))).to_bytes()
    with pytest.raises(BitstreamError, match="section 2 of 2 is corrupted or out of place"):
        Container.from_bytes(data[: start + 16] + other[start + 16 :][:12] + data[-4:])
    moved = Container(Header(**{**SAMPLE.header.__dict__, "height": 191}), SAMPLE.sections).to_bytes()
    with pytest.raises(BitstreamError, match="section 1 of 2 is corrupted or out of place"):
        Container.from_bytes(moved[:start] + data[start:])


@pytest.mark.parametrize("length, message", [(0, "claims 0 bytes"), (6, "claims 6 bytes"), (2**31, "truncated")])
def test_impossible_payload_lengths_are_refused(length, message):
    data = bytearray(SAMPLE.to_bytes())
    data[SAMPLE.header.size : SAMPLE.header.size + 4] = length.to_bytes(4, "big")
    with pytest.raises(BitstreamError, match=message):
        Container.from_bytes(bytes(data))


def test_payloads_longer_than_the_coder_writes_are_refused():
    with pytest.raises(BitstreamError, match="4 to 0 bytes|claims 4 bytes"):
        Container.from_bytes(SAMPLE.to_bytes(), max_payload=0)
    assert Container.from_bytes(SAMPLE.to_bytes(), max_payload=4) == SAMPLE


@pytest.mark.parametrize("data, message", [
    (b"", "empty"),
    (b"\x89LIC", "truncated inside its header"),
    (b"\x89PNG\r\n\x1a\n" + bytes(100), "not a licrt file"),
    (os.urandom(64), "not a licrt file"),
    (bytes.fromhex("894c49430d0a1a0a01") + bytes(60), "container format 1, which this licrt no longer reads"),
    (bytes.fromhex("894c49430d0a1a0a02") + bytes(60), "format 2, .* decode it with licrt 0.2"),
    (bytes.fromhex("894c49430d0a1a0a03") + bytes(60), "format 3, .* decode it with licrt 0.3"),
    (bytes.fromhex("894c49430d0a1a0a04") + bytes(60), "format 4, .* decode it with licrt 0.4"),
    (bytes.fromhex("894c49430d0a1a0a05") + bytes(60), "format 5, .* decode it with licrt 0.5"),
    (bytes.fromhex("894c49430d0a1a0a06") + bytes(60), "format 6, .* decode it with licrt 0.8"),
    (bytes.fromhex("894c49430d0a1a0a07") + bytes(60), "format 7, .* decode it with licrt 0.9"),
    (bytes.fromhex("894c49430d0a1a0a09") + bytes(60), "container format 9 is not supported"),
])
def test_foreign_and_old_data_is_refused(data, message):
    with pytest.raises(BitstreamError, match=message):
        Container.from_bytes(data)


def test_a_profile_that_is_not_printable_is_refused():
    header = bytearray(SAMPLE.header.to_bytes()[:-4])
    header[43:46] = b"\x1b[2"  # a terminal escape sequence in place of "cpu", with a valid check
    forged = bytes(header) + zlib.crc32(header).to_bytes(4, "big")
    with pytest.raises(BitstreamError, match="profile is not printable"):
        Header.from_bytes(forged)
    with pytest.raises(ValueError):
        Header(**{**SAMPLE.header.__dict__, "profile": "tab\there"}).to_bytes()


def forged_header(offset: int, value: bytes) -> bytes:
    """SAMPLE's header with bytes replaced at offset, and a valid check."""
    header = bytearray(SAMPLE.header.to_bytes()[:-4])
    header[offset : offset + len(value)] = value
    return bytes(header) + zlib.crc32(header).to_bytes(4, "big")


def test_an_icc_profile_longer_than_a_file_carries_is_refused_before_it_is_read():
    with pytest.raises(BitstreamError, match="ICC profile of 1,048,577 bytes"):
        Header.from_bytes(forged_header(39, (MAX_ICC_PROFILE + 1).to_bytes(4, "big")))
    with pytest.raises(ValueError, match="ICC profile"):
        Header(**{**SAMPLE.header.__dict__, "icc_profile": bytes(MAX_ICC_PROFILE + 1)}).to_bytes()


def test_an_unknown_colour_is_refused():
    with pytest.raises(BitstreamError, match="colour 2 is neither RGB nor gray"):
        Header.from_bytes(forged_header(37, b"\x02"))


def test_an_unknown_layout_is_refused():
    with pytest.raises(BitstreamError, match="layout 2 is neither tiles nor windows"):
        Header.from_bytes(forged_header(31, b"\x02"))


def test_tiles_that_are_not_the_sections_are_refused():
    with pytest.raises(BitstreamError, match="its tiles are not its sections"):
        Header.from_bytes(forged_header(34, b"\x00\x03"))


def test_trailing_bytes_are_refused():
    with pytest.raises(BitstreamError, match="unexpected bytes"):
        Container.from_bytes(SAMPLE.to_bytes() + b"\0")


def test_pass_digest_is_16_bits_and_covers_symbols_and_decisions():
    a = pass_digest(np.array([1, 2, 3]), np.array([0, 5]))
    assert 0 <= a < 65536 and a != pass_digest(np.array([3, 2, 1]), np.array([0, 5]))
    assert a != pass_digest(np.array([1, 2, 3]), np.array([0, 6]))
