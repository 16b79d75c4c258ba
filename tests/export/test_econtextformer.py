"""The eContextformer model: its schedule, and training that predicts what the coder codes."""

import torch

from licrt.export import registry
from licrt.export.econtextformer import model as econtextformer

SMALL = {"channels": "16", "latent_channels": "16", "dim": "24", "depth": "2", "heads": "2", "window": "2"}


def small():
    torch.manual_seed(0)
    return registry.build("econtextformer", registry.make_config("econtextformer", None, SMALL)).eval()


def test_seven_context_passes_after_a_first_group_from_the_hyperprior():
    schedule = small().schedule
    assert schedule.components == 3 and len(schedule.steps) == 8
    assert [step.name for step in schedule.steps[:3]] == ["s0-anchor", "s0-nonanchor", "s1-anchor"]
    assert schedule.steps[0].reads == ("hyper",)  # SFG
    assert schedule.steps[1].reads == ("hyper", "y_hat") and schedule.steps[1].writes == ("keys1", "values1")
    assert schedule.steps[7].reads == ("hyper", "y_hat", "keys6", "values6") and schedule.steps[7].writes == ()


def test_training_rates_every_element_as_the_cached_passes_code_it(monkeypatch):
    """With rounding for noise, training's likelihood of ŷ (all groups at once) is the coder's, pass by pass."""
    model = small()
    monkeypatch.setattr(econtextformer, "add_uniform_noise", torch.round)
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        trained = float(-torch.log2(model(x)["likelihoods"]["y"]).sum())
        coded = sum(model.reference(x).bits[1:])
    assert abs(trained - coded) <= 1e-4 * coded


def test_the_paper_sized_models():
    sizes = {codec_id: registry.build(codec_id).config for codec_id in ("econtextformer", "econtextformer-hr")}
    assert (sizes["econtextformer"].latent_channels, sizes["econtextformer-hr"].latent_channels) == (192, 312)
    assert sizes["econtextformer"].dim == 8 * 192 // 4 and sizes["econtextformer"].depth == 8
