"""Priors of the generative model: the count, a truncated geometric; and Gaussians as the hot path builds them."""

from __future__ import annotations

import torch
from torch.distributions import Normal


def normal(loc, scale) -> Normal:
    """N(loc, scale) without argument validation, which reads every parameter back to the host and so makes
    the device wait: the networks' sds are positive by construction (softplus plus a floor) and the priors'
    are validated settings."""
    return Normal(loc, scale, validate_args=False)


def count_log_prior(counts: torch.Tensor, rho: torch.Tensor, max_objects: int) -> torch.Tensor:
    """log p(n) of the unary presence code z_pres^i ~ Bernoulli(rho) while z_pres^{i-1} = 1: n successes,
    then one failure unless n = N (no step N+1 is ever drawn). rho is a 0-d tensor (the model's buffer)."""
    return counts * torch.log(rho) + (counts < max_objects) * torch.log1p(-rho)


def presence_log_prior(z_pres: torch.Tensor, rho: torch.Tensor) -> torch.Tensor:
    """log p(z_pres^i | z_pres^{i-1} = 1) of each step's presence, elementwise."""
    return z_pres * torch.log(rho) + (1 - z_pres) * torch.log1p(-rho)


WINDOW_MARGIN = 1.1  # the prior's window is a little wider than the object it frames


def object_size_prior(object_size: tuple[float, ...], image_size: int, window_limit: float) -> tuple[float, float, float]:
    """For objects of `object_size` pixels (SIZE or MIN,MAX) on image_size canvases: the mean and sd of the
    window scale s (the window spans 1/s of the canvas), covering the size range within two sd, and
    min_scale, which keeps every window narrower than window_limit times the largest objects."""
    low, high = min(object_size), max(object_size)
    largest, smallest = image_size / (WINDOW_MARGIN * low), image_size / (WINDOW_MARGIN * high)
    mean = (largest + smallest) / 2
    sd = max((largest - smallest) / 4, 0.05 * mean)
    return round(mean, 4), round(sd, 4), round(image_size / (window_limit * high), 4)
