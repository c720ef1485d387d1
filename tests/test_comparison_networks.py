"""The compared networks (DenseFuse, IFCNN, NestFuse, FusionDN, FusionGAN), their losses, the adversarial trainer
and the conversion of the authors' released weights (on synthetic parameter sets named as the releases name them)."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from mmif_monai.engines.adversarial import AdversarialTrainer
from mmif_monai.engines.autoencoder import AutoencoderTask
from mmif_monai.io.paths import REPO_ROOT
from mmif_monai.losses.comparison import (
    FusionDNLoss,
    FusionGANDiscriminatorLoss,
    FusionGANLoss,
    laplacian,
    source_information_weights,
)
from mmif_monai.networks import IFCNN, DenseFuse, FusionDN, FusionGAN, FusionGANDiscriminator, NestFuse
from mmif_monai.networks.baselines.conversion import (
    convert_densefuse,
    convert_fusiondn,
    convert_fusiongan,
    convert_fusiongan_discriminator,
    convert_ifcnn,
    convert_nestfuse,
)
from mmif_monai.networks.baselines.nestfuse import nestfuse_attention_fusion
from mmif_monai.networks.strategies import l1_norm_fusion
from mmif_monai.studies.methods import load_comparison_network

NETWORKS = [DenseFuse, IFCNN, NestFuse, FusionDN, FusionGAN]
AUTOENCODERS = [DenseFuse, IFCNN, NestFuse]


def _randomise(net: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random weights and batch-norm statistics, so that equalities below cannot hold by accident (zeros)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in net.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.rand(tensor.shape, generator=generator) * 0.2 + (0.5 if tensor.dim() == 1 else -0.1))
    return net.eval()


@pytest.mark.parametrize("cls", NETWORKS, ids=lambda c: c.__name__)
def test_two_inputs_and_one_two_channel_input_agree(cls):
    net = _randomise(cls())
    a, b = torch.rand(2, 1, 64, 80), torch.rand(2, 1, 64, 80)
    with torch.no_grad():
        fused = net(a, b)
        assert torch.equal(fused, net(torch.cat([a, b], dim=1)))
    assert fused.shape == (2, 1, 64, 80)
    assert float(fused.min()) >= 0.0 and float(fused.max()) <= 1.0


@pytest.mark.parametrize("cls", NETWORKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize(
    "args",
    [
        (torch.rand(1, 3, 64, 64),),
        (torch.rand(1, 1, 64, 64), torch.rand(1, 1, 64, 72)),
        (torch.rand(1, 2, 64, 64), torch.rand(1, 2, 64, 64)),
    ],
    ids=["three-channel", "size-mismatch", "two-channel-pair"],
)
def test_bad_inputs_are_rejected(cls, args):
    with pytest.raises(ValueError, match=cls.__name__):
        cls()(*args)


def _conv_parameters(layers):
    return sum(k * k * c_in * c_out + c_out for k, c_in, c_out in layers)


def test_densefuse_has_the_papers_layers():
    # C1, DC1..DC3 (each fed all earlier maps), C2..C5: 3x3 convs with bias
    layers = [(3, 1, 16), (3, 16, 16), (3, 32, 16), (3, 48, 16), (3, 64, 64), (3, 64, 32), (3, 32, 16), (3, 16, 1)]
    net = DenseFuse()
    assert sum(p.numel() for p in net.parameters()) == _conv_parameters(layers)
    assert net.encode(torch.rand(1, 1, 32, 32)).shape == (1, 64, 32, 32)


def test_densefuse_fusion_rules_fuse_the_encoded_features():
    net = _randomise(DenseFuse("l1"))
    a, b = torch.rand(1, 1, 48, 48), torch.rand(1, 1, 48, 48)
    with torch.no_grad():
        fa, fb = net.encode(a), net.encode(b)
        assert torch.allclose(net(a, b), net.decode(l1_norm_fusion(fa, fb)).clamp(0, 1), atol=1e-6)
        net.fusion_rule = "addition"
        assert torch.allclose(net(a, b), net.decode(fa + fb).clamp(0, 1), atol=1e-6)
    with pytest.raises(ValueError, match="fusion_rule"):
        DenseFuse("mean")


@pytest.mark.parametrize("cls", AUTOENCODERS, ids=lambda c: c.__name__)
def test_fusing_an_image_with_itself_is_its_reconstruction(cls):
    # every rule (l1, max, attention) returns equal feature maps unchanged: the autoencoder task is the fusion path
    net = _randomise(cls())
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        assert torch.allclose(net(x, x), net.reconstruct(x).clamp(0, 1), atol=1e-4)
        assert torch.equal(AutoencoderTask(net)(x), net.reconstruct(x))


def test_autoencoder_task_needs_a_reconstruct_method():
    with pytest.raises(ValueError, match="reconstruct"):
        AutoencoderTask(FusionDN())


def test_nestfuse_rule_prefers_the_more_active_source():
    quiet, active = torch.full((1, 4, 8, 8), 0.1), torch.full((1, 4, 8, 8), 0.1)
    active[..., :4] = 3.0  # left half strongly active in the second map
    fused = nestfuse_attention_fusion(quiet, active)
    assert torch.allclose(nestfuse_attention_fusion(quiet, quiet), quiet, atol=1e-4)
    # more weight on the active source where it is active: the fused map lies closer to it than the mean
    assert float(fused[..., :4].mean()) > float(((quiet + active) / 2)[..., :4].mean())


def test_ifcnn_schemes_and_frozen_first_layer():
    assert not IFCNN(freeze_conv1=True).conv1.weight.requires_grad
    assert IFCNN().conv1.weight.requires_grad
    net = _randomise(IFCNN("max"))
    a, b = torch.rand(1, 1, 40, 40), torch.rand(1, 1, 40, 40)
    with torch.no_grad():
        fused_max = net(a, b)
        net.fuse_scheme = "mean"
        assert not torch.equal(fused_max, net(a, b))
    with pytest.raises(ValueError, match="fuse_scheme"):
        IFCNN("min")


def test_fusiongan_keeps_odd_sizes_and_discriminator_checks_its_size():
    with torch.no_grad():
        assert FusionGAN().eval()(torch.rand(1, 1, 67, 91), torch.rand(1, 1, 67, 91)).shape == (1, 1, 67, 91)
    disc = FusionGANDiscriminator(64)
    assert disc(torch.rand(3, 1, 64, 64)).shape == (3, 1)
    with pytest.raises(ValueError, match="64x64"):
        disc(torch.rand(1, 1, 80, 80))
    with pytest.raises(ValueError, match="input_size"):
        FusionGANDiscriminator(16)


# --- losses -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("neighbours", [4, 8])
def test_laplacian_vanishes_on_planes_inside_the_image(neighbours):
    ramp = torch.linspace(0, 1, 20).view(1, 1, 1, 20).expand(1, 1, 16, 20) + torch.linspace(0, 0.5, 16).view(
        1, 1, 16, 1
    )
    assert torch.allclose(laplacian(ramp, neighbours)[..., 1:-1, 1:-1], torch.zeros(1, 1, 14, 18), atol=1e-5)
    with pytest.raises(ValueError):
        laplacian(ramp, 6)


def test_information_weights_favour_the_source_with_more_entropy():
    rich = torch.rand(2, 1, 32, 32)
    flat = torch.full((2, 1, 32, 32), 0.5)
    weights = source_information_weights(torch.cat([flat, rich], dim=1), entropy_weight=12, temperature=13)
    assert torch.allclose(weights.sum(dim=1), torch.ones(2))
    assert bool((weights[:, 1] > weights[:, 0]).all())


def test_fusiondn_loss_is_lower_for_the_more_informative_source():
    texture = torch.rand(2, 1, 32, 32)
    smooth = torch.full((2, 1, 32, 32), 0.3)
    sources = torch.cat([smooth, texture], dim=1)
    loss = FusionDNLoss()
    assert float(loss(texture, sources)) < float(loss(smooth, sources))
    fused = torch.rand(2, 1, 32, 32, requires_grad=True)
    loss(fused, sources).backward()
    assert fused.grad is not None and float(fused.grad.abs().sum()) > 0
    with pytest.raises(ValueError):
        loss(fused, texture)


def test_fusiongan_content_loss_follows_the_release_formula():
    anatomical, functional, fused = torch.rand(3, 2, 1, 24, 24)
    sources = torch.cat([anatomical, functional], dim=1)
    loss = FusionGANLoss(discriminator=lambda image: torch.ones(image.shape[0], 1), gradient_weight=5.0)

    def scaled(x):
        return x * 2 - 1

    expected = torch.mean((scaled(fused) - scaled(functional)) ** 2) + 5.0 * torch.mean(
        (laplacian(scaled(fused)) - laplacian(scaled(anatomical))) ** 2
    )
    assert torch.allclose(loss.content(fused, sources), expected)
    # both terms vanish when the fused image is both the intensity and the detail source
    assert float(loss.content(functional, torch.cat([functional, functional], dim=1))) == 0.0


def test_discriminator_loss_rewards_telling_real_from_fused():
    torch.manual_seed(0)
    loss = FusionGANDiscriminatorLoss()
    good = loss(torch.full((64, 1), 0.15), torch.full((64, 1), 0.95))
    bad = loss(torch.full((64, 1), 0.95), torch.full((64, 1), 0.15))
    assert float(good) < float(bad)


def test_adversarial_trainer_updates_generator_and_discriminator():
    torch.manual_seed(0)
    generator, disc = FusionGAN(), FusionGANDiscriminator(64)
    data = [{"image": torch.rand(2, 64, 64), "label": torch.rand(2, 64, 64)} for _ in range(4)]
    for item in data:
        item["label"] = item["image"]
    before_g = [p.detach().clone() for p in generator.parameters()]
    before_d = [p.detach().clone() for p in disc.parameters()]
    trainer = AdversarialTrainer(
        discriminator=disc,
        d_optimizer=torch.optim.Adam(disc.parameters(), 1e-3),
        d_loss_function=FusionGANDiscriminatorLoss(),
        device=torch.device("cpu"),
        max_epochs=1,
        train_data_loader=DataLoader(data, batch_size=2),
        network=generator,
        optimizer=torch.optim.Adam(generator.parameters(), 1e-3),
        loss_function=FusionGANLoss(disc),
        epoch_length=2,
    )
    trainer.run()
    assert trainer.state.iteration == 2
    assert any(not torch.equal(a, b) for a, b in zip(before_g, generator.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(before_d, disc.parameters()))
    with pytest.raises(ValueError, match="d_train_steps"):
        AdversarialTrainer(disc, trainer.d_optimizer, FusionGANDiscriminatorLoss(), d_train_steps=0)


# --- the authors' weights ---------------------------------------------------------------------------------


def _random(shape, seed):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


def _densefuse_release():
    """DenseFuse_net's state dict: ConvLayer modules hold ``conv2d``; dense convs sit in DB1.denseblock."""
    shapes = {"conv1": (16, 1), "conv2": (64, 64), "conv3": (32, 64), "conv4": (16, 32), "conv5": (1, 16)}
    keys = {f"{name}.conv2d": shape for name, shape in shapes.items()}
    keys.update({f"DB1.denseblock.{i}.dense_conv.conv2d": (16, 16 * (i + 1)) for i in range(3)})
    state = {}
    for seed, (key, (c_out, c_in)) in enumerate(keys.items()):
        state[f"{key}.weight"] = _random((c_out, c_in, 3, 3), seed)
        state[f"{key}.bias"] = _random((c_out,), seed + 100)
    return state


