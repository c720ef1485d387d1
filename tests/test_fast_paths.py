"""The inference speed-ups compute the same function: batch-norm folding, channels-last, FFT LatLRR, the
multi-scale layer's weighting (docs/benchmarks.md, "What moved the numbers")."""

import pytest
import torch
from torch import nn

from mmif_monai.decomposition import LatLRRDecomposition
from mmif_monai.networks import MMIFNet, MultiScaleLayer
from mmif_monai.networks.blocks import fold_batch_norm
from oracles import decompose_explicit


def _trained_looking(net: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial batch-norm statistics and affine terms, so folding has something to fold."""
    generator = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=generator) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=generator) * 0.1)
    return net.eval()


def test_folded_copy_computes_the_same_and_leaves_the_network_alone():
    projection = torch.randn(256, 256, generator=torch.Generator().manual_seed(0)) * 0.01
    net = _trained_looking(MMIFNet(projection=projection))
    keys = list(net.state_dict())
    folded = fold_batch_norm(net)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert list(net.state_dict()) == keys and any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    image = torch.rand(2, 1, 64, 80, generator=torch.Generator().manual_seed(1))
    channels_last = fold_batch_norm(net).to(memory_format=torch.channels_last)
    with torch.no_grad():
        # the encoder is continuous in its weights: every level agrees to float rounding
        expected_feats = net.encode(image)
        for got, expected in zip(folded.encode(image), expected_feats):
            torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
        # given the same features, the unpooling indices are the same, so the decoders agree to rounding too
        expected = net.decode(expected_feats)
        last_feats = [f.contiguous(memory_format=torch.channels_last) for f in expected_feats]
        torch.testing.assert_close(folded.decode(expected_feats), expected, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(channels_last.decode(last_feats), expected, atol=1e-5, rtol=1e-4)
        # end to end, a rounding-level near-tie in a 2x2 window may flip an argmax to the neighbour,
        # so the reconstructions agree almost everywhere rather than everywhere
        expected = net.reconstruct(image)
        image_last = image.contiguous(memory_format=torch.channels_last)
        for got in (folded.reconstruct(image), channels_last.reconstruct(image_last)):
            difference = (got - expected).abs()
            assert float(difference.mean()) < 1e-4 and float((difference > 1e-4).float().mean()) < 0.1


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_folded_copy_is_scriptable():
    folded = fold_batch_norm(_trained_looking(MMIFNet()))
    x = torch.rand(1, 2, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.script(folded)(x), folded(x), atol=1e-6, rtol=0)


def test_multi_scale_weighting_equals_the_stacked_formula():
    layer = _trained_looking(MultiScaleLayer(16, 8))
    x = torch.rand(2, 16, 12, 10)
    with torch.no_grad():
        squeezed = layer.squeeze(x)
        feats = torch.stack([branch(squeezed) for branch in layer.branches], dim=1)  # (N, B, C, H, W)
        logits = layer.attention(feats.sum(dim=1).mean(dim=(2, 3))).view(2, 3, 8, 1, 1)
        expected = (feats * torch.softmax(logits, dim=1)).sum(dim=1)
        torch.testing.assert_close(layer(x), expected, atol=1e-6, rtol=1e-6)


def test_fft_decomposition_of_half_precision_is_computed_in_float32():
    projection = torch.randn(256, 256, generator=torch.Generator().manual_seed(1)) / 16
    x = torch.rand(1, 1, 40, 36)
    low_rank, salient = LatLRRDecomposition(projection)(x.bfloat16())
    assert low_rank.dtype == salient.dtype == torch.bfloat16
    # bfloat16 keeps 8 bits of mantissa: the error is the rounding of input and output, not of the FFT
    torch.testing.assert_close(salient.float(), decompose_explicit(x, projection)[1], atol=0.05, rtol=0.02)
