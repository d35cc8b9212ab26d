"""VIMCO (Mnih & Rezende 2016): K traces per image, the importance-weighted bound
L_K = log (1/K) sum_k w_k with w_k = p(x, z_k) / q(z_k | x), and a score function for the count whose
control variate for sample k comes from the other K - 1 samples, so it needs no learned baseline.

The continuous latents are reparameterised and reach L_K directly. For z_pres the learning signal of
sample k is L_K - L_K^{-k}, where L_K^{-k} replaces w_k by the geometric mean of the others: what the
bound would be had sample k been ordinary. It is local to each sample, unlike NVIL's one signal per image.
"""

from __future__ import annotations

import math

import torch

from airscene.estimators.base import Estimator
from airscene.estimators.elbo import sampled_elbo_terms
from airscene.model.trace import Trace


def leave_one_out_signal(log_weights: torch.Tensor) -> torch.Tensor:
    """(B, K) log weights -> (B, K) learning signals L_K - L_K^{-k}."""
    k = log_weights.shape[1]
    others = (log_weights.sum(1, keepdim=True) - log_weights) / (k - 1)  # (B, K) mean log weight of the others
    # Row j holds the K log weights with sample j's replaced by the others' mean: (B, K, K).
    replaced = log_weights.unsqueeze(1).expand(-1, k, -1).clone()
    replaced.diagonal(dim1=1, dim2=2).copy_(others)
    return torch.logsumexp(log_weights, 1, keepdim=True) - torch.logsumexp(replaced, 2)


class VIMCO(Estimator):
    presence = "sample"

    def __init__(self, samples: int):
        super().__init__()
        if samples < 2:
            raise ValueError("VIMCO needs at least 2 samples per image")
        self.samples = samples

    def forward(self, model, trace: Trace) -> tuple[torch.Tensor, dict]:
        image_terms, per_step, log_q_presence = sampled_elbo_terms(model, trace)
        k = self.samples
        log_weights = (image_terms + per_step.sum(1)).view(-1, k)  # (B, K)
        bound = torch.logsumexp(log_weights, 1) - math.log(k)  # (B,)
        signal = leave_one_out_signal(log_weights.detach())  # (B, K)
        surrogate = (log_q_presence.sum(1).view(-1, k) * signal).sum(1)  # (B,)
        loss = -(bound + surrogate).mean()
        return loss, {"elbo": log_weights.mean().detach(), "bound": bound.mean().detach()}
