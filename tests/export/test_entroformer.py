"""The Entroformer model against the official code's facts, and official checkpoints."""

import os
import sys

import numpy as np
import pytest
import torch

from licrt.export import registry
from licrt.export.checkpoint import load_model
from licrt.export.entroformer import transforms
from licrt.export.entroformer.model import Entropy
from licrt.export.entroformer.official import OFFICIAL_MODULES
from licrt.plugins.topk_attention import MASKS
from licrt.plugins.topk_attention.reference import buckets_and_mask
from licrt.plugins.topk_attention.torch_op import eager_topk_attention
from licrt.runtime.errors import ExportError
from tests.official_entroformer import official_attention, official_package, write_official_checkpoint

SMALL = {"channels": "16", "latent_channels": "32", "hyper_channels": "16", "dim_embed": "32", "heads": "2",
         "dim_head": "16"}


def small(codec_id, seed=0):
    torch.manual_seed(seed)
    return registry.build(codec_id, registry.make_config(codec_id, None, SMALL)).eval()


def test_official_architecture_and_parameter_counts():
    model = registry.build("entroformer")
    counts = {name: sum(p.numel() for p in getattr(model, name).parameters())
              for name in ("encode", "decode", "cit_he", "cit_hd", "prob", "cit_ar", "cit_pn")}
    assert counts == {"encode": 3_812_928, "decode": 3_812_547, "cit_he": 8_202_624, "cit_hd": 16_019_136,
                      "prob": 384, "cit_ar": 10_788_544, "cit_pn": 2_361_600}
    serial = registry.build("entroformer-serial")
    assert sum(p.numel() for p in serial.parameters()) == sum(counts.values()) + 384  # sos_pred_token
    assert model.cit_he.sizes == [7, 5, 5] and model.cit_he.topks == [32, 16, 8]
    assert model.cit_hd.sizes == [5, 5, 7] and model.cit_hd.topks == [8, 16, 32]
    assert model.cit_ar.blocks[0].attention.relative_attention_bias.weight.shape == (49, 64)


def test_diamond_buckets():
    buckets, _ = buckets_and_mask(0, 20, 20, 7, 5, MASKS["none"])
    center = 2 * 5 + 2  # token (2, 2) of a 4x5 grid
    assert buckets[center, center] == 3 * 7 + 3
    assert buckets[center, center + 1] == 3 * 7 + 4  # dh = +1
    assert buckets[center, center - 5] == 2 * 7 + 3  # dv = -1
    assert buckets[0, 4 * 5 - 1] == 0  # |dv| + |dh| = 3 + 4 > 3: the shared far bucket


@pytest.mark.parametrize("mask", list(MASKS))
def test_gathered_rpe_equals_the_official_materialised_form(mask):
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 2, 3, 20, 16).unbind(0)
    table = torch.randn(25, 16)
    start = torch.zeros(1, dtype=torch.long)
    ours = eager_topk_attention(q, k, v, table, start, 8, 32**-0.5, 5, 5, MASKS[mask])
    official = official_attention(q, k, v, table, start, 8, 32**-0.5, 5, 5, MASKS[mask])
    assert torch.allclose(ours, official, atol=1e-6)


def test_topk_keeps_ties_and_everything_of_short_rows():
    q = torch.ones(1, 1, 1, 1)
    k = torch.tensor([[[[1.0], [1.0], [1.0], [0.0]]]])
    v = torch.eye(4)[None, None]
    start = torch.zeros(1, dtype=torch.long)
    out = eager_topk_attention(q, k, v, torch.zeros(1, 1), start, 2, 1.0, 1, 4, MASKS["none"])
    assert torch.allclose(out[0, 0, 0, :3], torch.full((3,), 1 / 3)) and out[0, 0, 0, 3] == 0


