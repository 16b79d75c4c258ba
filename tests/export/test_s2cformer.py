import numpy as np
import pytest
import torch
from torch import nn

from tests.helpers import tiny_model
from licrt.export.entropy_models import FactorizedPrior, gaussian_likelihood
from licrt.export.graphs import export_graph
from licrt.export.s2cformer.blocks import S2CBlock, downsample, run_as_tokens, upsample


def test_training_pass_gives_likelihoods_and_gradients():
    model = tiny_model().train()
    x = torch.rand(2, 3, 64, 64)
    out = model(x)
    assert out["x_hat"].shape == x.shape
    assert out["likelihoods"]["y"].shape == (2, 32, 4, 4) and out["likelihoods"]["z"].shape == (2, 16, 1, 1)
    rate = sum(-torch.log2(v).sum() for v in out["likelihoods"].values())
    (rate + (out["x_hat"] - x).pow(2).mean()).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, f"{name} gets no gradient"


def test_each_pass_sees_only_what_was_coded_before_it():
    """Changing a latent element may only change parameters of passes after the one that codes it."""
    model = tiny_model()
    y = torch.randn(1, 32, 4, 4)
    sources = model.hyper_synthesis(torch.zeros(1, 16, 1, 1))
    steps = model.schedule.steps

    def parameters(latent):
        recorded = []
        model.walk_schedule(latent, sources, exact=True,
                            visit=lambda step, inputs, outputs, index: recorded.append(outputs["means"][0][index]))
        return recorded

    base = parameters(y)
    for index, step in enumerate(steps):
        changed = y.clone()
        start, _ = step.channels
        i, j = np.argwhere(step.position_mask(4, 4))[0]
        changed[0, start, i, j] += 5
        after = parameters(changed)
        for earlier in range(index + 1):
            assert torch.equal(base[earlier], after[earlier]), f"{steps[earlier].name} saw {step.name}'s element"


def test_reference_symbols_reconstruct_the_latent():
    model = tiny_model()
    result = model.reference(torch.rand(1, 3, 64, 64), record=True)
    y_hat = result.stages["g_s"][0]["y_hat"]
    assert sum(s.size for s in result.symbols[1:]) == y_hat.numel()
    assert all(b > 0 for b in result.bits)


def test_factorized_prior_tables_hold_its_probabilities():
    prior = FactorizedPrior(3)
    tables = prior.tables()
    starts = np.concatenate([[0], np.cumsum(tables["lengths"])[:-1]])
    for c in range(3):
        row = tables["probabilities"][starts[c] : starts[c] + tables["lengths"][c]]
        assert abs(row.sum() - 1) < 1e-6
        index = int(row[:-1].argmax())
        value = float(tables["offsets"][c] + index)
        likelihood = prior.likelihood(torch.full((1, 3, 1, 1), value))[0, c, 0, 0].item()
        assert row[index] == pytest.approx(likelihood, rel=1e-5)


def test_gaussian_likelihood_sums_to_one_over_integers():
    values = torch.arange(-50, 51, dtype=torch.float32)
    total = gaussian_likelihood(values, torch.tensor(3.0), torch.tensor(0.3)).sum()
    assert total.item() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("spatial", ["identity", "conv", "attention"])
def test_token_layout_computes_what_the_blocks_compute(spatial):
    torch.manual_seed(0)
    transform = nn.Sequential(upsample(24, 32), S2CBlock(32, spatial, window=4, head_dim=8),
                              S2CBlock(32, spatial, window=4, head_dim=8), downsample(32, 16),
                              S2CBlock(16, spatial, window=4, head_dim=8)).eval()
    x = torch.randn(1, 24, 8, 12)
    with torch.no_grad():
        expected, tokens = transform(x), run_as_tokens(transform, x)
    assert tokens.shape == expected.shape
    assert (tokens - expected).abs().max() < 1e-5


def test_exported_transforms_normalise_channels_without_transposes():
    """The token layout's point: no LayerNorm between two transposes, no split of activations."""
    model = tiny_model().eval()
    recorded = model.reference(torch.rand(1, 3, 64, 64), record=True).stages
    for stage in ("g_a", "g_s"):
        inputs, outputs = recorded[stage]
        graph = export_graph(model.stage_modules(exported=True)[stage], inputs, list(outputs)).graph
        transposed = {name for node in graph.node if node.op_type == "Transpose" for name in node.input}
        norms = [node for node in graph.node if node.op_type == "LayerNormalization"]
        assert norms, f"{stage} has no LayerNormalization to check"
        assert not [node for node in norms if node.output[0] in transposed]
        assert not [n for n in graph.node if n.op_type == "Split"]
