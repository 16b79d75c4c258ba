"""Hostile compressed files: named attacks, every truncation, a short fuzzing run (the long one: bench/fuzz.py)."""

import dataclasses
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from licrt.runtime.codec import Codec
from licrt.runtime.container import Container, TileSection
from licrt.runtime.errors import BitstreamError, LimitError
from licrt.runtime.limits import Limits
from licrt.runtime.scheduler import DivergenceError
from tests import fuzzing


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory):
    return fuzzing.fuzz_codec(tmp_path_factory.mktemp("fuzz"))


@pytest.fixture(scope="module")
def fuzz_windows(tmp_path_factory):
    return fuzzing.fuzz_codec(tmp_path_factory.mktemp("fuzz-windows"), windowed=True)


def seed(fuzz, tiles):
    _, corpus = fuzz
    return next(s for s in corpus if s.container.header.sections == tiles)


def test_corpus_round_trips(fuzz, fuzz_windows):
    for codec, corpus in (fuzz, fuzz_windows):
        for item in corpus:
            assert codec.decompress(item.data).shape == item.image.shape
    assert [s.container.header.sections for s in fuzz[1]] == [2, 4, 1, 3]
    assert [(s.container.header.tile_rows, s.container.header.tile_cols, s.container.header.sections)
            for s in fuzz_windows[1]] == [(1, 1, 1), (2, 1, 1), (1, 2, 1), (2, 2, 2)]


def test_swapped_tiles_are_refused(fuzz):
    codec, _ = fuzz
    four = seed(fuzz, 4)
    spans = fuzzing.section_spans(four.container)
    data = four.data
    swapped = data[: spans[1].start] + data[spans[2]] + data[spans[1]] + data[spans[2].stop :]
    with pytest.raises(BitstreamError, match="section 2 of 4 is corrupted or out of place"):
        codec.decompress(swapped)


def test_a_tile_spliced_from_another_file_is_refused(fuzz):
    codec, corpus = fuzz
    four = seed(fuzz, 4)
    other = codec.compress(np.ascontiguousarray(four.image[::-1]))  # same size and bundle: same header
    assert Container.from_bytes(other).header == four.container.header
    spans = fuzzing.section_spans(four.container)
    spliced = four.data[: spans[3].start] + other[fuzzing.section_spans(Container.from_bytes(other))[3]]
    with pytest.raises(BitstreamError, match="section 4 of 4 is corrupted or out of place"):
        codec.decompress(spliced)


@pytest.mark.parametrize("field, value", [("height", 79), ("height", 81), ("width", 99), ("tile_rows", 1)])
def test_forged_header_fields_with_a_valid_header_check_are_refused(fuzz, field, value):
    codec, _ = fuzz
    four = seed(fuzz, 4)
    header = dataclasses.replace(four.container.header, **{field: value})
    forged = header.to_bytes() + four.data[four.container.header.size :]
    with pytest.raises(BitstreamError):
        codec.decompress(forged)


def test_a_forged_size_is_refused_from_the_header_with_little_memory(fuzz):
    """200,000² pixels and 3,125² tiles, every check valid: refused before anything is allocated."""
    codec, _ = fuzz
    four = seed(fuzz, 4)
    header = dataclasses.replace(four.container.header, height=200_000, width=200_000, tile_rows=3125,
                                 tile_cols=3125)
    forged = Container(header, four.container.sections).to_bytes()
    tracemalloc.start()
    with pytest.raises(LimitError, match="40,000,000,000 pixels"):
        codec.decompress(forged)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 2**20


def test_limits_are_settable(fuzz):
    codec, _ = fuzz
    four = seed(fuzz, 4)
    strict = Codec(codec.bundle, codec.backend, Limits(max_pixels=100 * 80, max_tiles=3))
    with pytest.raises(LimitError, match="coded in 4 tiles, more than the limit of 3"):
        strict.decompress(four.data)
    with pytest.raises(LimitError, match="more than the limit of 3"):
        strict.compress(four.image)


def test_every_truncation_of_a_real_file_is_refused(fuzz):
    codec, _ = fuzz
    four = seed(fuzz, 4)
    for length in range(len(four.data)):
        with pytest.raises(BitstreamError):
            codec.decompress(four.data[:length])


def test_a_payload_with_a_word_more_than_the_coder_wrote_is_refused(fuzz):
    """Every check recomputed: the decoder re-encodes what it decoded and compares."""
    codec, _ = fuzz
    one = seed(fuzz, 1)
    section = one.container.sections[0]
    longer = Container(one.container.header, (TileSection(section.payload + bytes(4), section.digests),))
    with pytest.raises(BitstreamError, match="not what the encoder writes"):
        codec.decompress(longer.to_bytes())


def test_altered_coded_data_with_valid_checks_is_refused(fuzz):
    codec, _ = fuzz
    one = seed(fuzz, 1)
    section = one.container.sections[0]
    payload = bytearray(section.payload)
    payload[0] ^= 0x40
    altered = Container(one.container.header, (TileSection(bytes(payload), section.digests),))
    with pytest.raises(BitstreamError, match="tile 1 of 1: the coded data is corrupted or forged: at pass z") as error:
        codec.decompress(altered.to_bytes())
    assert not isinstance(error.value, DivergenceError)  # ẑ depends on no float: no backend is to blame


#: How the fuzz tests run: the same examples on every run, none remembered between runs.
FUZZING = settings(deadline=None, derandomize=True, database=None,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@settings(FUZZING, max_examples=3000)
@given(recipe=fuzzing.recipes(4))
def test_fuzzed_files_are_refused_or_decode_to_the_right_image(fuzz, recipe):
    fuzzing.judge(*fuzz, recipe, fuzzing.mutate(fuzz[1], recipe))


@settings(FUZZING, max_examples=600)
@given(recipe=fuzzing.recipes(4))
def test_fuzzed_windowed_files_are_refused_or_decode_to_the_right_image(fuzz_windows, recipe):
    fuzzing.judge(*fuzz_windows, recipe, fuzzing.mutate(fuzz_windows[1], recipe))
