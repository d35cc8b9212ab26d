"""The ways of training the inverse-graphics network, each an airscene Estimator: a trace of one forward
pass in, a loss out.

Position and camera are reparameterised, their gradient coming through the renderer by finite differences.
`SceneNVIL` (any N): presence by the core's NVIL, with a baseline that reads the image; `SceneEnumerate` (any
N): the count summed out over the rendered prefixes; `MarginalIdentity` (a fixed count): the identity summed out.
In each, q(identity) learns the identity's exact conditional posterior (`identity_posterior_loss` says why) and
q(yaw) an importance-weighted estimate of the yaw's (`yaw_posterior_loss`): reweighted wake-sleep's wake updates,
found by rendering alternatives.
`Supervised`: the same network trained on the true scenes instead, their labels in a fixed order (the paper's
Figs. 6b and 7)."""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from airscene.config import TrainConfig
from airscene.errors import AirsceneError
from airscene.estimators import NVIL, Batch, Enumerate, Estimator
from airscene.estimators.elbo import count_log_posterior
from airscene.graphics.config import SceneModelConfig
from airscene.graphics.model import SceneAIR, SceneEncoder, SceneTrace, first_objects, von_mises, von_mises_log_prob
from airscene.graphics.scenes import SceneParameters


class ImageBaseline(nn.Module):
    """NVIL's baseline for inverse graphics: each step's learning signal predicted from the image alone."""

    def __init__(self, image_size: int, steps: int, hidden_size: int = 128):
        super().__init__()
        self.net = nn.Sequential(SceneEncoder(image_size, hidden_size), nn.Linear(hidden_size, steps))

    def forward(self, trace: SceneTrace) -> torch.Tensor:  # -> (B, N)
        return self.net(trace.images)


def scene_copies(scenes: SceneParameters, rows: torch.Tensor, detach: bool) -> SceneParameters:
    """Copies (indexing copies) of the scenes `rows` (R,), for one object of each to be replaced."""
    pose, camera = (scenes.pose.detach(), scenes.camera.detach()) if detach else (scenes.pose, scenes.camera)
    return SceneParameters(identity=scenes.identity[rows], present=scenes.present[rows], pose=pose[rows], camera=camera[rows])


def alternative_log_likelihoods(model: SceneAIR, trace: SceneTrace, differentiable: bool) -> torch.Tensor:
    """(B, N, K): log p(x | z) with step i's identity replaced by each k, everything else as drawn; 0 for
    absent steps. One batched render of K copies of every present object's scene."""
    scenes, images = trace.scenes, trace.images
    scene_index, slot = scenes.present.nonzero(as_tuple=True)  # (P,) each
    count, shapes = len(scene_index), model.shapes
    result = images.new_zeros(*scenes.identity.shape, shapes)
    if count == 0:
        return result
    rows = scene_index.repeat(shapes)  # (K * P,)
    alternatives = scene_copies(scenes, rows, detach=not differentiable)
    alternatives.identity[torch.arange(shapes * count, device=rows.device), slot.repeat(shapes)] = (
        torch.arange(shapes, device=rows.device).repeat_interleave(count))
    values = model.log_likelihood(images[rows], model.render(alternatives, differentiable)).view(shapes, count).T
    return result.index_put((scene_index, slot), values)  # (P, K) into (B, N, K)


