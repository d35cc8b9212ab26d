"""Attend, Infer, Repeat (Eslami et al. 2016): the inference network q_phi and generative model p_theta.

One forward pass returns a Trace of per-step tensors. How z_pres is drawn is the caller's choice
("sample" for score-function estimators, "all" for exact enumeration of the count, "relaxed" or
"straight_through" for the Concrete relaxation), so the model does not know which estimator trains it.

Exploration: during early training q(z_pres^i) is the mixture (1 - e) Bernoulli(p_i) + e Bernoulli(u_i),
itself a valid variational distribution, so the ELBO stays a bound for every e; u_i = (N-i+1)/(N-i+2)
makes the count uniform on 0..N when e = 1. With e near 1 every prefix of the steps keeps real weight
and is trained to explain the image on its own: step 1 alone learns to explain a whole digit. Without
it the count commits early to spreading one digit over several steps (which a weak decoder prefers),
and rarely recovers. The training loop anneals e to 0, after which q is the network's own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.distributions import Normal

from airscene.config import ModelConfig
from airscene.model.networks import GlimpseDecoder, GlimpseEncoder, ImageEmbedding, InferenceStep
from airscene.model.priors import count_log_prior
from airscene.model.transformer import crop_glimpse, paste_glimpse

PRESENCE_MODES = ("sample", "all", "relaxed", "straight_through")


@dataclass
class Trace:
    """Everything one forward pass drew, for an estimator to turn into a loss. N steps, B images."""

    images: torch.Tensor  # (B, C, H, W)
    presence_logits: torch.Tensor  # (B, N) logit of q(z_pres^i = 1 | x, z^{<i})
    z_pres: torch.Tensor  # (B, N) 0/1 when sampled; all 1 under "all"; in (0, 1) when relaxed
    z_where: torch.Tensor  # (B, N, 3)
    z_what: torch.Tensor  # (B, N, C_what)
    log_q_latents: torch.Tensor  # (B, N) log q(z_where^i) + log q(z_what^i)
    log_p_latents: torch.Tensor  # (B, N) log p(z_where^i) + log p(z_what^i)
    objects: torch.Tensor  # (B, N, C, H, W) each step's glimpse pasted onto an empty canvas

    @property
    def steps_taken(self) -> torch.Tensor:
        """(B, N): 1 where step i was reached, i.e. every earlier z_pres was 1 (z_pres^{i-1}, which already
        carries the product of the earlier ones)."""
        return torch.cat([torch.ones_like(self.z_pres[:, :1]), self.z_pres[:, :-1]], dim=1)


def draw_presence(logit: torch.Tensor, previous: torch.Tensor, presence: str, temperature: float) -> torch.Tensor:
    """z_pres^i (B, 1) from its logit (B,) and z_pres^{i-1} (B, 1). Multiplying by the previous value makes
    every step after an absent one absent too (the unary code of the count)."""
    if presence == "all":
        return torch.ones_like(previous)
    if presence == "sample":
        # Sampled, not reparameterised: the gradient comes from the estimator's score function.
        return torch.bernoulli(torch.sigmoid(logit.detach())).unsqueeze(1) * previous
    # Concrete (binary Gumbel-softmax, Maddison et al. 2017): sigmoid((logit + logistic noise) / temperature)
    # is a differentiable sample that becomes Bernoulli(sigmoid(logit)) as the temperature goes to 0.
    uniform = torch.rand_like(logit).clamp(1e-6, 1 - 1e-6)
    relaxed = torch.sigmoid((logit + torch.logit(uniform)) / temperature)
    if presence == "straight_through":
        # The forward pass sees the hard 0/1 value; the gradient is the relaxed sample's.
        relaxed = relaxed + ((relaxed > 0.5).float() - relaxed).detach()
    return relaxed.unsqueeze(1) * previous


class AIR(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.embed = ImageEmbedding(config.channels, config.image_size, config.embedding_size)
        self.infer_step = InferenceStep(config.embedding_size, config.what_size, config.hidden_size,
                                        config.where_prior_mean)
        self.encode = GlimpseEncoder(config.channels, config.glimpse_size, config.glimpse_hidden_size,
                                     config.what_size, config.glimpse_network)
        self.decode = GlimpseDecoder(config.channels, config.glimpse_size, config.glimpse_hidden_size,
                                     config.what_size, config.decoder_bias, config.glimpse_network)
        self.register_buffer("where_prior_mean", torch.tensor(config.where_prior_mean))
        self.register_buffer("where_prior_sd", torch.tensor(config.where_prior_sd))
        self.count_prior = 0.5  # rho; the training loop and airscene.load set it from the config's schedule
        # DAIR: the recurrent input at step i is the error canvas x - xhat^{i-1}, what is left to explain,
        # instead of x itself; the glimpse is still cropped from x.
        self.difference = config.model == "dair"

    def initial_latents(self, batch: int, device: torch.device):
        """z^0 = (z_where, z_what, z_pres) and the LSTM state before the first step."""
        z_where = torch.zeros(batch, 3, device=device)
        z_what = torch.zeros(batch, self.config.what_size, device=device)
        z_pres = torch.ones(batch, 1, device=device)
        hidden = torch.zeros(batch, self.config.hidden_size, device=device)
        return z_where, z_what, z_pres, (hidden, torch.zeros_like(hidden))

    def forward(self, images: torch.Tensor, presence: str = "sample", exploration: float = 0.0,
                temperature: float = 1.0) -> Trace:
        """images (B, C, H, W) in [0, 1] -> a Trace of all N steps; exploration is e above; temperature is
        the Concrete relaxation's, used only when presence is "relaxed" or "straight_through"."""
        if presence not in PRESENCE_MODES:
            raise ValueError(f"presence must be one of {PRESENCE_MODES}")
        c = self.config
        z_where, z_what, z_pres, state = self.initial_latents(images.shape[0], images.device)
        canvas = torch.zeros_like(images)  # xhat^{i-1}, kept for DAIR
        steps = []
        for step in range(c.max_objects):
            if step == 0 or self.difference:
                # The recurrent input's share of the LSTM gates, (B, 4H): AIR's input is x at every step,
                # so it is computed once; DAIR's is x - xhat^{i-1}, new at every step.
                image_gates = self.infer_step.image_gates(self.embed(images - canvas))
            if not c.step_memory:
                state = tuple(torch.zeros_like(part) for part in state)
            logit, where_mean, where_sd, state = self.infer_step(image_gates, z_where, z_what, z_pres, state)
            if exploration > 0:
                uniform_count = (c.max_objects - step) / (c.max_objects - step + 1)
                logit = torch.logit((1 - exploration) * torch.sigmoid(logit) + exploration * uniform_count)
            z_where, z_what, log_q, log_p = self.infer_object(images, where_mean, where_sd)
            z_pres = draw_presence(logit, z_pres, presence, temperature)
            rendered = self.render_object(z_what, z_where)  # (B, C, H, W)
            if self.difference:
                canvas = canvas + z_pres[:, :, None, None] * rendered
            steps.append((logit, z_pres[:, 0], z_where, z_what, log_q, log_p, rendered))
        columns = [torch.stack(column, dim=1) for column in zip(*steps)]
        return Trace(images, *columns)

    def infer_object(self, images, where_mean, where_sd):
        """Sample z_where, crop x_att there, sample z_what from it (both reparameterised); return their
        log-densities under q and under the prior."""
        c = self.config
        q_where = Normal(where_mean, where_sd)
        z_where = q_where.rsample()  # (B, 3)
        glimpse = crop_glimpse(images, z_where, c.glimpse_size, c.min_scale)  # (B, C, g, g)
        q_what = Normal(*self.encode(glimpse))
        z_what = q_what.rsample()  # (B, C_what)
        log_q = q_where.log_prob(z_where).sum(-1) + q_what.log_prob(z_what).sum(-1)
        log_p = (Normal(self.where_prior_mean, self.where_prior_sd).log_prob(z_where).sum(-1)
                 + Normal(0.0, 1.0).log_prob(z_what).sum(-1))
        return z_where, z_what, log_q, log_p

    def render_object(self, z_what: torch.Tensor, z_where: torch.Tensor) -> torch.Tensor:
        """y^i: the decoded glimpse y_att placed on the canvas by the inverse transform. (B, C, H, W)"""
        return paste_glimpse(self.decode(z_what), z_where, self.config.image_size, self.config.min_scale)

    def log_likelihood(self, images: torch.Tensor, canvas: torch.Tensor) -> torch.Tensor:
        """log p(x | canvas) summed over pixels; images (B, C, H, W), canvas (B, ..., C, H, W) -> (B, ...)."""
        images = images.view(images.shape[0], *([1] * (canvas.dim() - images.dim())), *images.shape[1:])
        if self.config.likelihood == "gaussian":
            return self.gaussian_log_likelihood((images - canvas).square().flatten(-3).sum(-1))
        mean = canvas.clamp(1e-4, 1 - 1e-4)  # a sum of glimpses can leave [0, 1]
        return (images * torch.log(mean) + (1 - images) * torch.log1p(-mean)).flatten(-3).sum(-1)

    def gaussian_log_likelihood(self, squared_error: torch.Tensor) -> torch.Tensor:
        """log N(x; canvas, sd^2 I) from sum (x - canvas)^2."""
        sd, pixels = self.config.likelihood_sd, self.config.channels * self.config.image_size ** 2
        return -0.5 * squared_error / sd ** 2 - pixels * (math.log(sd) + 0.5 * math.log(2 * math.pi))

    def count_log_prior(self, counts: torch.Tensor) -> torch.Tensor:
        return count_log_prior(counts, self.count_prior, self.config.max_objects)

    @torch.no_grad()
    def describe(self, images: torch.Tensor, threshold: float = 0.5):
        """Test-time inference: means instead of samples, no rendering (but DAIR's canvas), and early exit:
        each step runs only on the images whose every earlier step was present, and stops once none is left.
        Returns z_pres (B, N), presence probabilities (B, N; 0 for steps not reached), z_where (B, N, 3)
        and z_what (B, N, C_what), NaN where absent."""
        c = self.config
        batch = images.shape[0]
        present = images.new_zeros(batch, c.max_objects)
        presence = images.new_zeros(batch, c.max_objects)
        wheres = images.new_full((batch, c.max_objects, 3), float("nan"))
        whats = images.new_full((batch, c.max_objects, c.what_size), float("nan"))
        active = torch.arange(batch, device=images.device)  # images still being explained
        z_where, z_what, z_pres, state = self.initial_latents(batch, images.device)
        canvas = torch.zeros_like(images)
        for step in range(c.max_objects):
            if step == 0 or self.difference:
                image_gates = self.infer_step.image_gates(self.embed(images - canvas))
            if not c.step_memory:
                state = tuple(torch.zeros_like(part) for part in state)
            logit, z_where, _sd, state = self.infer_step(image_gates, z_where, z_what, z_pres, state)
            z_what, _ = self.encode(crop_glimpse(images, z_where, c.glimpse_size, c.min_scale))
            probability = torch.sigmoid(logit)
            presence[active, step] = probability
            keep = probability > threshold
            if not keep.any():
                break
            if not keep.all():  # drop the images that stopped (only then: indexing costs time)
                active, images, image_gates, z_where, z_what, z_pres, canvas = (
                    tensor[keep] for tensor in (active, images, image_gates, z_where, z_what, z_pres, canvas))
                state = (state[0][keep], state[1][keep])
            present[active, step] = 1.0
            wheres[active, step], whats[active, step] = z_where, z_what
            if self.difference:
                canvas = canvas + self.render_object(z_what, z_where)
        return present, presence, wheres, whats
