"""Local expectation gradients (Titsias and Lazaro-Gredilla 2015) for a grid's presences: every cell's
z_pres is summed out exactly, given the others as sampled. The grid's analogue of `enumerate`, which sums
out AIR's count; exact per cell and cheap, because a cell's presence only changes its own tile.

With independent q(z_pres^k) = Bernoulli(sigmoid(l_k)) and everything else fixed, the ELBO's gradient in
the logit l_k is
    q_k (1 - q_k) (E_{z^{-k}}[D_k] + logit(rho) - l_k),
D_k = f(z^k = 1, z^{-k}) - f(z^k = 0, z^{-k}) with f the log-likelihood plus the cell's other latents'
log p - log q. One trace gives every cell's D_k at once (GridAIR.presence_effects): K exact one-cell sums
from one sample, no score function, no baseline.

The factor q_k (1 - q_k) is the Fisher information of the logit, and it vanishes as q_k saturates: a cell
switched off early (most cells are empty, and a weak decoder explains little) would never learn to switch
on. So the logit takes the natural-gradient step instead, the bracket alone: it moves toward
E[D_k] + logit(rho), its coordinate-ascent (mean-field) optimum, the same fixed point as the ELBO's own
gradient, at a rate that does not vanish. The target is clipped to the logits' range. The other latents
are reparameterised through the sampled trace; the ELBO reported has the presence KL in closed form."""

from __future__ import annotations

import torch

from airscene.estimators.base import Estimator
from airscene.estimators.elbo import presence_kl
from airscene.model.grid import GridAIR, GridTrace
from airscene.model.networks import PRESENCE_LOGIT_BOUND


class LocalExpectation(Estimator):
    def forward(self, model: GridAIR, trace: GridTrace) -> tuple[torch.Tensor, dict]:
        log_likelihood = model.trace_log_likelihood(trace)  # (B,)
        latents = (trace.log_ratio * trace.z_pres).sum(1) + trace.scene_log_ratio  # (B,)
        kl = presence_kl(model, trace).sum(1)  # (B,) depends on the logits alone: in the natural step below
        effects = model.presence_effects(trace) + trace.log_ratio  # (B, K) D_k: present minus absent
        logits = trace.presence_logits
        target = (effects + torch.logit(model.count_prior)).clamp(-PRESENCE_LOGIT_BOUND, PRESENCE_LOGIT_BOUND)
        natural_step = (logits * (target - logits).detach()).sum(1)  # its gradient in l_k is the bracket
        loss = -(log_likelihood + latents + natural_step).mean()
        return loss, {"elbo": (log_likelihood + latents - kl).mean().detach()}
