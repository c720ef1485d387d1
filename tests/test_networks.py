import pytest
import torch

from mmif_monai.networks import BottleneckResidual, DenseBlock, MMIFNet, MultiScaleLayer, NonLocalSelfAttention

SWITCHES = [{}, {"msl": False}, {"sa": False}, {"fa": False}, {"decompose": False}]


def _projection(seed: int = 0) -> torch.Tensor:
    # a small random projection stands in for the learned one: the tests check mechanics, not quality
    return torch.randn(256, 256, generator=torch.Generator().manual_seed(seed)) * 0.01


@pytest.mark.parametrize("size", [(64, 64), (100, 130), (256, 256)])
def test_output_shape_for_several_sizes(size):
    net = MMIFNet(projection=_projection()).eval()
    a, b = torch.rand(2, 1, *size), torch.rand(2, 1, *size)
    with torch.no_grad():
        fused = net(a, b)
    assert fused.shape == (2, 1, *size)
    assert float(fused.min()) >= 0.0 and float(fused.max()) <= 1.0


@pytest.mark.parametrize("switches", SWITCHES, ids=[str(s) or "paper" for s in SWITCHES])
def test_each_switch_runs_and_changes_the_network(switches):
    net = MMIFNet(projection=_projection(), **switches).eval()
    with torch.no_grad():
        fused = net(torch.rand(1, 1, 80, 96), torch.rand(1, 1, 80, 96))
    assert fused.shape == (1, 1, 80, 96)
    paper = sum(p.numel() for p in MMIFNet().parameters())
    count = sum(p.numel() for p in net.parameters())
    if switches.get("msl") is False or switches.get("sa") is False or switches.get("fa") is False:
        assert count < paper
    else:
        assert count == paper


def test_parameter_count_is_near_the_papers_budget():
    count = sum(p.numel() for p in MMIFNet().parameters())
    print(f"MMIF-Net parameters: {count}")
    # the paper's Table 5 reports 0.16 M with bottleneck residual blocks and 0.35 M with 3x3 ones
    assert 0.10e6 < count < 0.20e6


def test_single_two_channel_input_equals_two_inputs():
    net = MMIFNet(projection=_projection()).eval()
    a, b = torch.rand(2, 1, 64, 72), torch.rand(2, 1, 64, 72)
    with torch.no_grad():
        assert torch.equal(net(torch.cat([a, b], dim=1)), net(a, b))


def test_mismatched_shapes_are_rejected():
    with pytest.raises(ValueError):
        MMIFNet()(torch.rand(1, 1, 64, 64), torch.rand(1, 1, 64, 80))


def test_a_slice_smaller_than_64_px_fuses_at_its_own_size():
    net = MMIFNet(projection=_projection()).eval()
    with torch.no_grad():
        assert net(torch.rand(1, 1, 32, 64), torch.rand(1, 1, 32, 64)).shape == (1, 1, 32, 64)


def test_three_channel_single_input_is_rejected():
    with pytest.raises(ValueError, match="N, 2, H, W"):
        MMIFNet()(torch.rand(1, 3, 64, 64))


def test_reconstruct_keeps_shape_and_is_differentiable():
    net = MMIFNet()
    x = torch.rand(2, 1, 72, 64)
    y = net.reconstruct(x)
    assert y.shape == x.shape
    y.mean().backward()
    assert all(p.grad is not None for p in net.stem.parameters())


def test_init_is_truncated_normal_with_zero_bias():
    net = MMIFNet()
    conv = net.stem[0].conv
    weight = conv.weight.detach()  # float() of a tensor that requires grad warns
    assert float(weight.abs().max()) <= 0.02 + 1e-7
    assert float(weight.std()) < 0.02
    assert torch.count_nonzero(conv.bias) == 0


def test_torchscript_matches_eager():
    net = MMIFNet(projection=_projection()).eval()
    scripted = torch.jit.script(net)
    x = torch.rand(1, 2, 96, 80)
    with torch.no_grad():
        assert torch.allclose(scripted(x), net(x), atol=1e-6)


def test_projection_is_part_of_the_state_dict():
    projection = _projection(3)
    state = MMIFNet(projection=projection).state_dict()
    restored = MMIFNet()
    restored.load_state_dict(state)
    assert torch.equal(restored.decomposition.projection, projection)


def test_blocks_shapes():
    x = torch.rand(2, 16, 20, 24)
    assert DenseBlock(16, 16, 3)(x).shape == (2, 64, 20, 24)
    assert MultiScaleLayer(16, 32)(x).shape == (2, 32, 20, 24)
    assert BottleneckResidual(16)(x).shape == x.shape
    assert NonLocalSelfAttention(16)(x).shape == x.shape


def test_non_local_attention_mixes_information_across_positions():
    torch.manual_seed(0)
    block = NonLocalSelfAttention(8).eval()
    for p in block.parameters():
        torch.nn.init.normal_(p, std=0.5)
    x = torch.rand(1, 8, 6, 6)
    y = x.clone()
    y[..., 0, 0] += 1.0  # change one position only
    with torch.no_grad():
        diff = (block(y) - block(x)).abs()
    assert float(diff[..., 5, 5].max()) > 0  # a far position responds: attention is global


def test_unpooling_places_each_value_where_the_reference_window_peaks_as_max_unpooling_does():
    from mmif_monai.networks.blocks import unpool_at_peaks

    generator = torch.Generator().manual_seed(0)
    reference = torch.rand(2, 3, 8, 10, generator=generator)  # continuous values: no window ties
    x = torch.rand(2, 3, 4, 5, generator=generator) + 1  # non-zero, so every placed value shows
    _, indices = torch.nn.functional.max_pool2d_with_indices(reference, 2)
    expected = torch.nn.functional.max_unpool2d(x, indices, 2, output_size=reference.shape[-2:])
    assert torch.equal(unpool_at_peaks(x, reference), expected)


def test_unpooling_settles_ties_on_the_first_position_in_row_order_in_any_memory_format():
    """Tied and rounding-level near-tied windows, as flat background and ReLU zeros give: one answer, the first tied
    position in row order, whatever the memory layout or a perturbation far below the tolerance."""
    from mmif_monai.networks.blocks import unpool_at_peaks

    reference = torch.zeros(1, 2, 4, 4)
    reference[0, 1, 2:, 2:] = torch.tensor([[0.5, 0.5 + 1e-7], [0.1, 0.5]])  # near tie between the top two
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[5.0, 6.0], [7.0, 8.0]]]])
    got = unpool_at_peaks(x, reference)
    expected = torch.zeros(1, 2, 4, 4)
    expected[0, 0, ::2, ::2] = x[0, 0]  # all-zero windows: the top-left position
    expected[0, 1, ::2, ::2] = x[0, 1]
    expected[0, 1, 2, 2] = 8.0  # the near tie: its first position, not the larger value's
    assert torch.equal(got, expected)
    last = unpool_at_peaks(
        x.contiguous(memory_format=torch.channels_last), reference.to(memory_format=torch.channels_last)
    )
    assert torch.equal(last, expected)
