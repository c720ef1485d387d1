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


def test_every_entry_point_fuses_with_the_inference_form_and_it_equals_the_plain_network():
    # the shipped weights on a real sample pair: the form `mmif fuse`, the volume job and the Deploy app run
    from mmif_monai.fusion.methods import load_fusion_method
    from mmif_monai.io.images import read_slice
    from mmif_monai.io.paths import SAMPLES_DIR
    from mmif_monai.networks.inference import InferenceNetwork, prepare_for_inference
    from mmif_monai.networks.pretrained import load_mmif_net

    fuse, _ = load_fusion_method("mmif-net")
    plain = load_mmif_net().network
    assert isinstance(fuse, InferenceNetwork) and fuse.source_parameters == sum(p.numel() for p in plain.parameters())
    anatomical = read_slice(SAMPLES_DIR / "mri_ct" / "MRI" / "37010.png")[None]
    functional = read_slice(SAMPLES_DIR / "mri_ct" / "CT" / "37010.png")[None]
    got = fuse(anatomical, functional)
    assert not got.requires_grad and not any(p.requires_grad for p in fuse.parameters())
    # folding batch norm is exact algebra, so the forms differ by rounding only. In float32 that rounding can flip
    # a 2x2 max-unpooling argmax between near-tied values (test above) and move a value to the neighbouring pixel,
    # by an amount that differs from machine to machine; in float64 the rounding (~1e-16) lies far below any gap
    # between distinct pooled values, so both forms take the same unpooling path and agree to rounding
    plain64 = plain.double()
    with torch.no_grad():
        expected = plain64(anatomical.double(), functional.double())
    got64 = prepare_for_inference(plain64)(anatomical.double(), functional.double())
    torch.testing.assert_close(got64, expected, atol=1e-9, rtol=0)
    with pytest.raises(RuntimeError, match="cannot train"):
        fuse.train()


def test_the_bundle_inferer_prepares_an_eval_network_once_and_again_after_its_weights_change():
    from mmif_monai.fusion.inferer import FusionInferer
    from mmif_monai.fusion.pipeline import fuse_batch
    from mmif_monai.io.images import read_slice
    from mmif_monai.io.paths import SAMPLES_DIR
    from mmif_monai.networks.inference import prepare_for_inference
    from mmif_monai.networks.pretrained import load_mmif_net

    net = load_mmif_net().network.eval()
    pair = SAMPLES_DIR / "mri_ct"
    inputs = torch.cat([read_slice(pair / "MRI" / "37010.png"), read_slice(pair / "CT" / "37010.png")])[None]
    inferer = FusionInferer()
    first = inferer(inputs, net)
    prepared = inferer._prepared
    torch.testing.assert_close(inferer(inputs, net), first)
    assert inferer._prepared is prepared  # the same weights: not prepared again
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(1.1)  # as an optimiser step or a checkpoint load changes them in place
    got = inferer(inputs, net)
    assert inferer._prepared is not prepared
    # the new weights' inference form: the same arithmetic as a fresh preparation of them, so equal to float
    # rounding (compared with the unfolded network, max-unpooling's near-tie flips would move whole pixels by an
    # amount no bound can promise across machines; that comparison is the test above, at its own tolerance)
    torch.testing.assert_close(got, fuse_batch(prepare_for_inference(net), inputs[:, :1], inputs[:, 1:]))
    assert float((got - first).abs().max()) > 10 / 255
    assert inferer._inference_form(net.train()) is net  # in training mode the network runs as it is
