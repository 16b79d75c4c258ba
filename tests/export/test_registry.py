import pytest

from licrt.export import registry
from licrt.export.s2cformer.model import S2CConfig, S2CFormer
from licrt.runtime.errors import ExportError

S2C_IDS = ["s2c-identity", "s2c-conv", "s2c-attention", "s2c-hybrid-s", "s2c-hybrid-m", "s2c-hybrid-l",
           "s2c-hybrid-t"]


def test_codec_ids_are_pinned():
    assert set(S2C_IDS) <= set(registry.codecs())


@pytest.mark.parametrize("codec_id, spatial, blocks, channels", [
    ("s2c-identity", ("identity",) * 3, (3, 3, 3), (192, 192, 192)),
    ("s2c-hybrid-s", ("conv", "attention", "attention"), (3, 3, 3), (192, 192, 192)),
    ("s2c-hybrid-m", ("conv", "attention", "attention"), (3, 5, 5), (192, 192, 192)),
    ("s2c-hybrid-l", ("conv", "attention", "attention"), (3, 8, 8), (192, 192, 192)),
    ("s2c-hybrid-t", ("conv", "attention", "attention"), (3, 5, 8), (96, 192, 256)),
])
def test_variants_follow_the_paper(codec_id, spatial, blocks, channels):
    config = registry.lookup(codec_id).config
    assert (config.spatial, config.blocks, config.channels) == (spatial, blocks, channels)
    assert config.latent_channels == 320 and config.groups == (16, 16, 32, 64, 192)


def test_build_gives_exactly_the_registered_class():
    config = registry.make_config("s2c-conv", None, {"channels": "8,8,8", "latent_channels": "16",
                                                     "groups": "8,8", "hyper_channels": "8", "blocks": "1,1,1"})
    model = registry.build("s2c-conv", config)
    assert type(model) is S2CFormer and type(model.config) is S2CConfig
    assert [s.name for s in model.schedule.steps] == ["y0-anchor", "y0-nonanchor", "y1-anchor", "y1-nonanchor"]


@pytest.mark.parametrize("overrides, message", [
    ({"colour": "1"}, "no setting 'colour'"),
    ({"blocks": "a,b,c"}, "cannot read blocks"),
    ({"groups": "8,8"}, "do not add up"),
    ({"spatial": "conv,mamba,conv"}, "spatial kinds"),
    ({"channels": "48,48,48"}, "multiple of head_dim"),
])
def test_bad_settings_are_explained(overrides, message):
    with pytest.raises(ExportError, match=message):
        registry.make_config("s2c-hybrid-s", None, overrides)


def test_unknown_codec():
    with pytest.raises(ExportError, match="unknown codec 'jpeg'; known codecs: .*s2c-conv"):
        registry.lookup("jpeg")
