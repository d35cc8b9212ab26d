"""Priors of the generative model: the count (a truncated geometric) and its annealing."""

from __future__ import annotations

import math

import torch


def count_prior_at(step: int, schedule: str, start: float, end: float, steps: int) -> float:
    """The presence prior rho at a training step. Starting near 1 lets every step be used while the
    decoder learns; decaying it then charges each extra object log(rho), favouring sparse scenes."""
    if schedule == "none":
        return end
    progress = min(step / max(steps, 1), 1.0)
    if schedule == "linear":
        return start + (end - start) * progress
    return math.exp(math.log(start) + (math.log(end) - math.log(start)) * progress)


def count_log_prior(counts: torch.Tensor, rho: float, max_objects: int) -> torch.Tensor:
    """log p(n) of the unary presence code z_pres^i ~ Bernoulli(rho) while z_pres^{i-1} = 1: n successes,
    then one failure unless n = N (no step N+1 is ever drawn)."""
    return counts * math.log(rho) + (counts < max_objects) * math.log1p(-rho)
