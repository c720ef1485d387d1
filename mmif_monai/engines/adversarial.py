"""Adversarial training of a fusion generator on MONAI's Ignite engines (FusionGAN).

MONAI's ``GanTrainer`` does not fit fusion: it feeds the generator latent noise from ``g_prepare_batch``
(which never sees the batch) and calls ``g_loss_function(g_output)`` without the batch, so neither the
generator's input (the source pair) nor its content loss (against the sources) can be expressed. Here the
generator step stays ``SupervisedTrainer``'s own - same data, inferer, loss call, events and handlers as
every other method - and the discriminator updates run before it in the same iteration.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from monai.engines import SupervisedTrainer
from torch import nn
from torch.optim import Optimizer

__all__ = ["AdversarialTrainer"]


class AdversarialTrainer(SupervisedTrainer):
    """``SupervisedTrainer`` whose iteration first updates a discriminator ``d_train_steps`` times.

    The discriminator judges the generator's output (``network(image)``, computed without gradients for
    these updates) against channel ``real_channel`` of the input batch - the source whose appearance the
    generator should adopt (FusionGAN: the visible image; here the anatomical one). ``d_loss_function`` takes
    ``(fused_score, real_score)``. The generator's ``loss_function`` sees ``(pred, label)`` as usual and asks
    the discriminator itself (e.g. :class:`mmif_monai.losses.comparison.FusionGANLoss`).

    Args:
        discriminator, d_optimizer, d_loss_function: the discriminator, its optimizer and loss.
        real_channel: channel of the input batch the discriminator takes as real.
        d_train_steps: discriminator updates per generator update (2 in FusionGAN's release).
        kwargs: ``SupervisedTrainer``'s arguments (``network`` is the generator or its training task).
    """

    def __init__(
        self,
        discriminator: nn.Module,
        d_optimizer: Optimizer,
        d_loss_function: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        real_channel: int = 0,
        d_train_steps: int = 2,
        **kwargs: Any,
    ) -> None:
        if d_train_steps < 1:
            raise ValueError(f"d_train_steps must be >= 1, got {d_train_steps}")
        super().__init__(**kwargs)
        self.discriminator = discriminator
        self.d_optimizer = d_optimizer
        self.d_loss_function = d_loss_function
        self.real_channel = real_channel
        self.d_train_steps = d_train_steps

    def _iteration(self, engine: SupervisedTrainer, batchdata: dict[str, torch.Tensor]) -> dict:
        if batchdata is None:
            raise ValueError("Must provide batch data for current iteration.")
        inputs = engine.prepare_batch(batchdata, engine.state.device, engine.non_blocking, **engine.to_kwargs)[0]
        real = inputs[:, self.real_channel : self.real_channel + 1]
        engine.network.train()
        self.discriminator.train()
        with torch.no_grad():
            fused = engine.inferer(inputs, engine.network)
        for _ in range(self.d_train_steps):
            self.d_optimizer.zero_grad(set_to_none=True)
            self.d_loss_function(self.discriminator(fused), self.discriminator(real)).backward()
            self.d_optimizer.step()
        return super()._iteration(engine, batchdata)
