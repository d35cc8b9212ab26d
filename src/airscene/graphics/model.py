"""AIR with a fixed renderer (the paper's Sec. 3.2): only the inference network is learned.

At step i the recurrent network looks at the image (DAIR: at what the objects drawn so far leave
unexplained, x minus their render) and at the latents of step i-1, and proposes
q(z_pres^i), q(identity^i), q(position^i) on the table and, for shapes whose turn shows, q(yaw^i); a
camera head proposes the camera's azimuth. The generative model p(x | z) is the renderer plus Gaussian
pixel noise, with priors: a geometric count, uniform identities, Gaussian positions, uniform yaw. The
position and camera are reparameterised and their gradient comes through the renderer by finite
differences; the discrete choices, and the yaw (`yaw_alternatives` says why), are left to the estimator."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.distributions import Normal, VonMises, kl_divergence

from airscene.errors import AirsceneError
from airscene.graphics.config import GraphicsConfig
from airscene.graphics.render import Renderer
from airscene.graphics.scenes import CAMERA_REACH, SHAPES, TABLE_REACH, SceneParameters
from airscene.model.networks import PRESENCE_LOGIT_BOUND, gaussian_parameters
from airscene.model.transformer import crop_glimpse

# An object's position on the table is POSITION_BOUND * tanh(u), u ~ N(0, 1) a priori, so the renderer
# never draws an object off the table or out of the camera's view. Unbounded, an object the network has
# not yet found is pushed out of the picture (an object drawn where there is none costs likelihood; one
# out of sight costs nothing), and out of sight it gets no gradient back. The camera's azimuth is unbounded.
POSITION_BOUND = TABLE_REACH + 0.05
# q(pose) starts narrow (sd softplus(-3) = 0.05). The renderer's gradient only reaches a guess that
# overlaps the object, and a narrow q makes the network's first guesses what per-image gradient descent
# from the table's centre would try, which finds most objects. Started wide (sd 0.7), the guesses
# scatter and few overlap: positions were found after 200 to 600 steps with the PyTorch renderer and not
# within 500 with MuJoCo; started narrow, within 100 and 250 (tests/test_graphics.py has a learning run).
INITIAL_POSE_SD_BIAS = -3.0
POSITION_PRIOR_SD = 1.0
CAMERA_PRIOR_SD = CAMERA_REACH / math.sqrt(3)
# q(yaw) reads a glimpse of half the image's width centred where the object is seen (an object is about
# a fifth), resampled to GLIMPSE_SIZE^2 pixels: the turn of a centred object is a fixed pattern of pixels.
# A CNN of the whole image (SceneEncoder) learned no cube yaw in 1,500 steps even supervised on the true
# phase; on the glimpse, 0.3 degrees in 200 steps (MuJoCo, measured by hand).
GLIMPSE_SCALE, GLIMPSE_SIZE = 2.0, 16


@dataclass
class SceneTrace:
    """One forward pass: the scenes drawn and the terms an estimator needs. B images, N steps, K shapes."""

    images: torch.Tensor  # (B, 3, H, W)
    scenes: SceneParameters  # drawn; pose and camera carry gradients to the network
    log_likelihood: torch.Tensor | None  # (B,) log p(x | z)
    log_q_presence: torch.Tensor  # (B, N) log q of each step's z_pres; 0 where not taken or the count is fixed
    log_q_choices: torch.Tensor  # (B, N) log q of each step's discrete choices (presence, identity)
    log_p_choices: torch.Tensor  # (B, N) their log prior
    kl: torch.Tensor  # (B, N) KL of each step's pose (the camera's is added to step 1)
    steps_taken: torch.Tensor  # (B, N) 1 where step i was reached
    identity_log_q: torch.Tensor  # (B, N, K) log q(identity^i = k)
    # (B, N, K) log p(x | z) with step i's identity set to k and the rest of z as drawn (steps present)
    log_likelihood_per_identity: torch.Tensor | None = None
    # (B, N, M) for M yaw proposals of each present object whose turn shows (0 elsewhere): log q of the
    # proposal, differentiable, and its self-normalised importance weight under p(yaw | x, rest of z)
    yaw_log_q: torch.Tensor | None = None
    yaw_weights: torch.Tensor | None = None


class SceneEncoder(nn.Module):
    """Image -> embedding, by a small CNN. Two extra input channels hold each pixel's coordinates, so
    the network can read positions off the image directly (CoordConv)."""

    def __init__(self, image_size: int, embedding_size: int):
        super().__init__()
        ramp = torch.linspace(-1, 1, image_size)
        self.register_buffer("coordinates", torch.stack(torch.meshgrid(ramp, ramp, indexing="ij")).unsqueeze(0))
        self.net = nn.Sequential(
            nn.Conv2d(5, 32, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(64, 64, 4, stride=2, padding=1), nn.ReLU(), nn.Flatten(),
            nn.Linear(64 * (image_size // 8) ** 2, embedding_size), nn.ReLU())

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, E)
        return self.net(torch.cat([images, self.coordinates.expand(len(images), -1, -1, -1)], 1))


class GlimpseEncoder(nn.Module):
    """Glimpse (B, 3, g, g) -> embedding (B, E), by a small CNN."""

    def __init__(self, embedding_size: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 32, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2, padding=1), nn.ReLU(), nn.Flatten(),
            nn.Linear(64 * (GLIMPSE_SIZE // 4) ** 2, embedding_size), nn.ReLU())

    def forward(self, glimpses: torch.Tensor) -> torch.Tensor:
        return self.net(glimpses)


class SceneAIR(nn.Module):
    """The inference network q(z | x), and the renderer-based model p(x | z) it is trained against."""

    def __init__(self, config: GraphicsConfig, renderer: Renderer | None = None):
        super().__init__()
        self.config, self.renderer = config, renderer
        self.shapes = len(config.shapes)
        hidden = config.hidden_size
        self.encoder = SceneEncoder(config.image_size, hidden)
        self.lstm = nn.LSTMCell(hidden + self.shapes + 3 + 1, hidden)
        self.object_head = nn.Linear(hidden, 1 + 4)  # presence logit, position mean and sd
        self.camera_head = nn.Linear(hidden, 2)
        # Identity has its own image features: in an encoder shared with the pose, the pose's gradient
        # (thousands of nats) decides what is learned, and colour, which only identity needs, was lost.
        self.identity_encoder = SceneEncoder(config.image_size, hidden)
        self.identity_head = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.ReLU(), nn.Linear(hidden, self.shapes))
        # Each shape's symmetry order s: yaw and yaw + 2 pi / s look alike, so q(yaw) is a von Mises on the
        # phase s * yaw, which has one mode where yaw has s. 0 for round shapes, whose yaw is not a latent.
        orders = [2 * math.pi / SHAPES[shape].symmetry for shape in config.shapes]
        self.register_buffer("symmetry_order", torch.tensor(orders))
        # The yaw has its own features, of a glimpse at the object, and head (q's natural parameters, a
        # 2-vector, per shape).
        self.infers_yaw = any(order > 0 for order in orders)
        if self.infers_yaw:
            self.yaw_encoder = GlimpseEncoder(hidden)
            self.yaw_head = nn.Linear(hidden, 2 * self.shapes)
        with torch.no_grad():  # start at the table's centre with a narrow pose, presence probability 0.88
            for head in (self.object_head, self.camera_head):
                head.weight.mul_(0.1)
                head.bias.zero_()
            self.object_head.bias[0] = 2.0
            self.object_head.bias[3:] = INITIAL_POSE_SD_BIAS

    def forward(self, images: torch.Tensor, exploration: float = 0.0, sample: bool = True,
                identity_alternatives: str | None = None, yaw_proposals: int = 0) -> SceneTrace:
        """Draw z ~ q(z | x) (or, with sample=False, take the most probable choices and the means), render
        it, and score it. `exploration` mixes q(z_pres) with a count-uniform Bernoulli, as in AIR.
        `identity_alternatives` also scores each present object as every identity in turn: "fixed" (no
        gradient) or "differentiable" (single objects: replaces the drawn scene's own render).
        `yaw_proposals` > 0 also scores that many other yaws of each object whose turn shows."""
        scenes, terms = self.propose(images, exploration, sample)
        trace = SceneTrace(images, scenes, None, terms["log_q_presence"], terms["log_q"], terms["log_p"], terms["kl"],
                           terms["taken"], terms["identity_log_q"])
        if yaw_proposals and self.infers_yaw:
            trace.yaw_log_q, trace.yaw_weights = self.yaw_alternatives(images, scenes, terms["yaw_natural"], yaw_proposals)
        if identity_alternatives == "differentiable":
            if self.config.max_objects != 1:
                raise AirsceneError("differentiable identity alternatives are for single objects")
            trace.log_likelihood_per_identity = self.alternative_likelihoods(images, scenes, differentiable=True)
            trace.log_likelihood = trace.log_likelihood_per_identity[:, 0].gather(1, scenes.identity)[:, 0]
            return trace
        trace.log_likelihood = self.log_likelihood(self.render_differentiable(scenes), images)
        if identity_alternatives == "fixed":
            trace.log_likelihood_per_identity = self.alternative_likelihoods(images, scenes, differentiable=False)
        return trace

    def render_differentiable(self, scenes: SceneParameters) -> torch.Tensor:
        """The render, with finite-difference gradients for the positions and the camera. None for the
        yaw, which saves its renders: its sample carries no gradient (q(yaw) learns from yaw_alternatives)."""
        return self.renderer.render_differentiable(scenes, yaw_gradient=False)

    def alternative_likelihoods(self, images: torch.Tensor, scenes: SceneParameters,
                                differentiable: bool) -> torch.Tensor:
        """(B, N, K): log p(x | z) with step i's identity replaced by each k, everything else as drawn;
        0 for absent steps. One batched render of K copies of every present object's scene."""
        scene_index, slot = scenes.present.nonzero(as_tuple=True)  # (P,) each
        count, shapes = len(scene_index), self.shapes
        result = images.new_zeros(*scenes.identity.shape, shapes)
        if count == 0:
            return result
        rows = scene_index.repeat(shapes)  # (K * P,)
        pose = scenes.pose if differentiable else scenes.pose.detach()
        alternatives = SceneParameters(scenes.identity[rows], scenes.present[rows], pose[rows],
                                       (scenes.camera if differentiable else scenes.camera.detach())[rows])
        alternatives.identity[torch.arange(shapes * count), slot.repeat(shapes)] = torch.arange(shapes).repeat_interleave(count)
        render = self.render_differentiable if differentiable else self.renderer.render
        values = self.log_likelihood(render(alternatives), images[rows]).view(shapes, count).T  # (P, K)
        return result.index_put((scene_index, slot), values)

    def yaw_alternatives(self, images: torch.Tensor, scenes: SceneParameters, natural: torch.Tensor,
                         proposals: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, N, M) each: M phases for every present object whose turn shows, drawn half from q (detached)
        and half uniformly, their differentiable log q, and their self-normalised importance weights
        p(x | phase, rest of z) / proposal (the uniform prior cancels); one batched render.

        Why a wake update (reweighted wake-sleep's, like the identity's posterior matching) rather than
        the likelihood's gradient: a von Mises has no reparameterised sample, and the yaw's posterior is a
        few renders away. Before the glimpse, a Gaussian yaw trained by the finite-difference gradient,
        which is right image by image, stayed one constant at chance error in every variant tried. The
        uniform half of the proposals finds the posterior's mode while q is still wide."""
        order = self.symmetry_order[scenes.identity]  # (B, N)
        scene_index, slot = (scenes.present & (order > 0)).nonzero(as_tuple=True)  # (P,) each
        log_q = images.new_zeros(*scenes.identity.shape, proposals)
        weights = torch.zeros_like(log_q)
        if len(scene_index) == 0:
            return log_q, weights
        natural = natural[scene_index, slot]  # (P, 2)
        current = von_mises(natural.detach())
        uniform = torch.rand(proposals, len(natural)) * 2 * math.pi - math.pi
        phase = torch.where(torch.rand(proposals, len(natural)) < 0.5, current.sample((proposals,)), uniform)  # (M, P)
        log_proposal = torch.logaddexp(current.log_prob(phase), torch.tensor(-math.log(2 * math.pi))) - math.log(2)
        rows = scene_index.repeat(proposals)  # (M * P,)
        alternatives = SceneParameters(scenes.identity[rows], scenes.present[rows], scenes.pose.detach()[rows],
                                       scenes.camera.detach()[rows])
        alternatives.pose[torch.arange(len(rows)), slot.repeat(proposals), 2] = (phase / order[scene_index, slot]).flatten()
        log_likelihood = self.log_likelihood(self.renderer.render(alternatives), images[rows]).view(proposals, -1)
        normalised = torch.softmax(log_likelihood - log_proposal, 0)  # (M, P)
        log_q = log_q.index_put((scene_index, slot), von_mises_log_prob(natural, phase).T)
        weights = weights.index_put((scene_index, slot), normalised.T)
        return log_q, weights

    @torch.no_grad()
    def canvas(self, columns: dict[str, list], camera: torch.Tensor, steps: int) -> torch.Tensor:
        """(B, 3, H, W): the render of the objects drawn so far (DAIR's xhat^{i-1}; the bare table at
        step 1). An input, so no gradient; it costs inference N renders per image."""
        batch, drawn = len(camera), len(columns["identity"])
        identity = torch.zeros(batch, steps, dtype=torch.long)
        present = torch.zeros(batch, steps, dtype=torch.bool)
        pose = torch.zeros(batch, steps, 3)
        if drawn:
            identity[:, :drawn] = torch.stack(columns["identity"], 1)
            present[:, :drawn] = torch.stack(columns["present"], 1)
            pose[:, :drawn] = torch.stack(columns["pose"], 1)
        return self.renderer.render(SceneParameters(identity, present, pose, camera))

    def log_likelihood(self, renders: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """(B,) log N(x; render, sd^2 I), summed over pixels and channels."""
        return Normal(renders, self.config.likelihood_sd).log_prob(images).sum((1, 2, 3))

    @torch.no_grad()
    def infer(self, images: torch.Tensor) -> SceneParameters:
        """The most probable scene for each image: one pass of the network (DAIR renders N canvases)."""
        return self.propose(images, sample=False)[0]

    def propose(self, images: torch.Tensor, exploration: float = 0.0,
                sample: bool = True) -> tuple[SceneParameters, dict[str, torch.Tensor]]:
        """The inference network's pass: the scenes and each step's (B, N) terms."""
        batch, steps, config = len(images), self.config.max_objects, self.config
        embedding = self.encoder(images)  # (B, E)
        identity_embedding = self.identity_encoder(images)  # (B, E)
        camera_mean, camera_sd = gaussian_parameters(self.camera_head(embedding))  # (B, 1) each
        if config.move_camera:
            camera = camera_mean + camera_sd * torch.randn_like(camera_mean) if sample else camera_mean
            camera_kl = kl_divergence(Normal(camera_mean, camera_sd), Normal(0.0, CAMERA_PRIOR_SD)).sum(1)
        else:
            camera, camera_kl = torch.zeros_like(camera_mean), torch.zeros(batch)
        state = None
        previous = images.new_zeros(batch, self.shapes + 3)  # identity one-hot and pose of step i-1
        present = images.new_ones(batch)  # z_pres^{i-1}; step 1 is always taken
        columns: dict[str, list] = {name: [] for name in ("identity", "present", "pose", "log_q", "log_p", "kl", "taken",
                                                          "logits", "identity_log_q", "log_q_presence", "yaw_natural")}
        for step in range(steps):
            if config.model == "dair":
                embedding = self.encoder(images - self.canvas(columns, camera, steps))  # what is left to explain
            state = self.lstm(torch.cat([embedding, previous, present[:, None]], 1), state)
            output = self.object_head(state[0])
            presence_logit = PRESENCE_LOGIT_BOUND * torch.tanh(output[:, 0] / PRESENCE_LOGIT_BOUND)
            identity_logits = self.identity_head(torch.cat([state[0], identity_embedding], 1))  # (B, K)
            position_mean, position_sd = gaussian_parameters(output[:, 1:])  # (B, 2) each
            taken = present
            log_q, log_p = torch.zeros(batch), torch.zeros(batch)
            log_q_presence = torch.zeros(batch)
            if steps > 1:  # a variable count: z_pres^i ~ Bernoulli, the unary code of the count
                probability = torch.sigmoid(presence_logit)
                uniform = (steps - step) / (steps - step + 1)
                probability = (1 - exploration) * probability + exploration * uniform
                if sample:
                    decision = torch.bernoulli(probability.detach())
                else:
                    decision = (probability > 0.5).float()
                present = decision * taken
                log_q_presence = taken * torch.where(decision > 0, probability, 1 - probability).clamp(min=1e-6).log()
                log_q = log_q_presence
                rho = config.presence_prior
                log_p = taken * torch.where(decision > 0, math.log(rho), math.log(1 - rho))
            identity_log_q = torch.log_softmax(identity_logits, 1)  # (B, K), in logs: q(k) may underflow
            identity_distribution = torch.distributions.Categorical(logits=identity_log_q)
            identity = identity_distribution.sample() if sample else identity_log_q.argmax(1)
            log_q = log_q + present * identity_distribution.log_prob(identity)
            log_p = log_p + present * -math.log(self.shapes)
            unbounded = position_mean + position_sd * torch.randn_like(position_mean) if sample else position_mean
            position = POSITION_BOUND * torch.tanh(unbounded)  # (B, 2)
            kl = kl_divergence(Normal(position_mean, position_sd), Normal(0.0, POSITION_PRIOR_SD)).sum(1)
            yaw, yaw_natural, yaw_kl = self.propose_yaw(images, identity, position, camera, sample)
            kl = present * (kl + yaw_kl)
            pose = torch.cat([position, yaw[:, None]], 1)
            # The next step sees what this one chose; detached, as in AIR: the choices are samples.
            previous = torch.cat([F.one_hot(identity, self.shapes).float() * present[:, None],
                                  pose.detach() * present[:, None]], 1)
            for name, value in (("identity", identity), ("present", present > 0), ("pose", pose), ("log_q", log_q),
                                ("log_p", log_p), ("kl", kl), ("taken", taken), ("logits", identity_logits),
                                ("identity_log_q", identity_log_q), ("log_q_presence", log_q_presence),
                                ("yaw_natural", yaw_natural)):
                columns[name].append(value)
        stacked = {name: torch.stack(values, 1) for name, values in columns.items()}
        stacked["kl"][:, 0] += camera_kl
        scenes = SceneParameters(stacked["identity"], stacked["present"], stacked["pose"], camera)
        return scenes, stacked

    def propose_yaw(self, images: torch.Tensor, identity: torch.Tensor, position: torch.Tensor,
                    camera: torch.Tensor, sample: bool) -> tuple[torch.Tensor, ...]:
        """The chosen shape's yaw (B,), q's natural parameters (B, 2) and KL(q || uniform) (B,), from a
        glimpse at the object. q(phase) is a von Mises; yaw = phase / s. Round shapes: yaw 0, KL 0."""
        order = self.symmetry_order[identity]  # (B,)
        if not self.infers_yaw:
            zeros = torch.zeros_like(order)
            return zeros, zeros[:, None].expand(-1, 2), zeros
        # Where to look is an input here (detached): the position learns from the likelihood, not from
        # how well the yaw can be read at it.
        centre = self.renderer.locate(identity, position.detach(), camera.detach())  # (B, 2)
        window = torch.cat([torch.full_like(centre[:, :1], GLIMPSE_SCALE), centre], 1)  # AIR's z_where (s, x, y)
        glimpses = crop_glimpse(images, window, GLIMPSE_SIZE, min_scale=1.0)  # (B, 3, g, g)
        natural = self.yaw_head(self.yaw_encoder(glimpses)).view(len(identity), self.shapes, 2)
        natural = natural[torch.arange(len(identity)), identity]  # (B, 2) for the chosen shape
        phase = von_mises(natural.detach()).sample() if sample else torch.atan2(natural[:, 1], natural[:, 0])
        yaw = torch.where(order > 0, phase / order.clamp(min=1), 0.0)
        # The KL enters the bound's value but not q(yaw)'s gradient: the wake update alone trains q(yaw)
        # (yaw_alternatives), and the KL's pull toward the uniform prior would only fight it.
        kappa = natural.detach().norm(dim=1)
        ratio = torch.special.i1e(kappa) / torch.special.i0e(kappa)  # E[cos(phase - mean)]
        kl = kappa * ratio - torch.special.i0e(kappa).log() - kappa  # KL(von Mises || uniform on the circle)
        return yaw, natural, torch.where(order > 0, kl, 0.0)


def von_mises(natural: torch.Tensor) -> VonMises:
    """The von Mises with natural parameters (..., 2): mean direction atan2(b, a), concentration |(a, b)|."""
    return VonMises(torch.atan2(natural[..., 1], natural[..., 0]), natural.norm(dim=-1).clamp(min=1e-4))


def von_mises_log_prob(natural: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
    """log q(phase) = a cos(phase) + b sin(phase) - log(2 pi I0(|(a, b)|)), natural (P, 2), phase (M, P).
    Written in the natural parameters because its gradient there, the target's mean (cos, sin) minus q's,
    does not vanish as q widens; in mean and concentration, the mean's gradient is the concentration
    times sin(phase - mean), so a q that widened early (its best fit while its mean is wrong) would
    hardly move its mean."""
    kappa = (natural.pow(2).sum(-1) + 1e-8).sqrt()  # (P,)
    log_normaliser = math.log(2 * math.pi) + torch.special.i0e(kappa).log() + kappa
    return natural[:, 0] * phase.cos() + natural[:, 1] * phase.sin() - log_normaliser
