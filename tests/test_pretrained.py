"""The shipped trained weights: loaded by default, fusing an image with itself gives it back; checkpoints and
the l1 rule on FA-trained weights."""

import pytest
import torch

from mmif_monai.fusion.classical import max_fusion
from mmif_monai.fusion.methods import AUTOENCODED_MAX, autoencoded_max, available_methods, load_fusion_method
from mmif_monai.fusion.pipeline import fuse_batch
from mmif_monai.io.images import read_slice
from mmif_monai.io.paths import SAMPLES_DIR
from mmif_monai.networks.inference import prepare_for_inference
from mmif_monai.networks.pretrained import DEFAULT_WEIGHTS, PAPER_WEIGHTS, load_mmif_net, read_weights
from mmif_monai.networks.strategies import L1NormFusion


def test_shipped_weights_are_loaded_and_named():
    loaded = load_mmif_net()
    assert loaded.trained and loaded.weights == DEFAULT_WEIGHTS
    assert str(DEFAULT_WEIGHTS) in loaded.description
    # the fast configuration the file records; the paper's weights carry the learned LatLRR projection
    assert not loaded.network.decompose and loaded.network.stem[0].conv.out_channels == 8
    paper = load_mmif_net(PAPER_WEIGHTS).network
    assert paper.decompose and float(paper.decomposition.projection.abs().sum()) > 0


def test_fusing_an_image_with_itself_returns_it_closely():
    """max(x, x) = x is every term's target, so self-fusion returns the image up to what training left. Measured on
    these images: the shipped (fast) weights 24.5 to 31.9 dB, the paper configuration's 24.2 to 30.0 dB, brightening
    by 0.014 to 0.040 of the range on average (the fusion loss's intensity term, weight 3, trained into the whole
    network pulls the output up); 0.6.0's FA-only weights returned 42 to 47 dB. The bound, 22 dB (an RMS error of 8 %
    of the range), fails a network that no longer reproduces its input, not that known brightening."""
    net = load_mmif_net().network
    for name in ("mri_ct/MRI/37010.png", "mri_pet/MRI/30061.png", "mri_ct/CT/37016.png"):
        x = read_slice(SAMPLES_DIR / name)[None]
        with torch.no_grad():
            fused = net(x, x)
        mse = float(torch.mean((fused - x) ** 2))
        psnr = 10 * torch.log10(torch.tensor(1.0 / mse))
        print(f"self-fusion PSNR {name}: {float(psnr):.1f} dB")
        assert psnr > 22.0, f"{name}: self-fusion PSNR {float(psnr):.1f} dB"


@pytest.mark.parametrize("weights", [DEFAULT_WEIGHTS, PAPER_WEIGHTS], ids=["default", "paper"])
def test_autoencoded_max_is_the_autoencoder_on_the_max_image_whatever_fa_learned(weights):
    """The diagnostic's premise: the trained FA, given identical features, returns them, so the network fed the
    max image twice decodes its reconstruction (the sum of its LatLRR parts' reconstructions in the paper's)."""
    fuse, description = load_fusion_method(AUTOENCODED_MAX, weights)
    assert str(weights) in description and AUTOENCODED_MAX not in available_methods()
    net = load_mmif_net(weights).network
    assert any(p.abs().sum() > 0 for p in net.fusions[0].correction[-1].parameters())  # FA trained: not the l1 rule
    a = read_slice(SAMPLES_DIR / "mri_ct/MRI/37010.png")[None]
    b = read_slice(SAMPLES_DIR / "mri_ct/CT/37010.png")[None]
    # the method is the network's inference form fed the max image twice (the same arithmetic: equal to rounding)
    torch.testing.assert_close(fuse(a, b), autoencoded_max(prepare_for_inference(net))(a, b))
    # and that is the autoencoder pass: FA's weights sum to one, so fused identical features are the features up
    # to rounding. In float32 such rounding can flip a max-unpooling argmax between near-tied values and move a
    # value by a pixel, by an amount no bound holds for on every machine; in float64 the rounding (~1e-16) lies
    # far below any gap between distinct pooled values, so both paths unpool alike and agree to rounding
    net64, a64, b64 = net.double(), a.double(), b.double()
    with torch.no_grad():
        brighter = max_fusion(a64, b64)
        parts = net64.decomposition(brighter) if net64.decompose else (brighter,)  # the LatLRR parts, or the image
        expected = sum(net64.reconstruct(part) for part in parts).clamp(0, 1)
        autoencoded = autoencoded_max(net64)(a64, b64)
        fused = net64(a64, b64)
    torch.testing.assert_close(autoencoded, expected, atol=1e-9, rtol=0)
    # and it is not the fusion itself: the network fuses the sources, not their max
    assert float((fused - autoencoded).abs().mean()) > 1e-3


