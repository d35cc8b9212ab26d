"""Losses for the inverse-graphics network, each from one forward pass.

Position and camera are reparameterised, their gradient coming through the renderer by finite differences.
`ScoreFunction` (any N): presence gets the score-function gradient with a learned baseline (NVIL), as
airscene.estimators.nvil does for AIR; `MarginalIdentity` (single objects) sums the identity out. In both,
q(identity) learns the identity's exact conditional posterior (`identity_posterior_loss` says why) and
q(yaw) an importance-weighted estimate of the yaw's (`yaw_posterior_loss`).
`supervised_loss`: the same network trained on the true scene instead (the paper's Fig. 6b)."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from airscene.estimators.nvil import standardise_signal
from airscene.graphics.model import SceneEncoder, SceneTrace
from airscene.graphics.scenes import SHAPES, SceneParameters


class ScoreFunction(nn.Module):
    identity_alternatives = "fixed"

    def __init__(self, image_size: int, steps: int, hidden_size: int = 128):
        super().__init__()
        # The baseline predicts each step's learning signal from the image alone (detached: it changes
        # the estimator's variance, not its mean).
        self.baseline = nn.Sequential(SceneEncoder(image_size, hidden_size), nn.Linear(hidden_size, steps))
        self.register_buffer("signal_mean", torch.zeros(()))
        self.register_buffer("signal_variance", torch.ones(()))

    def forward(self, trace: SceneTrace) -> tuple[torch.Tensor, dict]:
        per_step = trace.log_p_choices - trace.log_q_choices - trace.kl  # (B, N)
        elbo = trace.log_likelihood + per_step.sum(1)  # (B,)
        # Step i's presence cannot change the terms of earlier steps: its signal is the rest of the ELBO.
        signal = (trace.log_likelihood[:, None] + per_step.flip(1).cumsum(1).flip(1)).detach()  # (B, N)
        predicted = self.baseline(trace.images)
        centred = standardise_signal(signal - predicted.detach(), trace.steps_taken, self.signal_mean,
                                   self.signal_variance, update=self.training)
        surrogate = (trace.log_q_presence * centred).sum(1)  # log q is already 0 for steps not taken
        baseline_loss = (((signal - predicted) ** 2) * trace.steps_taken).sum(1).mean()
        identity_loss, yaw_loss = identity_posterior_loss(trace), yaw_posterior_loss(trace)
        loss = -(elbo + surrogate).mean() + baseline_loss + identity_loss + yaw_loss
        return loss, {"elbo": elbo.mean().item(), "baseline_loss": baseline_loss.item(),
                      "identity_loss": identity_loss.item(), "yaw_loss": yaw_loss.item()}


class MarginalIdentity(nn.Module):
    """Single objects: the identity is summed out of the model exactly, so the bound is
    E_q(pose)[log sum_k p(k) p(x | k, pose)] - KL(pose), from a pass that rendered the drawn pose as every
    identity (K renders per image, no score function); q(identity | x) learns the exact posterior."""

    identity_alternatives = "differentiable"

    def forward(self, trace: SceneTrace) -> tuple[torch.Tensor, dict]:
        per_identity = trace.log_likelihood_per_identity[:, 0]  # (B, K)
        elbo = torch.logsumexp(per_identity - math.log(per_identity.shape[1]), 1) - trace.kl.sum(1)  # (B,)
        identity_loss, yaw_loss = identity_posterior_loss(trace), yaw_posterior_loss(trace)
        return -elbo.mean() + identity_loss + yaw_loss, {"elbo": elbo.mean().item(), "identity_loss": identity_loss.item(),
                                                         "yaw_loss": yaw_loss.item()}


def identity_posterior_loss(trace: SceneTrace) -> torch.Tensor:
    """Cross-entropy of q(identity^i | x) against p(identity^i | x, rest of z), exact by rendering every
    identity, summed over present objects. Why not the ELBO's own gradient for q(identity): its logits'
    gradient is q(k) (L_k - mean L), and with likelihood gaps of hundreds of nats the first steps drive q
    to the shape that fits best on average while poses are still wrong; once q(true shape) is near 0 so
    is its gradient, and it never recovers (measured: every seed, by score function and by exact sum).
    Matching the posterior (the inclusive KL, as in reweighted wake-sleep) has no such trap."""
    posterior = torch.softmax(trace.log_likelihood_per_identity, -1).detach()  # uniform p(k) cancels
    present = trace.scenes.present.float()  # (B, N)
    return -((posterior * trace.identity_log_q).sum(-1) * present).sum(1).mean()


def yaw_posterior_loss(trace: SceneTrace) -> torch.Tensor:
    """Cross-entropy of q(yaw^i | x) against p(yaw^i | x, rest of z), estimated by the importance-weighted
    yaw proposals of the forward pass (`SceneAIR.yaw_alternatives`); 0 if it drew none."""
    if trace.yaw_log_q is None:
        return trace.images.new_zeros(())
    return -(trace.yaw_weights * trace.yaw_log_q).sum((1, 2)).mean()


def supervised_loss(predicted: SceneParameters, identity_logits: torch.Tensor, truth: SceneParameters,
                    shapes: tuple[str, ...]) -> tuple[torch.Tensor, dict]:
    """Cross-entropy on the identity, squared error on the position and 1 - cos of the yaw error, on the
    network's first step (one object), from its most probable proposal (`SceneAIR.propose`, sample=False). The yaw target is the true yaw, blind to the shape's symmetry: a
    cube at yaw a and at a + 90 degrees is the same image with different targets, which is what the
    paper's Fig. 6b shows this training cannot resolve."""
    logits = identity_logits[:, 0]  # (B, K)
    pose, target = predicted.pose[:, 0], truth.pose[:, 0]  # (B, 3)
    rotates = torch.tensor([math.isfinite(SHAPES[shape].symmetry) for shape in shapes])[truth.identity[:, 0]]
    identity_loss = F.cross_entropy(logits, truth.identity[:, 0])
    position_loss = ((pose[:, :2] - target[:, :2]) ** 2).sum(1).mean()
    yaw_loss = ((1 - torch.cos(pose[:, 2] - target[:, 2])) * rotates).mean()
    loss = identity_loss + position_loss / 0.01 + yaw_loss
    return loss, {"elbo": math.nan, "identity_loss": identity_loss.item(), "position_loss": position_loss.item()}
