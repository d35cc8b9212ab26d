"""What every estimator is: a module that says how its trace must be drawn and turns the trace into a loss."""

from __future__ import annotations

import torch
import torch.nn as nn

from airscene.model.air import AIR, Trace


class Estimator(nn.Module):
    """presence: how the model draws z_pres (see AIR.forward); samples: traces drawn per image."""

    presence = "sample"
    samples = 1

    def draw(self, model: AIR, images: torch.Tensor, exploration: float, step: int) -> Trace:
        """One forward pass of the model, drawn as this estimator needs it; `samples` traces per image
        lie next to each other in the batch, (B * samples, ...)."""
        if self.samples > 1:
            images = images.repeat_interleave(self.samples, dim=0)
        return model(images, self.presence, exploration)

    def forward(self, model: AIR, trace: Trace) -> tuple[torch.Tensor, dict]:
        """The loss to minimise (B-averaged) and a dict of float statistics, "elbo" among them."""
        raise NotImplementedError
