"""Priors of the generative model: the count (a truncated geometric) and its annealing."""

from __future__ import annotations

import math

import torch

from airscene.config import TrainConfig


def count_prior_at(step: int, config: TrainConfig) -> float:
    """The presence prior rho at a training step: fixed, or annealed as in the paper (from near 1, which
    lets every step be used while the decoder learns, down to a value that charges each extra object
    log(1/rho))."""
    start, end = config.count_prior_start, config.count_prior_end
    if config.count_prior == "none":
        return end
    progress = min(step / max(config.count_prior_steps, 1), 1.0)
    if config.count_prior == "linear":
        return start + (end - start) * progress
    return math.exp(math.log(start) + (math.log(end) - math.log(start)) * progress)


def count_log_prior(counts: torch.Tensor, rho: float, max_objects: int) -> torch.Tensor:
    """log p(n) of the unary presence code z_pres^i ~ Bernoulli(rho) while z_pres^{i-1} = 1: n successes,
    then one failure unless n = N (no step N+1 is ever drawn)."""
    return counts * math.log(rho) + (counts < max_objects) * math.log1p(-rho)
