"""The ELBO's terms, computed once from a trace and shared by every estimator (and every model: the
model supplies log p(x | z) of a trace, of each prefix of its objects, and its count prior)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from airscene.model.priors import presence_log_prior
from airscene.model.trace import Trace


def count_log_posterior(trace: Trace) -> torch.Tensor:
    """(B, N+1) log q(n | x) = sum_{i<=n} log p_i + log(1 - p_{n+1}), with p_{N+1} = 0; computed from logits
    so that confident steps cannot give log 0."""
    log_present = F.logsigmoid(trace.presence_logits)  # (B, N)
    log_absent = F.logsigmoid(-trace.presence_logits)
    zero = torch.zeros_like(log_present[:, :1])
    return torch.cat([zero, log_present.cumsum(1)], 1) + torch.cat([log_absent, zero], 1)


def cumulative_latent_terms(trace: Trace) -> torch.Tensor:
    """(B, N+1): sum_{i<=n} (log p(z^i) - log q(z^i)) for the continuous latents of each prefix n."""
    return torch.cat([torch.zeros_like(trace.log_ratio[:, :1]), trace.log_ratio.cumsum(1)], 1)


def elbo_per_count(model, trace: Trace, count_log_q: torch.Tensor) -> torch.Tensor:
    """(B, N+1): the ELBO's integrand for each count n with the continuous latents of the trace:
    log p(x | z^{1:n}) + log p(n) - log q(n) + sum_{i<=n} (log p(z^i) - log q(z^i)).
    count_log_q (B, N+1) is count_log_posterior(trace)."""
    counts = torch.arange(model.config.max_objects + 1, device=trace.images.device, dtype=torch.float32)
    return (model.prefix_log_likelihoods(trace) + model.count_log_prior(counts) - count_log_q
            + cumulative_latent_terms(trace) + trace.scene_log_ratio[:, None])


def presence_kl(model, trace: Trace) -> torch.Tensor:
    """(B, N): KL(q(z_pres^i) || Bernoulli(rho)) of each step, in closed form. Summed over the steps taken
    it is KL(q(n | x) || p(n)), the count's whole share of the ELBO."""
    rho = model.count_prior
    log_present, log_absent = F.logsigmoid(trace.presence_logits), F.logsigmoid(-trace.presence_logits)
    return (log_present.exp() * (log_present - torch.log(rho))
            + log_absent.exp() * (log_absent - torch.log1p(-rho)))


def sampled_elbo_terms(model, trace: Trace) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For a trace with sampled z_pres: the ELBO's terms no step's presence can change (B,), log p(x | z)
    and the image-level latents' log p - log q; the per-step terms (B, N), i.e. the other latents'
    log p - log q of the steps present plus log p(z_pres^i) - log q(z_pres^i) of every step taken (their
    sum over steps is log p(n) - log q(n) + ...); and log q(z_pres^i) (B, N) of the steps taken, 0 elsewhere."""
    image_terms = model.trace_log_likelihood(trace) + trace.scene_log_ratio
    taken = trace.steps_taken
    log_q_presence = -F.binary_cross_entropy_with_logits(trace.presence_logits, trace.z_pres, reduction="none") * taken
    per_step = (trace.log_ratio * trace.z_pres + presence_log_prior(trace.z_pres, model.count_prior) * taken
                - log_q_presence)
    return image_terms, per_step, log_q_presence


def log_weight(model, trace: Trace) -> torch.Tensor:
    """(B,) log p(x, z) - log q(z | x) of a trace's latents, its presences counted as drawn: one sample's
    importance weight, a one-sample estimate of the ELBO."""
    image_terms, per_step, _ = sampled_elbo_terms(model, trace)
    return image_terms + per_step.sum(1)


def greedy_counts(trace: Trace) -> torch.Tensor:
    """(B,) the count inference would report."""
    return trace.greedy_presence().sum(1)
