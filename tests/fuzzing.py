"""Hostile compressed files: mutations of real files, and the oracle that judges what the decoder makes of them.

Shared by the fuzz test (a short run in CI) and ``bench/fuzz.py`` (the long
run). Every input starts as a real file of a small corpus and is changed in
one of two ways:

* **raw**: bits flipped, bytes overwritten, inserted or deleted, the file
  truncated, tile sections swapped or spliced in from another file, byte for
  byte, as damage or a careless attacker would;
* **forged**: the container parsed, one field, digest or payload changed, and
  every check recomputed, as a deliberate attacker would, so that the input
  gets past the container to the limits, the entropy decoder and the graphs.

The oracle: decoding returns an image or raises a :class:`LicrtError`; any
other exception is a crash. A raw input may only decode if it is the file
itself. A forged input may only decode if its coded data (every section) is
the original's: a forger who recomputes every check can rewrite the header,
which no keyless check can prevent, but never make the decoder accept altered
coded data. Where such an input decodes, its pixels must be the original's
wherever both images have pixels.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from hypothesis import strategies as st

from licrt.export.bundle_writer import write_bundle
from licrt.runtime.codec import Codec
from licrt.runtime.container import Container, Header, TileSection, section_framing
from licrt.runtime.errors import LicrtError
from licrt.runtime.limits import Limits

from .helpers import load_image, tiny_model

RAW = ("flip", "overwrite", "insert", "delete", "truncate", "swap-tiles", "splice-tile", "splice-halves")
FORGED = ("header", "tile-count", "payload-word", "payload-append", "payload-drop", "digest", "payload-from-other")
HEADER_FIELDS = ("height", "width", "bucket", "tile_rows", "tile_cols", "windowed", "regions", "passes", "profile",
                 "contract")


class WrongImage(AssertionError):
    """The decoder returned an image for input it should have refused."""


@dataclass(frozen=True)
class Seed:
    """A real file of the corpus and the image it decodes to."""

    name: str
    data: bytes
    container: Container
    image: np.ndarray


@dataclass(frozen=True)
class Recipe:
    """How to turn one seed into a hostile input; a and b pick positions and values, blob supplies bytes."""

    kind: str
    seed: int
    #: Picks another file than the seed, for splices.
    other: int
    a: int
    b: int
    blob: bytes


def fuzz_codec(folder: Path, windowed: bool = False) -> tuple[Codec, list[Seed]]:
    """The tiny model with one bucket (fast graphs), and a corpus of files of 1 to 4 sections: 64×64 tiles, or
    1 to 4 windows of 128×128 in one region or two (regions of at most 128×192 pixels)."""
    side = 128 if windowed else 64
    write_bundle(tiny_model(), [(side, side)], folder / "bundle", progress=False)
    codec = Codec.open(folder / "bundle", backend="onnxruntime", limits=Limits(max_region_pixels=128 * 192))
    lighthouse, parrots = load_image("lighthouse_250x190.png"), load_image("parrots_256x256.png")
    images = {
        "house 96x64 (1x2 tiles)": load_image("house_96x64.png"),
        "lighthouse 100x80 (2x2 tiles)": lighthouse[40:120, 60:160],
        "parrots 64x64 (1 tile)": parrots[96:160, 96:160],
        "parrots 40x130 (1x3 tiles)": parrots[:40, 100:230],
    } if not windowed else {
        "house 96x64 (1 window)": load_image("house_96x64.png"),
        "lighthouse 150x100 (2x1 windows)": lighthouse[:150, 100:200],
        "parrots 120x190 (1x2 windows)": parrots[20:140, 30:220],
        "parrots 180x170 (2x2 windows, 1x2 regions)": parrots[40:220, 50:220],
    }
    corpus = []
    for name, image in images.items():
        data = codec.compress(image)
        corpus.append(Seed(name, data, Container.from_bytes(data), codec.decompress(data)))
    return codec, corpus


def recipes(corpus_size: int) -> st.SearchStrategy[Recipe]:
    """Hypothesis strategy of mutations of a corpus of corpus_size files."""
    index = st.integers(0, corpus_size - 1)
    number = st.integers(0, 2**32 - 1)
    return st.builds(Recipe, st.sampled_from(RAW + FORGED), index, index, number, number,
                     st.binary(min_size=1, max_size=16))


def section_spans(container: Container) -> list[slice]:
    """Byte ranges of every section in the serialized container."""
    spans, offset = [], container.header.size
    for section in container.sections:
        end = offset + section_framing(container.header.passes) + len(section.payload)
        spans.append(slice(offset, end))
        offset = end
    return spans


def mutate(corpus: Sequence[Seed], recipe: Recipe) -> bytes:
    seed = corpus[recipe.seed]
    other = corpus[(recipe.seed + 1 + recipe.other % (len(corpus) - 1)) % len(corpus)]  # never the seed itself
    if recipe.kind in RAW:
        return _raw(seed, other, recipe)
    return _forged(seed, other, recipe)


def _raw(seed: Seed, other: Seed, r: Recipe) -> bytes:
    data = bytearray(seed.data)
    size = len(data)
    spans, other_spans = section_spans(seed.container), section_spans(other.container)
    if r.kind == "flip":
        data[r.a % size] ^= 1 << (r.b % 8)
    elif r.kind == "overwrite":
        position = r.a % size
        data[position : position + len(r.blob)] = r.blob
    elif r.kind == "insert":
        position = r.a % (size + 1)
        data[position:position] = r.blob
    elif r.kind == "delete":
        position = r.a % size
        del data[position : position + 1 + r.b % 64]
    elif r.kind == "truncate":
        del data[r.a % size :]
    elif r.kind == "swap-tiles":
        first, second = sorted((spans[r.a % len(spans)], spans[r.b % len(spans)]), key=lambda s: s.start)
        if first == second:  # one tile: swap with the other file's first tile instead
            return bytes(data[: first.start]) + other.data[other_spans[0]] + bytes(data[first.stop :])
        data = (data[: first.start] + data[second] + data[first.stop : second.start] + data[first]
                + data[second.stop :])
    elif r.kind == "splice-tile":
        mine, theirs = spans[r.a % len(spans)], other_spans[r.b % len(other_spans)]
        data[mine] = other.data[theirs]
    elif r.kind == "splice-halves":
        cut = r.a % size
        data = data[:cut] + other.data[r.b % len(other.data) :]
    return bytes(data)


def _forged(seed: Seed, other: Seed, r: Recipe) -> bytes:
    header, sections = seed.container.header, list(seed.container.sections)
    tile = r.a % len(sections)
    section = sections[tile]
    words = len(section.payload) // 4
    if r.kind == "header":
        header = _forged_header(header, HEADER_FIELDS[r.a % len(HEADER_FIELDS)], r.b, r.blob)
        sections = [TileSection(s.payload, (s.digests * header.passes)[: header.passes]) for s in sections]
    elif r.kind == "tile-count":
        rows, cols = 1 + r.a % 4, 1 + r.b % 4
        header = dataclasses.replace(header, tile_rows=rows, tile_cols=cols)
        sections = (sections * rows * cols)[: rows * cols]
    elif r.kind == "payload-word":
        payload = bytearray(section.payload)
        word = 4 * (r.b % words)
        payload[word : word + 4] = (r.blob * 4)[:4]
        sections[tile] = TileSection(bytes(payload), section.digests)
    elif r.kind == "payload-append":
        sections[tile] = TileSection(section.payload + (r.blob * 4)[:4], section.digests)
    elif r.kind == "payload-drop":
        if words < 2:
            return seed.data
        sections[tile] = TileSection(section.payload[:-4], section.digests)
    elif r.kind == "digest":
        digests = list(section.digests)
        digests[r.b % len(digests)] ^= 1 + r.blob[0] % 65535
        sections[tile] = TileSection(section.payload, tuple(digests))
    elif r.kind == "payload-from-other":
        theirs = other.container.sections[r.b % len(other.container.sections)]
        if theirs.payload == section.payload:
            return seed.data
        sections[tile] = TileSection(theirs.payload, section.digests)
    return Container(header, tuple(sections)).to_bytes()


def _forged_header(header: Header, field: str, value: int, blob: bytes) -> Header:
    if field == "profile":
        text = "".join(chr(0x20 + byte % 95) for byte in blob)
        return dataclasses.replace(header, profile=text)
    if field == "contract":
        return dataclasses.replace(header, contract=(blob * 8)[:8])
    if field == "windowed":
        return dataclasses.replace(header, windowed=not header.windowed)
    if field == "regions":
        return dataclasses.replace(header, regions=(1 + value % 3, 1 + (value >> 2) % 3))
    current = getattr(header, field)
    bits = {"bucket": 8, "tile_rows": 16, "tile_cols": 16, "passes": 8}.get(field, 32)
    # Half the time a small step from the true value (stays plausible), else any value the field holds.
    candidate = current + (value % 129) - 64 if value & 1 else value >> 1
    return dataclasses.replace(header, **{field: min(max(candidate, 1), 2**bits - 1)})


def judge(codec: Codec, corpus: Sequence[Seed], recipe: Recipe, data: bytes) -> str:
    """Decode data made by recipe and say what happened; raises :class:`WrongImage` where the decoder was fooled.

    Any exception that is not a :class:`LicrtError` propagates: a crash.
    """
    try:
        image = codec.decompress(data)
    except LicrtError as exc:
        return f"refused: {type(exc).__name__}"
    original = next((seed for seed in corpus if seed.data == data), None)
    if original is not None:  # the mutation gave back a real file (a splice at its very start)
        if not np.array_equal(image, original.image):
            raise WrongImage(f"{original.name}: the file itself decodes differently")
        return "decoded: a real file"
    seed = corpus[recipe.seed]
    if recipe.kind not in FORGED:
        raise WrongImage(f"{seed.name}: damaged bytes decoded to an image")
    if Container.from_bytes(data).sections != seed.container.sections:
        raise WrongImage(f"{seed.name}: altered coded data decoded to an image")
    height, width = min(image.shape[0], seed.image.shape[0]), min(image.shape[1], seed.image.shape[1])
    if not np.array_equal(image[:height, :width], seed.image[:height, :width]):
        raise WrongImage(f"{seed.name}: a forged header changed the pixels of the tiles")
    return "decoded: forged header, the file's own tiles"