def test_the_pipeline_removes_the_networks_border_frame():
    """docs/method.md, "Background": on an empty pair the network writes a visible border frame and, inside, at
    most a constant far below one 8-bit grey level; the pipeline writes nothing."""
    net = load_mmif_net().network
    empty = torch.zeros(1, 1, 128, 128)
    with torch.no_grad():
        raw = net(empty, empty)
    interior = raw[..., 8:-8, 8:-8]
    assert interior.abs().max() < 0.1 / 255 and interior.max() == interior.min()
    assert raw.max() > 1 / 255
    assert fuse_batch(net, empty, empty).abs().max() == 0


def test_checkpoints_load_and_fa_weights_can_fuse_by_the_l1_rule(tmp_path):
    shipped = load_mmif_net().network
    checkpoint = tmp_path / "checkpoint_epoch=1.pt"
    torch.save({"model": shipped.state_dict(), "optimizer": {}}, checkpoint)
    assert read_weights(checkpoint).keys() == shipped.state_dict().keys()
    with_l1 = load_mmif_net(checkpoint, fa=False).network
    assert all(isinstance(f, L1NormFusion) for f in with_l1.fusions)
    assert with_l1.stem[0].conv.weight.equal(shipped.stem[0].conv.weight)
    x = read_slice(SAMPLES_DIR / "mri_ct/MRI/37010.png")[None]
    y = read_slice(SAMPLES_DIR / "mri_ct/CT/37010.png")[None]
    with torch.no_grad():
        assert not torch.allclose(with_l1(x, y), shipped(x, y), atol=1e-3)  # the learned FA moved off the l1 rule


def test_read_weights_refuses_what_is_not_a_parameter_dictionary(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        read_weights(tmp_path / "missing.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="list.pt"):
        read_weights(tmp_path / "list.pt")


def test_a_weights_file_records_its_network_configuration_and_every_loader_builds_it(tmp_path):
    from mmif_monai.networks import MMIFNet

    fast = {"decompose": False, "stem_features": 8, "features": [16, 16, 32, 32, 48]}
    net = MMIFNet(**fast)
    path = tmp_path / "fast.pt"
    torch.save({"model": net.state_dict(), "network": fast}, path)
    loaded = load_mmif_net(path).network
    assert not loaded.decompose and loaded.stem[0].conv.out_channels == 8
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), net.state_dict().values()))
    # a plain state dict (a training checkpoint, the bundle's best model) is the shipped configuration its shapes
    # fit: this one the bundle default's; one of a third configuration is the paper's, refused by name
    torch.save(net.state_dict(), tmp_path / "plain.pt")
    plain = load_mmif_net(tmp_path / "plain.pt").network
    assert not plain.decompose and plain.stem[0].conv.out_channels == 8
    torch.save(MMIFNet(stem_features=4).state_dict(), tmp_path / "narrow.pt")
    with pytest.raises(ValueError, match="not weights of this MMIF-Net configuration"):
        load_mmif_net(tmp_path / "narrow.pt")
    torch.save({"model": net.state_dict(), "network": {**fast, "depth": 5}}, tmp_path / "odd.pt")
    with pytest.raises(ValueError, match="'network' entry is not MMIF-Net arguments"):
        load_mmif_net(tmp_path / "odd.pt")
