"""Quality levels: one bundle, several weights sharing its graphs; files say which level coded them."""

import numpy as np
import pytest

from licrt.export.bundle_writer import write_bundle
from licrt.runtime.codec import Codec
from licrt.runtime.container import Header
from licrt.runtime.errors import BitstreamError, ExportError, LicrtError

from ..helpers import TINY_SETTINGS, load_image, tiny_model

IMAGE = load_image("house_96x64.png")


@pytest.fixture(scope="module")
def codec(levels_bundle):
    return Codec.open(levels_bundle, backend="onnxruntime")


def test_levels_share_the_graphs_and_keep_their_own_weights(levels_bundle):
    manifest = levels_bundle.manifest
    assert [level.name for level in manifest.levels] == ["low", "high"] and manifest.default_level == 0
    root = levels_bundle.root
    assert sorted(p.name for p in (root / "stages").iterdir()) == sorted(
        f"{name}.128x128.onnx" for name in manifest.buckets[0].stages)
    for weights in ("transforms.bin", "entropy.bin"):
        low, high = ((root / "levels" / name / weights).read_bytes() for name in ("low", "high"))
        assert len(low) == len(high) and low != high


def test_each_level_decodes_as_its_own_model(codec, levels_bundle):
    """A level runs the weights of its model: the file from each level equals a single-level bundle's."""
    files = [codec.compress(IMAGE, quality=q) for q in (1, 2)]
    assert files[0] != files[1]
    assert [Header.from_bytes(data).level for data in files] == [0, 1]
    assert codec.compress(IMAGE) == files[0]  # the default level
    decoded = [codec.decompress(data) for data in files]  # no flag: the file says which level
    assert not np.array_equal(decoded[0], decoded[1])
    assert all(image.shape == IMAGE.shape for image in decoded)


def test_a_level_matches_a_bundle_of_that_model_alone(levels_bundle, tmp_path):
    write_bundle(tiny_model(seed=1), [(128, 128)], tmp_path / "alone", progress=False)
    alone = Codec.open(tmp_path / "alone", backend="onnxruntime")
    both = Codec.open(levels_bundle, backend="onnxruntime")
    assert np.array_equal(alone.decompress(alone.compress(IMAGE)), both.decompress(both.compress(IMAGE, quality=2)))


def test_a_quality_the_bundle_lacks_is_refused(codec):
    with pytest.raises(LicrtError, match=r"quality 3 is not one of this bundle's levels: 1 \(low\), 2 \(high\)"):
        codec.compress(IMAGE, quality=3)


def test_a_file_asking_for_a_missing_level_is_refused(codec):
    data = codec.compress(IMAGE)
    header = Header.from_bytes(data)
    forged = Header(**{**header.__dict__, "level": 7}).to_bytes() + data[header.size :]
    with pytest.raises(BitstreamError, match="quality level 8; its bundle has 2"):
        codec.decompress(forged)


def test_levels_of_different_architectures_are_refused(tmp_path):
    from licrt.export import registry

    other = registry.build("s2c-hybrid-s", registry.make_config("s2c-hybrid-s", None,
                                                                {**TINY_SETTINGS, "hyper_channels": "8"}))
    with pytest.raises(ExportError, match="differ in their configuration"):
        write_bundle({"a": tiny_model(), "b": other}, [(128, 128)], tmp_path / "b", progress=False)
    assert not (tmp_path / "b").exists()
