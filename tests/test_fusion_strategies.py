import torch

from mmif_monai.networks.strategies import L1NormFusion, LearnedFusion, l1_activity, l1_norm_fusion, l1_norm_weights


def test_l1_rule_returns_equal_maps_unchanged():
    x = torch.randn(2, 8, 10, 12)
    assert torch.allclose(l1_norm_fusion(x, x.clone()), x, atol=1e-7)


def test_l1_rule_picks_the_only_active_source():
    x = torch.rand(1, 4, 8, 8) + 0.1
    assert torch.allclose(l1_norm_fusion(x, torch.zeros_like(x)), x)
    assert torch.allclose(l1_norm_fusion(torch.zeros_like(x), x), x)


def test_l1_weights_are_normalised_and_follow_activity():
    a = torch.full((1, 2, 6, 6), 3.0)
    b = torch.full((1, 2, 6, 6), 1.0)
    w = l1_norm_weights(a, b)
    assert torch.allclose(w.sum(dim=1), torch.ones(1, 6, 6))
    assert torch.allclose(w[:, 0], torch.full((1, 6, 6), 0.75))


def test_silent_sources_get_equal_weights():
    z = torch.zeros(1, 3, 5, 5)
    assert torch.allclose(l1_norm_weights(z, z), torch.full((1, 2, 5, 5), 0.5))


def test_block_average_of_activity():
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 2, 2] = 9.0
    act = l1_activity(x, radius=1)
    assert torch.isclose(act[0, 0, 2, 2], torch.tensor(1.0))  # 9 spread over a 3x3 block
    assert torch.isclose(act[0, 0, 0, 0], torch.tensor(0.0))


def test_learned_fusion_starts_as_the_l1_rule():
    torch.manual_seed(0)
    fa = LearnedFusion(channels=4).eval()
    torch.nn.init.zeros_(fa.correction[-1].weight)
    torch.nn.init.zeros_(fa.correction[-1].bias)
    a, b = torch.rand(2, 4, 9, 9), torch.rand(2, 4, 9, 9)
    with torch.no_grad():
        assert torch.allclose(fa(a, b), L1NormFusion()(a, b), atol=1e-5)


def test_learned_fusion_is_trainable():
    fa = LearnedFusion(channels=4)
    a, b = torch.rand(2, 4, 9, 9), torch.rand(2, 4, 9, 9)
    (fa(a, b) - b).pow(2).mean().backward()
    assert fa.correction[-1].weight.grad is not None and fa.correction[-1].weight.grad.abs().sum() > 0
