"""Exact enumeration of the count: no score function, no baseline, no variance from z_pres.

All N steps run conditioned on presence and the continuous latents are sampled once; each prefix
n = 0..N is weighted by q(n | x), so L = sum_n q(n) [ELBO integrand for n]. The weights depend on the
presence probabilities differentiably, so the count's gradient is exact.
"""

from __future__ import annotations

import torch

from airscene.estimators.base import Estimator
from airscene.estimators.elbo import count_log_posterior, elbo_per_count
from airscene.model.air import AIR, GlimpseTrace


class Enumerate(Estimator):
    presence = "all"

    def forward(self, model: AIR, trace: GlimpseTrace) -> tuple[torch.Tensor, dict]:
        count_log_q = count_log_posterior(trace)  # (B, N+1)
        elbo = (count_log_q.exp() * elbo_per_count(model, trace, count_log_q)).sum(1)  # (B,)
        return -elbo.mean(), {"elbo": elbo.mean().detach()}
