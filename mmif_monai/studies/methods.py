"""Every method a study compares, found by name: the networks of MMIF-Net's paper's Tables 2 and 3 (how to build,
train and load them), MMIF-Net itself, and the classical rules.

Every method trains through the MMIF-Net bundle's ``train.json`` with a small override file from
``bundles/comparison/configs`` layered on top (autoencoders directly, end-to-end fusion methods on top of
the bundle's paired-data ``train_fusion.json`` as well).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mmif_monai.fusion.methods import NETWORK_METHOD, WEIGHTED_METHODS, load_fusion_method
from mmif_monai.fusion.pipeline import FuseFn
from mmif_monai.io.paths import BUNDLE_DIR, BUNDLES_ROOT
from mmif_monai.networks import IFCNN, DenseFuse, FusionDN, FusionGAN, NestFuse
from mmif_monai.networks.baselines.conversion import AUTHOR_CONVERTERS
from mmif_monai.networks.inference import prepare_for_inference
from mmif_monai.networks.pretrained import read_weights

__all__ = [
    "COMPARISON_CONFIG_DIR",
    "ComparisonMethod",
    "COMPARISON_METHODS",
    "bundle_config_files",
    "read_state_dict",
    "load_comparison_network",
    "MMIF_NET_TITLE",
    "load_method",
    "method_title",
    "uses_weights",
]

COMPARISON_CONFIG_DIR = BUNDLES_ROOT / "comparison" / "configs"
MMIF_NET_TITLE = "MMIF-Net"


@dataclass(frozen=True)
class ComparisonMethod:
    """One compared network: how to build it, how it trains, and where it comes from."""

    name: str
    title: str
    build: Callable[..., nn.Module]
    #: trained on (anatomical, functional) pairs with a fusion loss, else as an autoencoder on single images
    paired: bool
    reference: str


COMPARISON_METHODS: dict[str, ComparisonMethod] = {
    m.name: m
    for m in (
        ComparisonMethod("densefuse", "DenseFuse", DenseFuse, False, "Li & Wu, IEEE TIP 2019"),
        ComparisonMethod("ifcnn", "IFCNN", IFCNN, False, "Zhang et al., Information Fusion 2020"),
        ComparisonMethod("nestfuse", "NestFuse", NestFuse, False, "Li, Wu & Durrani, IEEE TIM 2020"),
        ComparisonMethod("fusiondn", "FusionDN", FusionDN, True, "Xu et al., AAAI 2020"),
        ComparisonMethod("fusiongan", "FusionGAN", FusionGAN, True, "Ma et al., Information Fusion 2019"),
    )
}


def bundle_config_files(name: str) -> list[Path]:
    """The config files, in merge order, that train ``name`` through the MMIF-Net bundle."""
    method = COMPARISON_METHODS[name]
    files = [BUNDLE_DIR / "configs" / "train.json"]
    if method.paired:
        files.append(BUNDLE_DIR / "configs" / "train_fusion.json")
    return [*files, COMPARISON_CONFIG_DIR / f"{name}.json"]


def read_state_dict(path: str | Path) -> dict:
    """Parameters stored in ``path``: a ``.npz`` of TensorFlow variables, a training checkpoint (its
    ``"model"``), or a plain state dict. Loaded with ``weights_only=True``.

    Raises:
        FileNotFoundError: if the file does not exist. ValueError: if it holds no dictionary of parameters.
    """
    path = Path(path)
    if path.suffix == ".npz":
        if not path.is_file():
            raise FileNotFoundError(f"{path}: weights file not found")
        with np.load(path, allow_pickle=False) as arrays:
            return {name: arrays[name] for name in arrays.files}
    return read_weights(path)


def load_comparison_network(
    name: str, weights: str | Path, device: str | torch.device = "cpu", **options: Any
) -> nn.Module:
    """Method ``name``'s network in eval mode with the parameters in ``weights``; ``options`` go to its
    constructor (e.g. DenseFuse's ``fusion_rule``).

    ``weights`` may be this package's own (a bundle checkpoint or state dict) or the original authors'
    release, converted by :data:`mmif_monai.networks.baselines.conversion.AUTHOR_CONVERTERS` (keys: docs/comparison.md).

    Raises:
        ValueError: unknown method, or parameters that match neither key layout (the message names the file).
    """
    if name not in COMPARISON_METHODS:
        raise ValueError(f"unknown comparison method {name!r}; choose from {', '.join(COMPARISON_METHODS)}")
    network = COMPARISON_METHODS[name].build(**options)
    state = read_state_dict(weights)
    own_keys = set(network.state_dict())
    if not own_keys.issuperset(state) or not set(state).issuperset(k for k in own_keys if "num_batches" not in k):
        try:
            state = AUTHOR_CONVERTERS[name](state)
        except ValueError as error:
            raise ValueError(
                f"{weights}: neither {name} parameters of this package nor of its release: {error}"
            ) from None
    try:
        network.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(
            f"{weights}: does not fit {COMPARISON_METHODS[name].title}: {str(error).splitlines()[0]}"
        ) from None
    return network.to(device).eval()


def uses_weights(name: str) -> bool:
    """Whether method ``name``'s results depend on a weights file (a compared network or MMIF-Net)."""
    return name in COMPARISON_METHODS or name in WEIGHTED_METHODS


def method_title(name: str) -> str:
    """How the documents name method ``name``: a compared network's title, "MMIF-Net", else the name itself."""
    if name in COMPARISON_METHODS:
        return COMPARISON_METHODS[name].title
    return MMIF_NET_TITLE if name == NETWORK_METHOD else name


def load_method(
    name: str, weights: str | Path | None = None, device: str | torch.device = "cpu", **options: Any
) -> tuple[FuseFn, str]:
    """The fusion callable of any method a study compares, and a one-line description of it.

    ``name`` is a compared network (:data:`COMPARISON_METHODS`; ``weights`` required), MMIF-Net or its
    diagnostic (``weights`` or, for ``None``, the shipped ones), or a classical rule (no weights): the
    :func:`~mmif_monai.fusion.methods.load_fusion_method` names. ``options`` go to a compared network's
    constructor (e.g. DenseFuse's ``fusion_rule``). Networks come in their inference form
    (:func:`~mmif_monai.networks.inference.prepare_for_inference`), the compared ones as MMIF-Net.

    Raises:
        ValueError: unknown method, a compared network without weights, or weights that do not fit.
    """
    if name not in COMPARISON_METHODS:
        if options:
            raise ValueError(f"constructor options {sorted(options)} apply to the compared networks, not {name!r}")
        return load_fusion_method(name, weights, device)
    if weights is None:
        raise ValueError(f"{COMPARISON_METHODS[name].title} needs a weights file (train it or give one)")
    network = prepare_for_inference(load_comparison_network(name, weights, device, **options))
    return network, f"{COMPARISON_METHODS[name].title} ({weights})"
