"""The Concrete relaxation of z_pres (Maddison et al. 2017; Jang et al. 2017): every latent is
reparameterised, so the whole ELBO is differentiated by backprop and no score function is needed.

During training each z_pres^i is a relaxed sample in (0, 1): objects are weighted by it on the canvas,
their continuous latents' terms by it, and each step's presence KL (in closed form) by how far the
previous steps let it be reached. The gradient is biased by the relaxation, less so as the temperature is
annealed down. With straight_through the forward pass uses hard 0/1 values, so the objective is the
ELBO itself and only the gradient is relaxed. Evaluation and inference always use hard counts.
"""

from __future__ import annotations

import torch

from airscene.estimators.base import Batch, Estimator
from airscene.estimators.elbo import presence_kl
from airscene.model.air import AIR, GlimpseTrace
from airscene.schedules import anneal


class Relaxed(Estimator):
    def __init__(self, temperature_start: float, temperature_end: float, temperature_steps: int,
                 straight_through: bool = False):
        super().__init__()
        self.presence = "straight_through" if straight_through else "relaxed"
        self.temperatures = (temperature_start, temperature_end, temperature_steps)
        # The temperature of the step being drawn: set by schedule(step), a tensor so that a compiled step
        # takes it as an input; not saved (every step sets it from its number).
        self.register_buffer("temperature", torch.tensor(float(temperature_start)), persistent=False)

    def temperature_at(self, step: int) -> float:
        """Annealed exponentially from the start to the end temperature, then held."""
        start, end, steps = self.temperatures
        return anneal(start, end, step, steps)

    def schedule(self, step: int) -> None:
        self.temperature.fill_(self.temperature_at(step))

    def draw(self, model: AIR, batch: Batch, exploration: float | torch.Tensor, step: int) -> GlimpseTrace:
        return model(batch.images, self.presence, exploration, temperature=self.temperature)

    def forward(self, model: AIR, trace: GlimpseTrace) -> tuple[torch.Tensor, dict]:
        log_likelihood = model.trace_log_likelihood(trace)  # (B,)
        latents = (trace.log_ratio * trace.z_pres).sum(1) + trace.scene_log_ratio  # (B,)
        count_kl = (presence_kl(model, trace) * trace.steps_taken).sum(1)  # (B,)
        elbo = log_likelihood + latents - count_kl
        return -elbo.mean(), {"elbo": elbo.mean().detach()}
