"""Choosing a fusion method by name: MMIF-Net (shipped weights) or a classical baseline."""

from __future__ import annotations

from pathlib import Path

import torch

from mmif_monai.fusion.classical import CLASSICAL_METHODS
from mmif_monai.fusion.pipeline import FuseFn
from mmif_monai.networks.pretrained import load_mmif_net

__all__ = ["NETWORK_METHOD", "available_methods", "load_fusion_method"]

NETWORK_METHOD = "mmif-net"


def available_methods() -> list[str]:
    return [NETWORK_METHOD, *CLASSICAL_METHODS]


def load_fusion_method(
    name: str = NETWORK_METHOD, weights: str | Path | None = None, device: str | torch.device = "cpu"
) -> tuple[FuseFn, str]:
    """The fusion callable for ``name`` and a one-line description of what it is (weights included)."""
    if name == NETWORK_METHOD:
        loaded = load_mmif_net(weights, device=device)
        return loaded.network, loaded.description
    if weights is not None:
        raise ValueError(f"--weights applies to {NETWORK_METHOD} only, not to the classical method {name!r}")
    if name not in CLASSICAL_METHODS:
        raise ValueError(f"unknown fusion method {name!r}; choose from {', '.join(available_methods())}")
    return CLASSICAL_METHODS[name], f"classical baseline {name!r}"
