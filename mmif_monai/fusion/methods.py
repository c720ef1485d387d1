"""Choosing a fusion method by name: MMIF-Net (shipped weights) or a classical baseline."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from mmif_monai.fusion.classical import CLASSICAL_METHODS, max_fusion
from mmif_monai.fusion.engines import RUNTIME_ENGINES, load_engine
from mmif_monai.fusion.pipeline import FuseFn
from mmif_monai.networks.pretrained import load_mmif_net

__all__ = [
    "NETWORK_METHOD",
    "AUTOENCODED_MAX",
    "WEIGHTED_METHODS",
    "available_methods",
    "autoencoded_max",
    "check_weights_fuse",
    "load_fusion_method",
]

NETWORK_METHOD = "mmif-net"
#: a diagnostic, not a fusion method offered to users: pixel-max fusion passed through MMIF-Net's autoencoder
AUTOENCODED_MAX = "max-autoencoded"
#: methods whose results depend on MMIF-Net's weights
WEIGHTED_METHODS = (NETWORK_METHOD, AUTOENCODED_MAX)


def available_methods() -> list[str]:
    return [NETWORK_METHOD, *CLASSICAL_METHODS]


def autoencoded_max(network: FuseFn) -> FuseFn:
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


def _probe_pair(size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed (1, 1, size, size) pair with structure in both images: a bright disc and an off-centre blob."""
    axis = torch.linspace(-1.0, 1.0, size)
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    anatomical = ((x**2 + y**2) < 0.6).float() * (0.5 + 0.4 * x)
    functional = torch.exp(-((x - 0.3) ** 2 + (y + 0.2) ** 2) / 0.05)
    return anatomical[None, None], functional[None, None]


@torch.no_grad()
def check_weights_fuse(path: Path | None, network: nn.Module) -> None:
    """Refuse weights that fuse a structured pair into NaN/Inf or a constant image (zeroed or diverged weights):
    they would give black images with exit status 0. Part of choosing a method for fusing files, not of
    :func:`~mmif_monai.networks.pretrained.load_mmif_net`: a study may load a barely trained network on purpose.

    Raises:
        ValueError: naming ``path`` (the weights file).
    """
    was_training = network.training
    network.eval()
    device = next(network.parameters()).device
    fused = network(*(image.to(device) for image in _probe_pair()))
    network.train(was_training)
    if not bool(fused.isfinite().all()):
        raise ValueError(f"{path}: these weights fuse a test pair into NaN/Inf values; the weights are damaged")
    if float(fused.amax() - fused.amin()) < 1e-6:
        raise ValueError(
            f"{path}: these weights fuse a test pair into a constant image ({float(fused.amin()):.3g} everywhere); "
            "the weights are damaged (zeroed or diverged)"
        )


def load_fusion_method(
    name: str = NETWORK_METHOD,
    weights: str | Path | None = None,
    device: str | torch.device = "cpu",
    engine: str = "torch",
    report: Callable[[str], None] | None = None,
) -> tuple[FuseFn, str]:
    """The fusion callable for ``name`` and a one-line description of what it is (weights included).

    A network runs on ``engine`` (:func:`~mmif_monai.fusion.engines.load_engine`): ``torch`` (the default, what the
    studies and tests measure) runs its inference form (:func:`~mmif_monai.networks.inference.prepare_for_inference`:
    batch norm folded, channels-last, no autograd); ``onnxruntime`` and ``openvino`` its cached ONNX export on the
    CPU; ``auto``, what ``mmif fuse``, the volume job and the Deploy app pass, the faster of those on the CPU and
    torch on a GPU. ``report`` hears of a first export. :func:`~mmif_monai.fusion.engines.engine_line` says which ran.

    Besides :func:`available_methods`, ``name`` may be the diagnostic :data:`AUTOENCODED_MAX`.
    """
    if name in WEIGHTED_METHODS:
        loaded = load_mmif_net(weights, device=device)
        if loaded.trained:
            check_weights_fuse(loaded.weights, loaded.network)
        network = load_engine(loaded.network, engine, device, cacheable=loaded.trained, report=report)
        if name == NETWORK_METHOD:
            return network, loaded.description
        return autoencoded_max(network), f"pixel-max fusion reconstructed by {loaded.description}"
    if weights is not None:
        raise ValueError(
            f"--weights applies to {', '.join(WEIGHTED_METHODS)} only, not to the classical method {name!r}"
        )
    if name not in CLASSICAL_METHODS:
        raise ValueError(f"unknown fusion method {name!r}; choose from {', '.join(available_methods())}")
    if engine in RUNTIME_ENGINES:
        raise ValueError(f"--engine {engine} applies to {NETWORK_METHOD} only, not to the classical method {name!r}")
    return CLASSICAL_METHODS[name], f"classical baseline {name!r}"
