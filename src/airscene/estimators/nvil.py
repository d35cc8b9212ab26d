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
from airscene.model.air import GlimpseTrace
from airscene.model.networks import ImageEmbedding
from airscene.model.trace import Trace

SIGNAL_DECAY = 0.9  # of the running mean and variance of the centred signal


class BaselineNetwork(nn.Module):
    """AIR's baseline: an RNN mirroring the inference network that sees x and z^{i-1} and predicts step i's
    learning signal."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.embed = ImageEmbedding(config.channels, config.image_size, config.embedding_size)
        self.lstm = nn.LSTMCell(config.embedding_size + 3 + config.what_size + 1, config.hidden_size)
        self.out = nn.Linear(config.hidden_size, 1)

    def forward(self, trace: GlimpseTrace) -> torch.Tensor:
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
    """`baseline` maps a trace to (B, N) predicted signals (AIR: BaselineNetwork; inverse graphics: a CNN of
    the image); None uses no baseline (the plain score function, for comparison)."""

    presence = "sample"

    def __init__(self, baseline: nn.Module | None, normalise_signal: bool = True):
        super().__init__()
        self.baseline = baseline
        self.normalise_signal = normalise_signal
        self.register_buffer("signal_mean", torch.zeros(()))
        self.register_buffer("signal_variance", torch.ones(()))

    def forward(self, model: nn.Module, trace: Trace) -> tuple[torch.Tensor, dict]:
        image_terms, per_step, log_q_presence = sampled_elbo_terms(model, trace)
        elbo = image_terms + per_step.sum(1)  # (B,)
        taken = trace.steps_taken  # (B, N)
        # Future-only: step i's presence cannot change the terms of earlier steps.
        signal = (image_terms[:, None] + per_step.flip(1).cumsum(1).flip(1)).detach()  # (B, N)
        predicted = self.baseline(trace) if self.baseline is not None else torch.zeros_like(signal)
        centred = signal - predicted.detach()
        if self.normalise_signal:
            centred = standardise_signal(centred, taken, self.signal_mean, self.signal_variance, update=self.training)
        surrogate = (log_q_presence * centred).sum(1)  # log_q_presence is already masked to steps taken
        # The baseline learns to predict the signal of the steps actually taken (masked MSE).
        baseline_loss = (((signal - predicted) ** 2) * taken).sum(1).mean()
        loss = -(elbo + surrogate).mean() + baseline_loss
        return loss, {"elbo": elbo.mean().detach(), "baseline_loss": baseline_loss.detach()}


def standardise_signal(centred: torch.Tensor, taken: torch.Tensor, running_mean: torch.Tensor,
                     running_variance: torch.Tensor, update: bool) -> torch.Tensor:
    """The centred signal of the steps taken, minus its running mean and over its running sd (at least 1):
    its scale (thousands of nats early on) would otherwise set the discrete heads' step size. `update`
    moves the running buffers, in place, toward this batch's."""
    if update:
        weight = taken.sum().clamp(min=1)
        mean = (centred * taken).sum() / weight
        variance = (((centred - mean) ** 2) * taken).sum() / weight
        running_mean.lerp_(mean, 1 - SIGNAL_DECAY)  # a skipped step puts them back (runs.train_step)
        running_variance.lerp_(variance, 1 - SIGNAL_DECAY)
    return (centred - running_mean) / running_variance.sqrt().clamp(min=1.0)
