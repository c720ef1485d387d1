"""Converting the comparison methods' released weights to this package's state-dict keys.

Each converter takes the authors' parameters by *their* names and returns a state dict that
``load_state_dict(strict=True)`` accepts for the matching class here. The key tables are in
docs/comparison.md ("Loading the authors' weights"). They were written from the released model code
(the names its modules and variables get), not from downloaded checkpoint files, which cannot be fetched here.

- PyTorch releases (DenseFuse's PyTorch port by its first author, NestFuse, IFCNN): the ``state_dict`` of
  the released model object, e.g. ``torch.load("IFCNN-MAX.pth")``; keys are renamed, values kept.
- TensorFlow releases (FusionDN, FusionGAN): a mapping ``variable name -> array``, e.g. exported with
  ``tf.train.load_checkpoint(path)`` and ``reader.get_tensor(name)`` for every name, saved with
  ``numpy.savez``. Kernels are transposed from TensorFlow's (H, W, in, out) to (out, in, H, W); only the
  part of a name from its last ``encoder/``, ``decoder/``, ``fusion_model/`` or ``discriminator/`` scope on
  matters, so enclosing scopes may differ; variables of other scopes and optimizer slots are skipped.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

__all__ = [
    "convert_densefuse",
    "convert_nestfuse",
    "convert_ifcnn",
    "convert_fusiondn",
    "convert_fusiongan",
    "convert_fusiongan_discriminator",
    "AUTHOR_CONVERTERS",
]

#: the intensity scale of DenseFuse's PyTorch release: grey levels 0..255, where this package works in [0, 1]
DENSEFUSE_RELEASE_SCALE = 255.0

# one rule: (pattern over the authors' key, template of ours); the first matching rule wins
Rules = list[tuple[str, str]]

_BN_TF = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}


def _rename(state: Mapping[str, Any], rules: Rules, ignore: str | None, method: str) -> dict[str, torch.Tensor]:
    """Rename every key by the first rule whose pattern matches it in full; unmatched keys are an error."""
    out: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for key, value in state.items():
        if ignore is not None and re.fullmatch(ignore, key):
            continue
        for pattern, template in rules:
            match = re.fullmatch(pattern, key)
            if match:
                out[match.expand(template)] = torch.as_tensor(
                    np.asarray(value) if not torch.is_tensor(value) else value
                )
                break
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f"{method}: parameters the converter does not know: {sorted(unknown)[:5]}")
    return out


def convert_densefuse(state: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """DenseFuse's PyTorch release (``DenseFuse_net``): conv1, DB1 (three dense convs), conv2..conv5."""
    rules = [
        (r"conv1\.conv2d\.(weight|bias)", r"conv1.1.conv.\1"),
        (r"DB1\.denseblock\.(\d)\.dense_conv\.conv2d\.(weight|bias)", r"dense.layers\1.1.conv.\2"),
    ] + [(rf"conv{i + 2}\.conv2d\.(weight|bias)", rf"decoder.{i}.1.conv.\1") for i in range(4)]
    converted = _rename(state, rules, None, "DenseFuse")
    # the release reads and writes grey levels 0..255 (its test script clamps the output to 0..255 and saves it
    # as uint8), this network [0, 1]: the first convolution takes the x255 and the last one the /255, exactly
    converted["conv1.1.conv.weight"] = converted["conv1.1.conv.weight"] * DENSEFUSE_RELEASE_SCALE
    for name in ("weight", "bias"):
        converted[f"decoder.3.1.conv.{name}"] = converted[f"decoder.3.1.conv.{name}"] / DENSEFUSE_RELEASE_SCALE
    return converted


