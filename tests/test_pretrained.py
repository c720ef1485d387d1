"""The shipped trained weights: loaded by default, and fusing an image with itself gives it back."""

import torch

from mmif_monai.io.images import read_slice
from mmif_monai.fusion.samples import SAMPLES_DIR
from mmif_monai.networks.pretrained import DEFAULT_WEIGHTS, load_mmif_net


def test_shipped_weights_are_loaded_and_named():
    loaded = load_mmif_net()
    assert loaded.trained and loaded.weights == DEFAULT_WEIGHTS
    assert str(DEFAULT_WEIGHTS) in loaded.description
    # the learned LatLRR projection travels inside the weights
    assert float(loaded.network.decomposition.projection.abs().sum()) > 0


def test_fusing_an_image_with_itself_returns_it_closely():
    net = load_mmif_net().network
    for name in ("mri_ct/MRI/37010.png", "mri_pet/MRI/30061.png", "mri_ct/CT/37016.png"):
        x = read_slice(SAMPLES_DIR / name)[None]
        with torch.no_grad():
            fused = net(x, x)
        mse = float(torch.mean((fused - x) ** 2))
        psnr = 10 * torch.log10(torch.tensor(1.0 / mse))
        print(f"self-fusion PSNR {name}: {float(psnr):.1f} dB")
        assert psnr > 25.0, f"{name}: self-fusion PSNR {float(psnr):.1f} dB"
