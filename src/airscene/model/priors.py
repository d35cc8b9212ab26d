"""Priors of the generative model, used alike by the ELBO's terms and by sampling: the count, a truncated
geometric over AIR's steps (or each grid cell's Bernoulli presence); the standard normal of appearance codes,
backgrounds and the grid's windows; and Gaussians as the hot path builds them."""

from __future__ import annotations

import torch
from torch.distributions import Normal

from airscene.config import ModelConfig
from airscene.errors import AirsceneError


def normal(loc, scale) -> Normal:
    """N(loc, scale) without argument validation, which reads every parameter back to the host and so makes
    the device wait: the networks' sds are positive by construction (softplus plus a floor) and the priors'
    are validated settings."""
    return Normal(loc, scale, validate_args=False)


def normal_kl(p: Normal, q: Normal) -> torch.Tensor:
    """KL(p || q) of two Normals, elementwise, in closed form: torch.distributions' own formula, without its
    dispatch on the distributions' types, which torch.compile cannot trace."""
    variance_ratio = (p.scale / q.scale).pow(2)
    return 0.5 * (variance_ratio + ((p.loc - q.loc) / q.scale).pow(2) - 1 - variance_ratio.log())


def standard_normal() -> Normal:
    """N(0, 1): the prior of every z_what, of z_bg, and of a grid cell's window and depth latents."""
    return normal(0.0, 1.0)


def draw(prior: Normal, shape: tuple[int, ...], generator: torch.Generator | None = None,
         device: torch.device | str | None = None) -> torch.Tensor:
    """A sample of `shape` (ending in the prior's own shape, if any) from a Normal, drawn with `generator` on
    `device` (default: where the prior's parameters are)."""
    loc, scale = torch.as_tensor(prior.loc, device=device), torch.as_tensor(prior.scale, device=device)
    return loc + scale * torch.randn(shape, generator=generator, device=loc.device)


def prior_presence(batch: int, steps: int, rho: torch.Tensor, unary: bool, generator: torch.Generator | None = None,
                  count: int | None = None) -> torch.Tensor:
    """(batch, steps) presences from their prior: each Bernoulli(rho), and with `unary` (AIR's steps) only while
    the step before was present, which makes the count a truncated geometric. With `count`, the prior given the
    count: the first `count` steps, or (not unary: a grid's cells) `count` cells drawn at random."""
    if count is not None:
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= steps:
            raise AirsceneError(f"count is {count!r}: give a whole number from 0 to {steps}, the model's most objects")
        if unary:
            return (torch.arange(steps, device=rho.device) < count).float().expand(batch, steps).clone()
        ranks = torch.rand(batch, steps, generator=generator, device=rho.device).argsort(1).argsort(1)
        return (ranks < count).float()
    present = (torch.rand(batch, steps, generator=generator, device=rho.device) < rho).float()
    return torch.cumprod(present, 1) if unary else present


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


def apply_object_size(model: ModelConfig) -> None:
    """With object_size set, derive the window-scale prior and min_scale from it and the canvas; the three
    settings must then be left at their defaults (or already derived, as in a resumed run's config)."""
    if model.object_size is None:
        return
    mean, sd, min_scale = object_size_prior(model.object_size, model.image_size, model.window_limit)
    defaults = ModelConfig()
    derived = {"where_prior_mean": (mean, *model.where_prior_mean[1:]), "where_prior_sd": (sd, *model.where_prior_sd[1:]),
               "min_scale": min_scale}
    for name, value in derived.items():
        if getattr(model, name) not in (getattr(defaults, name), value):
            raise AirsceneError(f"settings object_size and {name} are both given: give the objects' size alone (it sets "
                                f"{name} to {value}), or drop --object-size")
        setattr(model, name, value)
