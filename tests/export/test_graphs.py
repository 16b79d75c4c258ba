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
    half_size, full_size = (sum(path.stat().st_size for path in b.weight_files.values())
                            for b in (bundle, tiny_bundle))
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


def test_forced_top_k_choices_are_kept_and_counted_against_near_ties():
    from licrt.plugins.topk_attention.torch_op import keep_topk, selections_forced

    logits = torch.tensor([[3.0, 2.0, 2.0 - 1e-6, 1.0]])
    assert (keep_topk(logits, 2) > -1e30).tolist() == [[True, True, False, False]]
    near_tie = torch.tensor([[True, False, True, False]])  # the near-tied third key instead of the second
    no_tie = torch.tensor([[True, False, False, True]])  # the last key, a whole logit below the k-th
    with selections_forced([near_tie, no_tie], margin=1e-4) as forced:
        assert (keep_topk(logits, 2) > -1e30).tolist() == near_tie.tolist()
        assert forced.flipped_rows == 1 and forced.unexplained_keys == 0
        assert (keep_topk(logits, 2) > -1e30).tolist() == no_tie.tolist()
        assert forced.flipped_rows == 2 and forced.unexplained_keys == 1


def test_verification_refuses_a_top_k_graph_that_near_ties_do_not_explain(tmp_path):
    """The Entroformer's hyper graphs checked against another model's PyTorch outputs: even with ONNX
    Runtime's top-k choices, PyTorch computes other outputs, and no allowance lets the graph pass."""
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
    assert checks["h_a"].same_keys_error > 100 * checks["h_a"].tolerance and not checks["h_a"].passed
