"""What every estimator is: a module that says how its trace must be drawn and turns the trace into a loss."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from airscene.model.trace import Trace


@dataclass(kw_only=True)
class Batch:
    """One training step's data."""

    images: torch.Tensor  # (B, C, H, W) in [0, 1]
    truth: Any = None  # the data's ground truth for these images, where it has any (counts; true scenes)


class Estimator(nn.Module):
    """presence: how the model draws z_pres (see AttendInferRepeat.forward); samples: traces drawn per image."""

    presence = "sample"
    samples = 1

    def schedule(self, step: int) -> None:
        """Set the estimator's state that follows a schedule (relaxed: the temperature) to its value at
        training step `step`, before that step's draw."""

    def draw(self, model: nn.Module, batch: Batch, exploration: float | torch.Tensor, step: int) -> Trace:
        """One forward pass of the model, drawn as this estimator needs it (with the state schedule(step) last
        set); `samples` traces per image lie next to each other in the batch, (B * samples, ...)."""
        images = batch.images.repeat_interleave(self.samples, dim=0) if self.samples > 1 else batch.images
        return model(images, self.presence, exploration)

    def forward(self, model: nn.Module, trace: Trace) -> tuple[torch.Tensor, dict]:
        """The loss to minimise (B-averaged) and a dict of statistics, "elbo" among them: detached 0-d tensors,
        which the training loop reads back only when it logs them."""
        raise NotImplementedError
