"""Choosing the torch device, with a clear refusal of one this machine does not have."""

from __future__ import annotations

import torch

__all__ = ["available_devices", "resolve_device"]


def available_devices() -> list[str]:
    """The devices torch can use here: ``cpu``, then ``cuda:0``... and ``mps`` where present."""
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += [f"cuda:{index}" for index in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        devices.append("mps")
    return devices


def resolve_device(name: str | torch.device | None = None) -> torch.device:
    """The torch device ``name`` (e.g. ``cpu``, ``cuda``, ``cuda:1``), or for None CUDA when present, else the CPU.

    Raises:
        ValueError: ``name`` is not a device torch knows, or names one this machine does not have (the message
            lists those it has); torch itself would fail later, with an AssertionError deep in a model's ``to()``.
    """
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as error:
        raise ValueError(f"device {str(name)!r}: not a torch device name (e.g. cpu, cuda, cuda:1)") from error
    available = ", ".join(available_devices())
    if device.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch build has no CUDA support" if torch.version.cuda is None else "no GPU is visible"
            raise ValueError(f"device {str(name)!r}: no CUDA device is available ({why}); available: {available}")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {str(name)!r}: there is no CUDA device {device.index}; available: {available}")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {str(name)!r}: no MPS device is available; available: {available}")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device {str(name)!r}: {device.type} devices are not supported; available: {available}")
    return device
