"""The inference form of a fusion network, the one every entry point runs (``mmif fuse``, the volume job, the
bundle's inference, the Deploy app): batch norm folded into the convolutions, channels-last memory, no autograd.

The same function as the network as trained, to float rounding (tests/test_fast_paths.py states the tolerance);
docs/benchmarks.md measures what it saves.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mmif_monai.networks.blocks import fold_batch_norm

__all__ = ["InferenceNetwork", "prepare_for_inference"]


class InferenceNetwork(nn.Module):
    """``network`` with batch norm folded, in channels-last memory, run under ``torch.inference_mode``.

    A copy for inference only: it cannot train, and it does not load the trained network's state dict (its batch
    norms are gone). ``source_parameters`` keeps the trained network's learnable parameter count, the one a model
    card quotes.
    """

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.source_parameters = sum(p.numel() for p in network.parameters())
        self.network = fold_batch_norm(network).to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # its overloads omit memory_format
        self.network.requires_grad_(False)

    def train(self, mode: bool = True) -> InferenceNetwork:
        if mode:
            raise RuntimeError("an InferenceNetwork cannot train; train the network it was made from")
        return super().train(False)

    def forward(self, *inputs: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        with torch.inference_mode():
            return self.network(*(x.contiguous(memory_format=torch.channels_last) for x in inputs), **kwargs)


def prepare_for_inference(network: nn.Module) -> InferenceNetwork:
    """The inference form of ``network`` (:class:`InferenceNetwork`); ``network`` itself is left unchanged."""
    return InferenceNetwork(network)
