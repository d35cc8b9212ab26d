"""The paper's estimator: score function for z_pres with a neural baseline (NVIL, Mnih & Gregor 2014).

Continuous latents are reparameterised. For each step's presence the learning signal is the part of the
ELBO that z_pres^i can affect (the likelihood and the terms from step i on), centred by a baseline that
predicts it from the image and the earlier latents, and optionally scaled by its running sd.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from airscene.config import ModelConfig
from airscene.estimators.base import Estimator
from airscene.estimators.elbo import sampled_elbo_terms
from airscene.model.air import AIR, Trace
from airscene.model.networks import ImageEmbedding

SIGNAL_DECAY = 0.9  # of the running mean and variance of the centred signal


class BaselineNetwork(nn.Module):
    """An RNN mirroring the inference network: sees x and z^{i-1}, predicts step i's learning signal."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.embed = ImageEmbedding(config.channels, config.image_size, config.embedding_size)
        self.lstm = nn.LSTMCell(config.embedding_size + 3 + config.what_size + 1, config.hidden_size)
        self.out = nn.Linear(config.hidden_size, 1)

    def forward(self, trace: Trace) -> torch.Tensor:
        """(B, N) predicted learning signal per step."""
        # The baseline may depend on anything before step i but must not feed gradients into the
        # model: its inputs are detached, so it changes the estimator's variance and not its mean.
        previous = [torch.cat([torch.zeros_like(t[:, :1]), t[:, :-1].detach()], 1)
                    for t in (trace.z_where, trace.z_what, trace.z_pres.unsqueeze(-1))]
        previous[2][:, 0] = 1.0  # z_pres^0 = 1: the first step is always taken
        embedding = self.embed(trace.images)
        state, outputs = None, []
        for step in range(trace.z_pres.shape[1]):
            state = self.lstm(torch.cat([embedding] + [p[:, step] for p in previous], -1), state)
            outputs.append(self.out(state[0])[:, 0])
        return torch.stack(outputs, 1)


class NVIL(Estimator):
    presence = "sample"

    def __init__(self, config: ModelConfig, normalise_signal: bool = True, use_baseline: bool = True):
        super().__init__()
        self.baseline = BaselineNetwork(config)
        self.normalise_signal = normalise_signal
        self.use_baseline = use_baseline
        self.register_buffer("signal_mean", torch.zeros(()))
        self.register_buffer("signal_variance", torch.ones(()))

    def forward(self, model: AIR, trace: Trace) -> tuple[torch.Tensor, dict]:
        log_likelihood, per_step, log_q_presence = sampled_elbo_terms(model, trace)
        elbo = log_likelihood + per_step.sum(1)  # (B,)
        taken = trace.steps_taken  # (B, N)
        # Future-only: step i's presence cannot change the terms of earlier steps.
        signal = (log_likelihood[:, None] + per_step.flip(1).cumsum(1).flip(1)).detach()  # (B, N)
        predicted = self.baseline(trace) if self.use_baseline else torch.zeros_like(signal)
        centred = signal - predicted.detach()
        if self.normalise_signal:
            centred = standardise_signal(centred, taken, self.signal_mean, self.signal_variance, update=self.training)
        surrogate = (log_q_presence * centred).sum(1)  # log_q_presence is already masked to steps taken
        # The baseline learns to predict the signal of the steps actually taken (masked MSE).
        baseline_loss = (((signal - predicted) ** 2) * taken).sum(1).mean()
        loss = -(elbo + surrogate).mean() + baseline_loss
        return loss, {"elbo": elbo.mean().item(), "baseline_loss": baseline_loss.item()}


def standardise_signal(centred: torch.Tensor, taken: torch.Tensor, running_mean: torch.Tensor,
                     running_variance: torch.Tensor, update: bool) -> torch.Tensor:
    """The centred signal of the steps taken, minus its running mean and over its running sd (at least 1):
    its scale (thousands of nats early on) would otherwise set the discrete heads' step size. `update`
    moves the running buffers, in place, toward this batch's."""
    if update:
        weight = taken.sum().clamp(min=1)
        mean = (centred * taken).sum() / weight
        variance = (((centred - mean) ** 2) * taken).sum() / weight
        running_mean.lerp_(mean, 1 - SIGNAL_DECAY)
        running_variance.lerp_(variance, 1 - SIGNAL_DECAY)
    return (centred - running_mean) / running_variance.sqrt().clamp(min=1.0)