def identity_posterior_loss(trace: SceneTrace, per_identity: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of q(identity^i | x) against p(identity^i | x, rest of z), exact from the likelihood of
    every identity (B, N, K), summed over present objects. Why not the ELBO's own gradient for
    q(identity): its logits' gradient is q(k) (L_k - mean L), and with likelihood gaps of hundreds of nats
    the first steps drive q to the shape that fits best on average while poses are still wrong; once
    q(true shape) is near 0 so is its gradient, and it never recovers (measured: every seed, by score
    function and by exact sum). Matching the posterior (the inclusive KL, as in reweighted wake-sleep) has
    no such trap."""
    posterior = torch.softmax(per_identity, -1).detach()  # uniform p(k) cancels
    present = trace.scenes.present.float()  # (B, N)
    return -((posterior * trace.identity_log_q).sum(-1) * present).sum(1).mean()


def yaw_alternatives(model: SceneAIR, trace: SceneTrace, proposals: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, N, M) each: M phases for every present object whose turn shows, drawn half from q (detached)
    and half uniformly, their differentiable log q, and their self-normalised importance weights
    p(x | phase, rest of z) / proposal (the uniform prior cancels); one batched render.

    Why a wake update (reweighted wake-sleep's, like the identity's posterior matching) rather than the
    likelihood's gradient: a von Mises has no reparameterised sample, and the yaw's posterior is a few
    renders away. Before the glimpse, a Gaussian yaw trained by the finite-difference gradient, which is
    right image by image, stayed one constant at chance error in every variant tried. The uniform half of
    the proposals finds the posterior's mode while q is still wide."""
    scenes, images = trace.scenes, trace.images
    order = model.symmetry_order[scenes.identity]  # (B, N)
    scene_index, slot = (scenes.present & (order > 0)).nonzero(as_tuple=True)  # (P,) each
    log_q = images.new_zeros(*scenes.identity.shape, proposals)
    weights = torch.zeros_like(log_q)
    if len(scene_index) == 0:
        return log_q, weights
    natural = trace.yaw_natural[scene_index, slot]  # (P, 2)
    current = von_mises(natural.detach())
    uniform = torch.rand(proposals, len(natural), device=images.device) * 2 * math.pi - math.pi
    phase = torch.where(torch.rand(proposals, len(natural), device=images.device) < 0.5,
                        current.sample((proposals,)), uniform)  # (M, P)
    log_proposal = torch.logaddexp(current.log_prob(phase), phase.new_tensor(-math.log(2 * math.pi))) - math.log(2)
    rows = scene_index.repeat(proposals)  # (M * P,)
    alternatives = scene_copies(scenes, rows, detach=True)
    alternatives.pose[torch.arange(len(rows), device=rows.device), slot.repeat(proposals), 2] = (
        phase / order[scene_index, slot]).flatten()
    log_likelihood = model.log_likelihood(images[rows], model.render(alternatives, differentiable=False))
    normalised = torch.softmax(log_likelihood.view(proposals, -1) - log_proposal, 0)  # (M, P)
    log_q = log_q.index_put((scene_index, slot), von_mises_log_prob(natural, phase).T)
    weights = weights.index_put((scene_index, slot), normalised.T)
    return log_q, weights


def yaw_posterior_loss(model: SceneAIR, trace: SceneTrace, proposals: int) -> torch.Tensor:
    """Cross-entropy of q(yaw^i | x) against p(yaw^i | x, rest of z), estimated by importance-weighted yaw
    proposals (`yaw_alternatives`); 0 for models of round shapes only."""
    if not model.infers_yaw:
        return trace.images.new_zeros(())
    log_q, weights = yaw_alternatives(model, trace, proposals)
    return -(weights * log_q).sum((1, 2)).mean()


def wake_updates(model: SceneAIR, trace: SceneTrace, yaw_proposals: int,
                 per_identity: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """The identity's and the yaw's wake updates on the trace's scenes (their sum) and their statistics;
    `per_identity` (B, N, K), where the estimator rendered the alternatives already, or they are rendered here."""
    if per_identity is None:
        per_identity = alternative_log_likelihoods(model, trace, differentiable=False)
    identity_loss = identity_posterior_loss(trace, per_identity)
    yaw_loss = yaw_posterior_loss(model, trace, yaw_proposals)
    return identity_loss + yaw_loss, {"identity_loss": identity_loss.detach(), "yaw_loss": yaw_loss.detach()}


class SceneNVIL(Estimator):
    """A variable count (the table top): the core's NVIL for the presence, with the wake updates."""

    presence = "sample"

    def __init__(self, config: SceneModelConfig, train: TrainConfig):
        super().__init__()
        self.nvil = NVIL(ImageBaseline(config.image_size, config.max_objects), normalise_signal=train.normalise_signal)
        self.yaw_proposals = train.yaw_proposals

    def forward(self, model: SceneAIR, trace: SceneTrace) -> tuple[torch.Tensor, dict]:
        loss, statistics = self.nvil(model, trace)
        wake, wake_statistics = wake_updates(model, trace, self.yaw_proposals)
        return loss + wake, {**statistics, **wake_statistics}


class SceneEnumerate(Enumerate):
    """A variable count summed out exactly: the core's Enumerate over the N+1 rendered prefixes, so the count's
    gradient has no score function and no baseline. The poses' and camera's likelihood gradient, which the
    prefixes' renders do not carry, comes from one count drawn from q(n) (an unbiased estimate of the sum's), and
    the wake updates work on that count's scene.

    Why: with NVIL, a step that had learned to find and name a cup (0.035 table units off, 177 nats better
    present than absent) still said absent with probability 0.97 after 2,000 steps (DAIR, distinct types, seed 2):
    the score function's signal, thousands of nats wide, never moved it back."""

    def __init__(self, yaw_proposals: int):
        super().__init__()
        self.yaw_proposals = yaw_proposals

    def forward(self, model: SceneAIR, trace: SceneTrace) -> tuple[torch.Tensor, dict]:
        loss, statistics = super().forward(model, trace)
        counts = torch.distributions.Categorical(logits=count_log_posterior(trace).detach(), validate_args=False).sample()
        drawn = dataclasses.replace(trace, scenes=first_objects(trace.scenes, counts))
        log_likelihood = model.trace_log_likelihood(drawn)  # (B,)
        pose_loss = -(log_likelihood - log_likelihood.detach()).mean()  # its value 0, its gradient the poses'
        wake, wake_statistics = wake_updates(model, drawn, self.yaw_proposals)
        return loss + pose_loss + wake, {**statistics, **wake_statistics}


class MarginalIdentity(Estimator):
    """A fixed count (single objects): the identity is summed out of the model exactly, so the bound is
    E_q(pose)[log sum_k p(k) p(x | k, pose)] - KL(pose), from a pass that rendered the drawn pose as every
    identity (K renders per image, no score function); q(identity | x) learns the exact posterior."""

    presence = "all"

    def __init__(self, yaw_proposals: int):
        super().__init__()
        self.yaw_proposals = yaw_proposals

    def forward(self, model: SceneAIR, trace: SceneTrace) -> tuple[torch.Tensor, dict]:
        per_identity = alternative_log_likelihoods(model, trace, differentiable=True)  # (B, N, K)
        marginal = torch.logsumexp(per_identity - math.log(model.shapes), -1).sum(1)  # (B,)
        elbo = marginal - trace.kl.sum(1) + trace.scene_log_ratio
        wake, wake_statistics = wake_updates(model, trace, self.yaw_proposals, per_identity)
        return -elbo.mean() + wake, {"elbo": elbo.mean().detach(), **wake_statistics}


def labels_in_type_order(truth: SceneParameters) -> SceneParameters:
    """The true scenes with each scene's objects in the fixed order a supervised network's labels take: by item
    type (the index into the experiment's shapes), objects of one type in the order the scene was generated,
    absent slots last. With distinct types this order is one function of the image; with repeated types the
    order among items of a type is arbitrary, which is what the paper's Fig. 7 shows a supervised network
    struggling with."""
    key = torch.where(truth.present, truth.identity, truth.identity.new_tensor(torch.iinfo(truth.identity.dtype).max))
    order = torch.sort(key, dim=1, stable=True).indices  # (B, N)
    return SceneParameters(identity=truth.identity.gather(1, order), present=truth.present.gather(1, order),
                           pose=truth.pose.gather(1, order[..., None].expand(-1, -1, truth.pose.shape[-1])),
                           camera=truth.camera)


class Supervised(Estimator):
    """The same network trained on the true scenes (the paper's Figs. 6b and 7), its most probable scene against
    the labels in a fixed order (`labels_in_type_order`): cross-entropy on step i's presence (where the count
    varies) and identity, squared error on its position and the camera's azimuth, and 1 - cos of its yaw error,
    each over the objects the labels hold. The yaw target is the true yaw, blind to the shape's symmetry: a cube
    at yaw a and at a + 90 degrees is the same image with different targets, which is what Fig. 6b shows this
    training cannot resolve."""

    presence = "all"

    def draw(self, model: SceneAIR, batch: Batch, exploration: float, step: int) -> SceneTrace:
        if batch.truth is None:
            raise AirsceneError("supervised training needs the true scenes of its batches")
        return dataclasses.replace(model(batch.images, self.presence, sample=False), truth=batch.truth)

    def forward(self, model: SceneAIR, trace: SceneTrace) -> tuple[torch.Tensor, dict]:
        predicted, truth = trace.scenes, labels_in_type_order(trace.truth)
        present = truth.present  # (B, N)
        objects = present.sum().clamp(min=1)
        rotates = (model.symmetry_order[truth.identity] > 0) & present
        identity_loss = -(trace.identity_log_q.gather(-1, truth.identity[..., None])[..., 0] * present).sum() / objects
        position_loss = (((predicted.pose[..., :2] - truth.pose[..., :2]) ** 2).sum(-1) * present).sum() / objects
        yaw_loss = ((1 - torch.cos(predicted.pose[..., 2] - truth.pose[..., 2])) * rotates).sum() / objects
        camera_loss = ((predicted.camera - truth.camera) ** 2).mean()
        loss = identity_loss + (position_loss + camera_loss) / 0.01 + yaw_loss
        statistics = {"identity_loss": identity_loss.detach(), "position_loss": position_loss.detach()}
        if not model.config.fixed_count:
            presence_loss = F.binary_cross_entropy_with_logits(trace.presence_logits, present.float(),
                                                               reduction="none").sum(1).mean()
            loss = loss + presence_loss
            statistics["presence_loss"] = presence_loss.detach()
        return loss, statistics


def make_scene_estimator(config: SceneModelConfig, train: TrainConfig) -> Estimator:
    """Inverse graphics' estimator of a config."""
    if train.estimator == "nvil":
        return SceneNVIL(config, train)
    if train.estimator == "supervised":
        return Supervised()
    if train.estimator == "enumerate":
        return SceneEnumerate(train.yaw_proposals)
    return MarginalIdentity(train.yaw_proposals)
