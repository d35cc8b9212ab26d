"""Priors of the generative model: the count, a truncated geometric."""

from __future__ import annotations

import torch


def count_log_prior(counts: torch.Tensor, rho: torch.Tensor, max_objects: int) -> torch.Tensor:
    """log p(n) of the unary presence code z_pres^i ~ Bernoulli(rho) while z_pres^{i-1} = 1: n successes,
    then one failure unless n = N (no step N+1 is ever drawn). rho is a 0-d tensor (the model's buffer)."""
    return counts * torch.log(rho) + (counts < max_objects) * torch.log1p(-rho)


def presence_log_prior(z_pres: torch.Tensor, rho: torch.Tensor) -> torch.Tensor:
    """log p(z_pres^i | z_pres^{i-1} = 1) of each step's presence, elementwise."""
    return z_pres * torch.log(rho) + (1 - z_pres) * torch.log1p(-rho)