def convert_nestfuse(state: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """NestFuse's release (``NestFuse_autoencoder``): conv0, DB{level}_{column}, conv_out.

    A deep-supervision checkpoint has three output heads (conv1..conv3 on the nodes x1_1..x1_3); the one
    on the last node (conv3) becomes the output and the other two are dropped.
    """
    deep = any(k.startswith("conv3.") for k in state)
    head = "conv3" if deep else "conv_out"
    rules = [
        (r"conv0\.conv2d\.(weight|bias)", r"stem.1.conv.\1"),
        (rf"{head}\.conv2d\.(weight|bias)", r"output.1.conv.\1"),
    ]
    rules += [
        (rf"DB{level + 1}_0\.denseblock\.(\d)\.conv2d\.(weight|bias)", rf"encoder.{level}.\1.1.conv.\2")
        for level in range(4)
    ]
    rules += [
        (rf"DB{level + 1}_{column}\.denseblock\.(\d)\.conv2d\.(weight|bias)", rf"nest.{level}_{column}.\1.1.conv.\2")
        for column in range(1, 4)
        for level in range(4 - column)
    ]
    return _rename(state, rules, r"conv[12]\..*" if deep else None, "NestFuse")


def convert_ifcnn(state: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """IFCNN's release (``myIFCNN``): conv1 (ResNet-101's), conv2/conv3 ConvBlocks (conv + bn), conv4."""
    rules = [
        (r"conv1\.weight", r"conv1.weight"),
        (r"conv([23])\.conv\.weight", r"conv\1.1.conv.weight"),
        (r"conv([23])\.bn\.(weight|bias|running_mean|running_var|num_batches_tracked)", r"conv\1.1.adn.N.\2"),
        (r"conv4\.(weight|bias)", r"conv4.\1"),
    ]
    return _rename(state, rules, None, "IFCNN")


def _tf_value(name: str, value: Any) -> np.ndarray:
    """TensorFlow conv kernels (H, W, in, out) -> (out, in, H, W); everything else unchanged."""
    array = np.asarray(value, dtype=np.float32)
    return array.transpose(3, 2, 0, 1) if array.ndim == 4 else array


# spectral-norm vectors and optimizer slots a checkpoint may hold besides the weights
_TF_IGNORED = r".*/(u(_\d+)?|Adam(_\d+)?)"


def _tf_rename(
    variables: Mapping[str, Any], rules: Rules, scope: str, method: str, ignore: str | None = None
) -> dict[str, torch.Tensor]:
    """Rename the variables under ``scope`` (a regex of scope names); variables of other scopes (another
    network, optimizer counters) are skipped."""
    trimmed = {}
    for name, value in variables.items():
        # keep the part from the last relevant scope on, so enclosing scopes do not matter
        short, found = re.subn(rf"^(?:.*/)?(?=(?:{scope})/)", "", name.split(":")[0])
        if found or re.match(rf"(?:{scope})/", short):
            trimmed[short] = _tf_value(name, value)
    if not trimmed:
        raise ValueError(f"{method}: no variables under the scope(s) {scope!r} found")
    return _rename(trimmed, rules, _TF_IGNORED if ignore is None else f"{_TF_IGNORED}|{ignore}", method)


def convert_fusiondn(variables: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """FusionDN's TensorFlow release (``Generator.py``): encoder kernel/bias and res_block_conv1..4 with
    kernel1/2, bias1/2; decoder conv2_1..conv2_4; batch norms under ``conv1``, ``res_block_convK/bJ`` and
    ``decoder/bI``.

    The release applies its first decoder conv twice (once without, once with the batch norm ``decoder/b0``);
    the network here applies it once, so that batch norm is dropped and outputs differ from the release.
    """
    bn = "|".join(_BN_TF)
    rules = [
        (r"encoder/kernel", r"conv1.1.conv.weight"),
        (r"encoder/bias", r"conv1.1.conv.bias"),
        (rf"encoder/conv1/.*({bn})", r"conv1.1.adn.N.\1"),
    ]
    for k in range(4):
        for j in range(2):
            rules += [
                (rf"encoder/res_block_conv{k + 1}/kernel{j + 1}", rf"dense.layers{k}.{j}.1.conv.weight"),
                (rf"encoder/res_block_conv{k + 1}/bias{j + 1}", rf"dense.layers{k}.{j}.1.conv.bias"),
                (rf"encoder/res_block_conv{k + 1}/b{j + 1}/.*({bn})", rf"dense.layers{k}.{j}.1.adn.N.\1"),
            ]
    for i in range(4):
        rules += [(rf"decoder/conv2_{i + 1}/(kernel|bias)", rf"decoder.{i}.1.conv.\1")]
    rules += [(rf"decoder/b([12])/.*({bn})", r"decoder.\1.1.adn.N.\2")]
    return _tf_names_to_torch(_tf_rename(variables, rules, "encoder|decoder", "FusionDN", ignore=r"decoder/b0/.*"))


def _spectrally_normalised(kernel: torch.Tensor) -> torch.Tensor:
    """A kernel divided by its largest singular value (of its (out, rest) matrix), as spectral norm applies it.

    The release estimates that value by power iteration during training; the exact value is used here.
    """
    return kernel / torch.linalg.matrix_norm(kernel.reshape(kernel.shape[0], -1).double(), ord=2).float()


def convert_fusiongan(variables: Mapping[str, Any], spectral_norm: bool = True) -> dict[str, torch.Tensor]:
    """FusionGAN's TensorFlow release, generator ``fusion_model/layer1..5`` (``w``, ``b`` and ``BatchNorm``).

    Args:
        spectral_norm: the release normalises every kernel spectrally at run time; set False for a
            checkpoint whose kernels are stored already normalised.
    """
    bn = "|".join(_BN_TF)
    rules = []
    for i in range(1, 6):
        target = f"layers.{i - 1}.conv" if i < 5 else "layers.4"
        rules += [
            (rf"fusion_model/layer{i}/w{i}", rf"{target}.weight"),
            (rf"fusion_model/layer{i}/b{i}", rf"{target}.bias"),
            (rf"fusion_model/layer{i}/BatchNorm/({bn})", rf"layers.{i - 1}.adn.N.\1"),
        ]
    state = _tf_names_to_torch(_tf_rename(variables, rules, "fusion_model", "FusionGAN"))
    if spectral_norm:
        state = {k: _spectrally_normalised(v) if v.ndim == 4 else v for k, v in state.items()}
    return state


def convert_fusiongan_discriminator(
    variables: Mapping[str, Any], spectral_norm: bool = True
) -> dict[str, torch.Tensor]:
    """FusionGAN's discriminator ``discriminator/layer_1..4`` and ``line_5``.

    TensorFlow flattens the last feature map as (H, W, C), PyTorch as (C, H, W): the linear layer's inputs
    are reordered accordingly (the map is square: its side follows from the number of inputs / 256).
    """
    bn = "|".join(_BN_TF)
    rules = [(r"discriminator/line_5/w_5", r"score.weight"), (r"discriminator/line_5/b_5", r"score.bias")]
    for i in range(1, 5):
        rules += [
            (rf"discriminator/layer_{i}/w_{i}", rf"features.{i - 1}.conv.weight"),
            (rf"discriminator/layer_{i}/b_{i}", rf"features.{i - 1}.conv.bias"),
            (rf"discriminator/layer_{i}/BatchNorm/({bn})", rf"features.{i - 1}.adn.N.\1"),
        ]
    state = _tf_names_to_torch(_tf_rename(variables, rules, "discriminator", "FusionGAN discriminator"))
    weight = state["score.weight"]  # (flat, 1) as stored by TensorFlow
    channels = state["features.3.conv.weight"].shape[0]
    side = int(round((weight.shape[0] / channels) ** 0.5))
    if spectral_norm:
        state = {k: _spectrally_normalised(v) if v.ndim == 4 else v for k, v in state.items()}
        weight = weight / torch.linalg.matrix_norm(weight.double(), ord=2).float()
    state["score.weight"] = weight.reshape(side, side, channels).permute(2, 0, 1).reshape(1, -1)
    return state


def _tf_names_to_torch(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """TensorFlow batch-norm names and ``kernel`` -> PyTorch's (``gamma`` -> ``weight`` ...)."""
    renamed = {}
    for key, value in state.items():
        head, _, last = key.rpartition(".")
        renamed[f"{head}.{_BN_TF.get(last, 'weight' if last == 'kernel' else last)}"] = value
    return renamed


#: method name -> converter of the authors' parameters (generators only for FusionGAN)
AUTHOR_CONVERTERS: dict[str, Callable[[Mapping[str, Any]], dict[str, torch.Tensor]]] = {
    "densefuse": convert_densefuse,
    "nestfuse": convert_nestfuse,
    "ifcnn": convert_ifcnn,
    "fusiondn": convert_fusiondn,
    "fusiongan": convert_fusiongan,
}
