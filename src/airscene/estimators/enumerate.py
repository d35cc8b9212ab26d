"""Exact enumeration of the count: no score function, no baseline, no variance from z_pres.

All N steps run conditioned on presence and the continuous latents are sampled once; each prefix
n = 0..N is weighted by q(n | x), so L = sum_n q(n) [ELBO integrand for n]. The weights depend on the
presence probabilities differentiably, so the count's gradient is exact.

Exploration: the count weights are q'(n) = (1 - e) q(n) + e / (N+1), a mixture that is itself a valid
variational distribution, so L stays a lower bound for every e. Early in training (e near 1) every prefix
is trained to explain the image on its own: step 1 alone learns to explain as much as it can, and so
on. Without it the exact gradient commits early to spreading one digit over several steps (which a
weak decoder prefers), the presence logits saturate, and the count never recovers. e anneals to 0,
after which q' = q.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from airscene.estimators.elbo import count_log_posterior, elbo_per_count
from airscene.model.air import AIR, Trace


class Enumerate(nn.Module):
    presence = "all"

    def __init__(self):
        super().__init__()
        self.exploration = 0.0  # e, set by the training loop's schedule

    def forward(self, model: AIR, trace: Trace) -> tuple[torch.Tensor, dict]:
        count_log_q = count_log_posterior(trace)  # (B, N+1)
        if self.exploration > 0:
            mixture = (1 - self.exploration) * count_log_q.exp() + self.exploration / count_log_q.shape[1]
            count_log_q = mixture.log()
        elbo = (count_log_q.exp() * elbo_per_count(model, trace, count_log_q)).sum(1)  # (B,)
        return -elbo.mean(), {"elbo": elbo.mean().item()}