def test_cached_steps_equal_the_full_causal_transformer():
    model = small("entroformer-serial")
    y_hat = torch.round(torch.randn(1, 32, 4, 6) * 3)
    full = model.cit_ar(y_hat)
    caches = model.initial_caches(model.schedule.steps[0], y_hat)
    worst = 0.0
    for t in range(24):
        depth = range(len(model.cit_ar.blocks))
        feature, keys, values, row = model.cit_ar.step(y_hat, torch.tensor([t]), [caches[f"k_cache{i}"] for i in depth],
                                                       [caches[f"v_cache{i}"] for i in depth])
        for i in depth:
            caches[f"k_cache{i}"][..., int(row), :] = keys[i]
            caches[f"v_cache{i}"][..., int(row), :] = values[i]
        worst = max(worst, (feature[0] - full[0, :, t // 6, t % 6]).abs().max().item())
    assert worst < 1e-5


@pytest.mark.parametrize("codec_id", ["entroformer", "entroformer-serial"])
def test_official_checkpoints_load_without_the_official_code(codec_id, tmp_path):
    model = small(codec_id, seed=3)
    write_official_checkpoint(model, tmp_path / "official.pth")
    assert "module" not in sys.modules
    loaded = load_model(tmp_path / "official.pth", codec_id)
    assert loaded.config == model.config
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_wrong_variant_and_foreign_files(tmp_path):
    write_official_checkpoint(small("entroformer-serial"), tmp_path / "serial.pth")
    with pytest.raises(ExportError, match="unidirectional .* export it as entroformer-serial"):
        load_model(tmp_path / "serial.pth", "entroformer")
    with pytest.raises(ExportError, match="pickled Python objects"):
        load_model(tmp_path / "serial.pth", "s2c-conv")

    class Payload:
        def __reduce__(self):
            return os.system, ("echo never",)

    torch.save({"encode": Payload()}, tmp_path / "evil.pth")
    with pytest.raises(ExportError, match="references posix.system"):
        load_model(tmp_path / "evil.pth", "entroformer")


def test_malformed_official_checkpoints_get_one_clear_error(tmp_path):
    with official_package() as (classes, _):
        empty = {name: classes[Entropy]() for name in OFFICIAL_MODULES}
        torch.save(empty, tmp_path / "empty.pth")

        class CalledWithArguments:  # unpickling calls the stand-in of module.ops.GDN with an argument
            def __reduce__(self):
                return classes[transforms.GDN], (3,)

        torch.save({**empty, "encode": CalledWithArguments()}, tmp_path / "arguments.pth")
    with pytest.raises(ExportError, match="lack the weights that define the architecture"):
        load_model(tmp_path / "empty.pth", "entroformer")
    with pytest.raises(ExportError, match="not an official Entroformer checkpoint"):
        load_model(tmp_path / "arguments.pth", "entroformer")


def test_exported_attention_names_its_tensorrt_plugin(tmp_path):
    """Every TopkAttention node carries the attributes TensorRT's parser looks up its plugin by; the schema
    declares them (onnx.checker passes), and ONNX Runtime computes exactly what it computes without them."""
    import onnx
    import onnxruntime

    from licrt.export.bundle_writer import write_bundle
    from licrt.plugins.topk_attention import DOMAIN, OP_TYPE, PLUGIN_ATTRIBUTES

    from onnx.external_data_helper import load_external_data_for_model

    write_bundle(small("entroformer"), [(64, 64)], tmp_path / "bundle", progress=False)
    path = tmp_path / "bundle" / "stages" / "non-anchors.64x64.onnx"
    model = onnx.load(path, load_external_data=False)
    load_external_data_for_model(model, str(tmp_path / "bundle" / "levels" / "default"))
    nodes = [node for node in model.graph.node if node.domain == DOMAIN and node.op_type == OP_TYPE]
    assert nodes
    for node in nodes:
        attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert {name: attributes[name].decode() for name in PLUGIN_ATTRIBUTES} == PLUGIN_ATTRIBUTES
    onnx.checker.check_model(model)

    rng = np.random.default_rng(0)
    feed = {i.name: rng.standard_normal([d.dim_value for d in i.type.tensor_type.shape.dim]).astype(np.float32)
            for i in model.graph.input}
    with_names = onnxruntime.InferenceSession(model.SerializeToString()).run(None, feed)
    for node in nodes:
        kept = [a for a in node.attribute if a.name not in PLUGIN_ATTRIBUTES]
        del node.attribute[:]
        node.attribute.extend(kept)
    stripped = tmp_path / "bundle" / "stages" / "stripped.onnx"
    onnx.save(model, stripped)
    without = onnxruntime.InferenceSession(str(stripped)).run(None, feed)
    assert all(np.array_equal(a, b) for a, b in zip(with_names, without, strict=True))


def test_a_bundle_rebuilds_its_entroformer(tmp_path):
    """GDN's β and γ reach the graphs reparametrised, under other names: the level's params.npz keeps them."""
    from licrt.export.bundle_writer import write_bundle
    from licrt.export.checkpoint import model_from_bundle
    from licrt.runtime.bundle import Bundle

    model = small("entroformer")
    write_bundle(model, [(64, 64)], tmp_path / "bundle", progress=False)
    bundle = Bundle.open(tmp_path / "bundle")
    stored = np.load(bundle.path(bundle.manifest.levels[0].parameters))
    assert any("beta" in key for key in stored.files)
    rebuilt = model_from_bundle(bundle).state_dict()
    for key, value in model.state_dict().items():
        assert torch.equal(rebuilt[key], value), key
