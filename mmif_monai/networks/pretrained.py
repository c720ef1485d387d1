"""Loading MMIF-Net with the weights shipped in the bundle, saying honestly which weights were used."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from mmif_monai.decomposition.projection import default_projection_path, load_projection
from mmif_monai.io.paths import BUNDLE_DIR
from mmif_monai.networks.mmif_net import MMIFNet

__all__ = ["BUNDLE_DIR", "DEFAULT_WEIGHTS", "LoadedModel", "load_mmif_net", "weights_digest"]

logger = logging.getLogger(__name__)

DEFAULT_WEIGHTS = BUNDLE_DIR / "models" / "model.pt"


def weights_digest(path: str | Path = DEFAULT_WEIGHTS) -> str:
    """A short content hash of a weights file ("untrained" if absent): results cached per weights never go stale."""
    path = Path(path)
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12] if path.is_file() else "untrained"


@dataclass
class LoadedModel:
    """A network in eval mode and the provenance of its weights."""

    network: MMIFNet
    weights: Path | None
    trained: bool

    @property
    def description(self) -> str:
        if self.trained:
            return f"MMIF-Net, trained weights {self.weights}"
        return (
            "MMIF-Net with UNTRAINED (randomly initialised) weights - no trained weights were found at "
            f"{DEFAULT_WEIGHTS}; the output is not a meaningful fusion"
        )


def load_mmif_net(
    weights: str | Path | None = None, device: str | torch.device = "cpu", **network_kwargs
) -> LoadedModel:
    """MMIF-Net in eval mode with ``weights`` (a state dict file) or the bundle's shipped ``models/model.pt``.

    Without weights (none given and none shipped) the network is randomly initialised, carries the shipped
    LatLRR projection when there is one, and is marked ``trained=False`` so callers can say so.

    Raises:
        FileNotFoundError: if ``weights`` is given and does not exist.
    """
    network = MMIFNet(**network_kwargs)
    path = Path(weights) if weights is not None else DEFAULT_WEIGHTS
    if path.is_file():
        # weights_only: a state dict needs no pickled code, and refusing it keeps untrusted files inert
        state = torch.load(path, map_location="cpu", weights_only=True)
        network.load_state_dict(state.get("model", state) if isinstance(state, dict) else state)
        loaded = LoadedModel(network, path, trained=True)
    elif weights is not None:
        raise FileNotFoundError(f"{path}: weights file not found")
    else:
        if default_projection_path().is_file():
            network.decomposition.projection.copy_(load_projection())
        loaded = LoadedModel(network, None, trained=False)
        logger.warning(loaded.description)
    network.to(device).eval()
    return loaded
