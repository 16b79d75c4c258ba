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


def test_near_ties_are_kept_only_within_the_verification_context():
    from licrt.plugins.topk_attention.torch_op import keep_topk, near_ties_kept

    logits = torch.tensor([[3.0, 2.0, 2.0 - 1e-6, 1.0], [3.0, 2.0, 1.5, 1.0]])
    kept = keep_topk(logits, 2) > -1e30
    assert kept.tolist() == [[True, True, False, False], [True, True, False, False]]
    with near_ties_kept(1e-4) as widened:
        kept = keep_topk(logits, 2) > -1e30
    assert kept.tolist() == [[True, True, True, False], [True, True, False, False]] and widened == [1]


def test_verification_refuses_a_top_k_graph_that_near_ties_do_not_explain(tmp_path):
    """The Entroformer's hyper graphs checked against another model's PyTorch outputs: every output differs,
    far more than near-tied top-k choices could move, and no allowance lets it pass."""
    from licrt.export.bundle_writer import probe_image
    from licrt.export.verify import verify_bundle
    from tests.export.test_entroformer import small

    _, checks = write_bundle(small("entroformer"), [(64, 64)], tmp_path / "bundle", progress=False)
    assert all(check.passed for check in checks)
    other = small("entroformer", seed=1)
    bundle = Bundle.open(tmp_path / "bundle")
    references = {(bundle.level_name, "64x64"): other.reference(probe_image(64, 64), record=True).stages}
    checks = {check.stage: check for check in verify_bundle(bundle, references, other.stage_modules(exported=True))}
    assert checks["h_a"].has_topk and checks["h_a"].beyond > 0.5
    assert checks["h_a"].unexplained > 0.5 and not checks["h_a"].passed