def test_densefuse_release_keys_load_in_the_right_places():
    state = _densefuse_release()
    net = DenseFuse()
    net.load_state_dict(convert_densefuse(state))
    assert torch.equal(net.dense.layers1[1].conv.weight, state["DB1.denseblock.1.dense_conv.conv2d.weight"])
    # the release works on grey levels 0..255: the scale moves into the first and the last convolution
    torch.testing.assert_close(net.conv1[1].conv.weight, state["conv1.conv2d.weight"] * 255)
    torch.testing.assert_close(net.decoder[3][1].conv.bias, state["conv5.conv2d.bias"] / 255)
    with pytest.raises(ValueError, match="does not know"):
        convert_densefuse({**state, "extra.weight": torch.zeros(1)})


# the peers' released checkpoints beside the repository (../shared/weights), never inside it
RELEASED = REPO_ROOT.parent / "shared" / "weights"


@pytest.mark.skipif(not (RELEASED / "densefuse_gray.model").is_file(), reason="the authors' weights are not here")
@pytest.mark.parametrize(("name", "file"), [("densefuse", "densefuse_gray.model"), ("ifcnn", "IFCNN-MAX.pth")])
def test_the_authors_released_weights_reconstruct_a_sample_image(name, file):
    from mmif_monai.io.images import read_slice
    from mmif_monai.io.paths import SAMPLES_DIR

    net = load_comparison_network(name, RELEASED / file)
    image = read_slice(SAMPLES_DIR / "mri_ct" / "MRI" / "37010.png")[None]
    with torch.no_grad():
        # fusing an image with itself returns it through the autoencoder for both rules here
        fused = net(image, image)
    # a converted release must keep the image (an intensity-scale slip gave 0.02 for DenseFuse)
    assert float((fused - image).abs().mean()) < 0.005


