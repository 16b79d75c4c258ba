import os

import pytest

from licrt.runtime.container import HEADER_SIZE, Container, TileSection, symbol_digest
from licrt.runtime.errors import BitstreamError

SAMPLE = Container(
    bundle_fingerprint=bytes(range(8)),
    profile_fingerprint=bytes(range(8, 16)),
    height=190,
    width=250,
    bucket=2,
    tile_rows=1,
    tile_cols=2,
    passes=2,
    sections=(TileSection(b"\x01\x02\x03\x04", (7, 65535)), TileSection(b"", (0, 1))),
)

# The byte layout is a compatibility promise: this pins it.
GOLDEN = (
    "894c49430d0a1a0a01"          # magic, version
    "0001020304050607"            # bundle fingerprint
    "08090a0b0c0d0e0f"            # profile fingerprint
    "000000be000000fa"            # height 190, width 250
    "02" "0001" "0002" "02"       # bucket 2, 1x2 tiles, 2 passes
    "a9429960"                    # header CRC-32
    "00000004b63cfbcd" "0007ffff" "01020304"   # tile 0: length, CRC, digests, payload
    "0000000000000000" "00000001"              # tile 1: empty payload
)


def test_layout_is_pinned():
    assert SAMPLE.to_bytes().hex() == GOLDEN
    assert Container.from_bytes(bytes.fromhex(GOLDEN)) == SAMPLE


def test_every_truncation_is_detected():
    data = SAMPLE.to_bytes()
    for length in range(len(data)):
        with pytest.raises(BitstreamError):
            Container.from_bytes(data[:length])


def test_every_bit_flip_outside_the_digests_is_detected():
    data = SAMPLE.to_bytes()
    digest_bytes = {HEADER_SIZE + 8 + i for i in range(4)} | {HEADER_SIZE + 16 + 8 + i for i in range(4)}
    for position in range(len(data)):
        if position in digest_bytes:
            continue  # caught later, when the decoded symbols are compared
        for bit in range(8):
            flipped = bytearray(data)
            flipped[position] ^= 1 << bit
            with pytest.raises(BitstreamError):
                Container.from_bytes(bytes(flipped))


@pytest.mark.parametrize("data, message", [
    (b"", "empty"),
    (b"\x89PNG\r\n\x1a\n" + bytes(100), "not a licrt file"),
    (os.urandom(64), "not a licrt file"),
])
def test_foreign_data_is_refused(data, message):
    with pytest.raises(BitstreamError, match=message):
        Container.from_bytes(data)


def test_trailing_bytes_are_refused():
    with pytest.raises(BitstreamError, match="unexpected bytes"):
        Container.from_bytes(SAMPLE.to_bytes() + b"\0")


def test_symbol_digest_is_16_bits_and_order_sensitive():
    import numpy as np

    a = symbol_digest(np.array([1, 2, 3]))
    assert 0 <= a < 65536 and a != symbol_digest(np.array([3, 2, 1]))
