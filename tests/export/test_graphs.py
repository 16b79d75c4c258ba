"""Weights are stored once for all buckets, and in half precision when that is exact."""

import onnx
import torch

from licrt.export.bundle_writer import write_bundle
from licrt.runtime.bundle import Bundle
from licrt.runtime.codec import Codec
from tests.helpers import load_image, tiny_model


def parameter_bytes(model):
    return sum(p.numel() * 4 for p in model.parameters())


def test_half_precision_weights_are_stored_as_float16_and_shared_by_buckets(tmp_path, tiny_bundle):
    model = tiny_model()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(parameter.half().float())
    _, checks = write_bundle(model, [(64, 64), (128, 128)], tmp_path / "half", progress=False)
    assert all(c.passed for c in checks)
    bundle = Bundle.open(tmp_path / "half")
    half_size = (bundle.weights_folder / "weights.bin").stat().st_size
    full_size = (tiny_bundle.weights_folder / "weights.bin").stat().st_size
    # fp32 random weights are stored once although the graphs differ per bucket ...
    assert full_size < 1.1 * parameter_bytes(model)
    # ... and weights that are exact in fp16 take half the space.
    assert half_size < 0.6 * full_size

    graph = onnx.load(bundle.path(bundle.manifest.buckets[0].stages["g_a"].file), load_external_data=False)
    halves = [t for t in graph.graph.initializer if t.data_type == onnx.TensorProto.FLOAT16]
    assert halves and all(t.data_location == onnx.TensorProto.EXTERNAL for t in halves)
    assert not any(node.metadata_props for node in graph.graph.node)

    image = load_image("house_96x64.png")
    codec = Codec.open(bundle)
    assert codec.decompress(codec.compress(image)).shape == image.shape


def test_top_k_graphs_may_differ_where_keys_tie():
    from licrt.export.verify import StageCheck

    assert StageCheck("b", "g_s", "", 1e-3, 1.0, 0.001, has_topk=False).passed is False
    assert StageCheck("b", "h_a", "", 1e-3, 1.0, 0.02, has_topk=True).passed is True
    assert StageCheck("b", "h_a", "", 1e-3, 1.0, 0.5, has_topk=True).passed is False