def _nestfuse_release(deep_supervision: bool):
    """NestFuse_autoencoder's state dict, nb_filter = [64, 112, 160, 208]: light blocks of a 3x3 conv to half
    the input channels and a 1x1 conv."""
    f = [64, 112, 160, 208]
    blocks = {f"DB{i + 1}_0": (c_in, f[i]) for i, c_in in enumerate([16, *f[:3]])}
    for column in range(1, 4):
        for level in range(4 - column):
            blocks[f"DB{level + 1}_{column}"] = (f[level] * column + f[level + 1], f[level])
    state = {"conv0.conv2d.weight": _random((16, 1, 1, 1), 0), "conv0.conv2d.bias": _random((16,), 1)}
    for seed, (name, (c_in, c_out)) in enumerate(blocks.items()):
        state[f"{name}.denseblock.0.conv2d.weight"] = _random((c_in // 2, c_in, 3, 3), seed)
        state[f"{name}.denseblock.0.conv2d.bias"] = _random((c_in // 2,), seed)
        state[f"{name}.denseblock.1.conv2d.weight"] = _random((c_out, c_in // 2, 1, 1), seed)
        state[f"{name}.denseblock.1.conv2d.bias"] = _random((c_out,), seed)
    heads = ["conv1", "conv2", "conv3"] if deep_supervision else ["conv_out"]
    for seed, head in enumerate(heads):
        state[f"{head}.conv2d.weight"] = _random((1, 64, 1, 1), 50 + seed)
        state[f"{head}.conv2d.bias"] = _random((1,), 60 + seed)
    return state


@pytest.mark.parametrize("deep_supervision", [False, True])
def test_nestfuse_release_keys_load(deep_supervision):
    state = _nestfuse_release(deep_supervision)
    net = NestFuse()
    net.load_state_dict(convert_nestfuse(state))
    assert torch.equal(net.nest["1_2"][0][1].conv.weight, state["DB2_2.denseblock.0.conv2d.weight"])
    head = "conv3" if deep_supervision else "conv_out"
    assert torch.equal(net.output[1].conv.weight, state[f"{head}.conv2d.weight"])


def test_ifcnn_release_keys_load():
    state = {
        "conv1.weight": _random((64, 3, 7, 7), 0),
        "conv4.weight": _random((3, 64, 1, 1), 1),
        "conv4.bias": _random((3,), 2),
    }
    for seed, block in enumerate(["conv2", "conv3"]):
        state[f"{block}.conv.weight"] = _random((64, 64, 3, 3), 10 + seed)
        for stat in ("weight", "bias", "running_mean", "running_var"):
            state[f"{block}.bn.{stat}"] = _random((64,), 20 + seed) + 0.5
    net = IFCNN()
    net.load_state_dict(convert_ifcnn(state))
    assert torch.equal(net.conv3[1].adn.N.running_var, state["conv3.bn.running_var"])


def _fusiondn_release():
    """FusionDN's TensorFlow variables (kernels H, W, in, out) with an optimizer slot and the decoder's b0 norm."""
    variables = {"Generator/encoder/kernel": np.random.rand(3, 3, 2, 48), "Generator/encoder/bias": np.random.rand(48)}
    bn = ("gamma", "beta", "moving_mean", "moving_variance")
    variables.update({f"Generator/encoder/conv1/batch_normalization/{v}": np.random.rand(48) + 0.5 for v in bn})
    for k in range(1, 5):
        scope = f"Generator/encoder/res_block_conv{k}"
        variables[f"{scope}/kernel1"] = np.random.rand(3, 3, 48 * k, 48)
        variables[f"{scope}/kernel2"] = np.random.rand(3, 3, 48, 48)
        for j in (1, 2):
            variables[f"{scope}/bias{j}"] = np.random.rand(48)
            variables.update({f"{scope}/b{j}/batch_normalization/{v}": np.random.rand(48) + 0.5 for v in bn})
    for i, (c_in, c_out) in enumerate([(240, 240), (240, 128), (128, 64), (64, 1)]):
        variables[f"Generator/decoder/conv2_{i + 1}/kernel"] = np.random.rand(3, 3, c_in, c_out)
        variables[f"Generator/decoder/conv2_{i + 1}/bias"] = np.random.rand(c_out)
    for i, c in [(0, 240), (1, 128), (2, 64)]:
        variables.update({f"Generator/decoder/b{i}/batch_normalization/{v}": np.random.rand(c) + 0.5 for v in bn})
    variables["Generator/decoder/conv2_1/kernel/Adam"] = np.zeros((3, 3, 240, 240))
    variables["beta1_power"] = np.ones(())
    return variables


def test_fusiondn_release_variables_load_transposed():
    variables = _fusiondn_release()
    net = FusionDN()
    net.load_state_dict(convert_fusiondn(variables))
    tf_kernel = variables["Generator/encoder/res_block_conv3/kernel1"]
    assert np.allclose(net.dense.layers2[0][1].conv.weight.detach().numpy(), tf_kernel.transpose(3, 2, 0, 1))
    assert np.allclose(
        net.decoder[1][1].adn.N.running_var.numpy(),
        variables["Generator/decoder/b1/batch_normalization/moving_variance"],
    )
    with pytest.raises(ValueError, match="does not know"):
        convert_fusiondn({**variables, "Generator/encoder/mystery": np.zeros(3)})
    with pytest.raises(ValueError, match="no variables"):
        convert_fusiondn({"other/kernel": np.zeros(3)})


def _fusiongan_release(input_size: int):
    """FusionGAN's generator and discriminator variables, with spectral-norm vectors ``u``."""
    variables = {}
    for i, (k, c_in, c_out) in enumerate([(5, 2, 256), (5, 256, 128), (3, 128, 64), (3, 64, 32), (1, 32, 1)], start=1):
        variables[f"fusion_model/layer{i}/w{i}"] = np.random.randn(k, k, c_in, c_out) * 0.05
        variables[f"fusion_model/layer{i}/b{i}"] = np.random.randn(c_out)
        variables[f"fusion_model/layer{i}/u"] = np.random.randn(1, c_out)
        if i < 5:
            for v in ("beta", "gamma", "moving_mean", "moving_variance"):
                variables[f"fusion_model/layer{i}/BatchNorm/{v}"] = np.random.rand(c_out) + 0.5
    side = input_size
    for i, (c_in, c_out) in enumerate([(1, 32), (32, 64), (64, 128), (128, 256)], start=1):
        side = (side - 3) // 2 + 1
        variables[f"discriminator/layer_{i}/w_{i}"] = np.random.randn(3, 3, c_in, c_out) * 0.05
        variables[f"discriminator/layer_{i}/b_{i}"] = np.random.randn(c_out)
        if i > 1:
            for v in ("beta", "gamma", "moving_mean", "moving_variance"):
                variables[f"discriminator/layer_{i}/BatchNorm/{v}"] = np.random.rand(c_out) + 0.5
    variables["discriminator/line_5/w_5"] = np.random.randn(side * side * 256, 1) * 0.01
    variables["discriminator/line_5/b_5"] = np.random.randn(1)
    return variables


def test_fusiongan_release_variables_load_with_and_without_spectral_norm():
    variables = _fusiongan_release(64)
    net = FusionGAN()
    net.load_state_dict(convert_fusiongan(variables, spectral_norm=False))
    assert np.allclose(
        net.layers[1].conv.weight.detach().numpy(), variables["fusion_model/layer2/w2"].transpose(3, 2, 0, 1)
    )
    normalised = convert_fusiongan(variables)
    for key in ("layers.0.conv.weight", "layers.4.weight"):
        kernel = normalised[key].double()
        assert float(torch.linalg.matrix_norm(kernel.reshape(kernel.shape[0], -1), ord=2)) == pytest.approx(
            1.0, abs=1e-5
        )


def test_fusiongan_discriminator_reorders_tensorflows_flattening():
    variables = _fusiongan_release(64)
    disc = FusionGANDiscriminator(64).eval()
    disc.load_state_dict(convert_fusiongan_discriminator(variables, spectral_norm=False))
    features = torch.rand(2, 256, 3, 3)
    # TensorFlow's linear layer reads the (N, H, W, C) map flattened in that order
    tf_score = (
        features.permute(0, 2, 3, 1).reshape(2, -1) @ torch.as_tensor(variables["discriminator/line_5/w_5"]).float()
    )
    assert torch.allclose(
        disc.score(features.flatten(1)), tf_score + float(variables["discriminator/line_5/b_5"][0]), atol=1e-4
    )


def test_loading_weights_files_of_both_layouts(tmp_path):
    own = _randomise(DenseFuse()).state_dict()
    torch.save({"model": own, "optimizer": {}}, tmp_path / "checkpoint.pt")
    torch.save(_densefuse_release(), tmp_path / "release.model")
    np.savez(tmp_path / "fusiondn.npz", **_fusiondn_release())
    loaded = load_comparison_network("densefuse", tmp_path / "checkpoint.pt")
    assert torch.equal(loaded.conv1[1].conv.weight, own["conv1.1.conv.weight"]) and not loaded.training
    load_comparison_network("densefuse", tmp_path / "release.model")
    load_comparison_network("fusiondn", tmp_path / "fusiondn.npz")
    with pytest.raises(ValueError, match="release.model"):
        load_comparison_network("ifcnn", tmp_path / "release.model")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_comparison_network("densefuse", tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="unknown comparison method"):
        load_comparison_network("u2fusion", tmp_path / "checkpoint.pt")
