"""eContextformer's context model: group squeezing (EGR), causality, and cached passes equal to all at once."""

import pytest
import torch

from licrt.export.econtextformer.context import SpatioChannelContext, squeeze_group, unsqueeze_group


def small(window=2, depth=4):
    torch.manual_seed(0)
    return SpatioChannelContext(channels=16, segments=4, dim=24, depth=depth, heads=3, window=window).eval()


def test_a_group_squeezes_to_half_width_and_back():
    values = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).reshape(2, 3, 4, 6)
    even, odd = squeeze_group(values, 0), squeeze_group(values, 1)
    assert even.shape == (2, 3, 4, 3)
    assert even[0, 0, 0].tolist() == [0, 2, 4] and even[0, 0, 1].tolist() == [7, 9, 11]  # (i + j) even
    assert torch.equal(unsqueeze_group(even, 0) + unsqueeze_group(odd, 1), values)


@pytest.mark.parametrize("height, width", [(4, 8), (5, 6)])  # a grid of whole windows, and one padded
def test_cached_passes_compute_what_all_passes_at_once_do(height, width):
    context = small()
    y_hat = torch.randn(2, 16, height, width)
    with torch.no_grad():
        everything = context(y_hat)
        caches, largest = None, 0.0
        for index in range(context.groups - 1):
            embedding, caches = context.step(y_hat, index, caches)
            largest = max(largest, float((embedding - everything[:, index]).abs().max()))
    assert largest < 1e-5
    assert caches[0][0].shape[2] == (context.groups - 1) * context.window**2


def test_a_group_sees_only_the_groups_coded_before_it():
    context = small(window=4)
    y_hat = torch.randn(1, 16, 4, 8)
    changed = y_hat.clone()
    channels, parity = context.group(3)
    changed[:, channels] += unsqueeze_group(torch.randn(1, 4, 4, 4), parity)  # group 3 only
    with torch.no_grad():
        before, after = context(y_hat), context(changed)
    assert torch.equal(before[:, :3], after[:, :3])  # groups 1…3 are predicted from groups 0…2
    assert not torch.allclose(before[:, 3:], after[:, 3:])


def test_gradients_stay_finite_with_padding_windows():
    context = small().train()
    y_hat = torch.randn(1, 16, 5, 6, requires_grad=True)
    context(y_hat).square().mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in context.parameters() if p.grad is not None)
