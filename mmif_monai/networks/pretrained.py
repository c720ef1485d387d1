"""Loading MMIF-Net with the weights shipped in the bundle, saying honestly which weights were used."""

from __future__ import annotations

import hashlib
import logging
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch

from mmif_monai.decomposition.projection import default_projection_path, load_projection
from mmif_monai.io.paths import BUNDLE_DIR
from mmif_monai.io.preflight import check_weights_file
from mmif_monai.networks.mmif_net import MMIFNet

__all__ = [
    "BUNDLE_DIR",
    "DEFAULT_WEIGHTS",
    "PAPER_WEIGHTS",
    "LoadedModel",
    "check_matches",
    "NETWORK_ARGUMENTS",
    "load_mmif_net",
    "read_checkpoint",
    "read_weights",
    "weights_digest",
]

logger = logging.getLogger(__name__)

#: the product default: the fast configuration's weights (one pass without the LatLRR split, a narrower front end;
#: the file records the configuration, docs/method.md)
DEFAULT_WEIGHTS = BUNDLE_DIR / "models" / "model.pt"
#: the paper configuration's weights (LatLRR split, the paper's widths), trained by the same recipe
PAPER_WEIGHTS = BUNDLE_DIR / "models" / "paper" / "model.pt"


def weights_digest(path: str | Path = DEFAULT_WEIGHTS) -> str:
    """A short content hash of a weights file ("untrained" if absent): results cached per weights never go stale."""
    path = Path(path)
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12] if path.is_file() else "untrained"


#: the :class:`MMIFNet` arguments a weights file may record as its ``"network"`` entry
NETWORK_ARGUMENTS = ("msl", "sa", "fa", "decompose", "features", "stem_features")


def read_checkpoint(path: str | Path) -> tuple[dict, dict]:
    """The parameters in ``path`` and the network configuration they were trained in.

    The file is a plain state dict, or a dictionary whose ``"model"`` entry is one (a training checkpoint, or the
    shipped form ``{"model": state dict, "network": {...}}`` whose ``"network"`` entry holds :class:`MMIFNet`
    arguments, :data:`NETWORK_ARGUMENTS`; without it, the paper's configuration: ``{}``). Loaded with
    ``weights_only=True``: a state dict needs no pickled code, and refusing it keeps untrusted files inert.

    Raises:
        FileNotFoundError: if the file does not exist. ValueError, naming the file: it is empty or not a PyTorch
        file, holds pickled code or objects other than tensors (refused, never run), holds no dictionary of
        tensors, holds NaN/Inf parameters, or records a network argument MMIF-Net does not take.
    """
    path = check_weights_file(path)
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise ValueError(
            f"{path}: refused: the file holds code or objects other than tensors (weights_only); it was not run"
        ) from error
    except Exception as error:  # a damaged archive fails in many ways inside torch.load; none is the user's to read
        raise ValueError(f"{path}: not a PyTorch weights file ({type(error).__name__} while reading it)") from error
    state, config = loaded, dict[str, object]()
    if isinstance(loaded, dict) and isinstance(loaded.get("model"), dict):
        state, config = loaded["model"], loaded.get("network") or {}
    if not isinstance(config, dict) or set(config) - set(NETWORK_ARGUMENTS):
        raise ValueError(f"{path}: its 'network' entry is not MMIF-Net arguments ({', '.join(NETWORK_ARGUMENTS)})")
    if not isinstance(state, dict) or not any(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a state dict of tensors or a checkpoint with a 'model' entry")
    broken = [
        key for key, value in state.items()
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(value.isfinite().all())
    ]  # fmt: skip
    if broken:
        raise ValueError(
            f"{path}: {len(broken)} parameter tensor(s) hold NaN/Inf (first: {broken[0]}); the weights are damaged"
        )
    return state, dict(config)


def _shipped_configuration_fitting(state: dict[str, torch.Tensor]) -> dict:
    """The configuration of weights that record none (a training checkpoint, the bundle's best-model file): the
    bundle default's (recorded in :data:`DEFAULT_WEIGHTS`) when every parameter outside FA has its shapes, else the
    paper's, ``{}``. The two differ in width, so shapes tell them apart."""
    if not DEFAULT_WEIGHTS.is_file():
        return {}
    _, default = read_checkpoint(DEFAULT_WEIGHTS)
    expected = {k: v.shape for k, v in MMIFNet(**default).state_dict().items() if not k.startswith("fusions.")}
    given = {k: v.shape for k, v in state.items() if not k.startswith("fusions.")}
    return default if given == expected else {}


def read_weights(path: str | Path) -> dict:
    """The parameters in ``path`` (:func:`read_checkpoint`), without the network configuration."""
    return read_checkpoint(path)[0]


def check_matches(path: Path, network: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Refuse a state dict of another network in one line naming the first differing keys, not torch's block."""
    expected = network.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]

    def first(keys: list[str]) -> str:
        return ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")

    if missing or unexpected:
        found = [
            f"missing {first(missing)}" if missing else "",
            f"unexpected {first(unexpected)}" if unexpected else "",
        ]
        raise ValueError(f"{path}: not weights of this MMIF-Net configuration: {'; '.join(f for f in found if f)}")
    for key, value in expected.items():
        if tuple(state[key].shape) != tuple(value.shape):
            raise ValueError(
                f"{path}: not weights of this MMIF-Net configuration: {key} has shape {tuple(state[key].shape)}, "
                f"the network's is {tuple(value.shape)}"
            )


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
    """MMIF-Net in eval mode with ``weights`` (a state dict or training checkpoint file) or the bundle's shipped
    ``models/model.pt``, in the configuration the file records (:func:`read_checkpoint`; for a file that records
    none, the shipped configuration its shapes fit: the bundle default's, else the paper's). ``network_kwargs`` are
    :class:`MMIFNet`'s switches, over the file's; with ``fa=False`` the file's FA parameters, if any, are left
    unused.

    Without weights (none given and none shipped) the network is randomly initialised, carries the shipped
    LatLRR projection when there is one, and is marked ``trained=False`` so callers can say so.

    Raises:
        FileNotFoundError: if ``weights`` is given and does not exist. ValueError: the file is not weights of this
        network configuration (:func:`read_weights`).
    """
    path = Path(weights) if weights is not None else DEFAULT_WEIGHTS
    if weights is not None or path.is_file():
        state, config = read_checkpoint(path)
        network = MMIFNet(**{**(config or _shipped_configuration_fitting(state)), **network_kwargs})
        if not network.fa:
            # the l1 rule has no parameters: weights trained with FA can be fused by the l1 rule instead
            state = {k: v for k, v in state.items() if not k.startswith("fusions.")}
        check_matches(path, network, state)
        network.load_state_dict(state)
        loaded = LoadedModel(network, path, trained=True)
    else:
        network = MMIFNet(**network_kwargs)
        if default_projection_path().is_file():
            network.decomposition.projection.copy_(load_projection())
        loaded = LoadedModel(network, None, trained=False)
        logger.warning(loaded.description)
    network.to(device).eval()
    return loaded
