"""Choosing a fusion method by name: MMIF-Net (shipped weights) or a classical baseline."""

from __future__ import annotations

from pathlib import Path

import torch

from mmif_monai.fusion.classical import CLASSICAL_METHODS, max_fusion
from mmif_monai.fusion.pipeline import FuseFn
from mmif_monai.networks.mmif_net import MMIFNet
from mmif_monai.networks.pretrained import load_mmif_net

__all__ = [
    "NETWORK_METHOD",
    "AUTOENCODED_MAX",
    "WEIGHTED_METHODS",
    "available_methods",
    "autoencoded_max",
    "load_fusion_method",
]

NETWORK_METHOD = "mmif-net"
#: a diagnostic, not a fusion method offered to users: pixel-max fusion passed through MMIF-Net's autoencoder
AUTOENCODED_MAX = "max-autoencoded"
#: methods whose results depend on MMIF-Net's weights
WEIGHTED_METHODS = (NETWORK_METHOD, AUTOENCODED_MAX)


def available_methods() -> list[str]:
    return [NETWORK_METHOD, *CLASSICAL_METHODS]


def autoencoded_max(network: MMIFNet) -> FuseFn:
    """Pixel-max fusion reconstructed by ``network``'s encoder and decoder: what they keep of the max image.

    The fusion loss trains FA towards max intensity and max gradient; this shows how much of that target's scores
    the trained autoencoder loses by itself (bundles/mmif_net/docs/README.md). The network is given the max image
    as both sources: fusing identical features returns them, whatever the rule, so this is its autoencoder pass
    on the inference path (LatLRR parts included).
    """

    def fuse(anatomical: torch.Tensor, functional: torch.Tensor) -> torch.Tensor:
        brighter = max_fusion(anatomical, functional)
        return network(brighter, brighter)

    return fuse


def load_fusion_method(
    name: str = NETWORK_METHOD, weights: str | Path | None = None, device: str | torch.device = "cpu"
) -> tuple[FuseFn, str]:
    """The fusion callable for ``name`` and a one-line description of what it is (weights included).

    Besides :func:`available_methods`, ``name`` may be the diagnostic :data:`AUTOENCODED_MAX`.
    """
    if name in WEIGHTED_METHODS:
        loaded = load_mmif_net(weights, device=device)
        if name == NETWORK_METHOD:
            return loaded.network, loaded.description
        return autoencoded_max(loaded.network), f"pixel-max fusion reconstructed by {loaded.description}"
    if weights is not None:
        raise ValueError(f"--weights applies to {', '.join(WEIGHTED_METHODS)} only, not to the classical method {name!r}")
    if name not in CLASSICAL_METHODS:
        raise ValueError(f"unknown fusion method {name!r}; choose from {', '.join(available_methods())}")
    return CLASSICAL_METHODS[name], f"classical baseline {name!r}"
