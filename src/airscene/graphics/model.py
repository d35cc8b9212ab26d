"""AIR with a fixed renderer (the paper's Sec. 3.2): only the inference network is learned.

SceneAIR is AIR's recurrence (airscene.model.air.AttendInferRepeat) with another object: at step i the
recurrent network looks at the image (DAIR: at what the objects drawn so far leave unexplained, x minus
their render) and at the latents of step i-1, and proposes q(z_pres^i) and q(position^i) on the table (the
core's inference step, with the table position as z_where), q(identity^i) and, for shapes whose turn
shows, q(yaw^i); a camera head proposes the camera's azimuth, a latent of the whole image. The generative
model p(x | z) is the renderer plus Gaussian pixel noise, with priors: a geometric count, uniform
identities, Gaussian positions, uniform yaw. The position and camera are reparameterised and their gradient
comes through the renderer by finite differences; the discrete choices and the yaw are left to the
estimator (graphics/estimators.py)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.distributions import VonMises

from airscene.errors import AirsceneError
from airscene.graphics.config import SceneModelConfig
from airscene.graphics.renderers import Renderer
from airscene.graphics.scenes import CAMERA_REACH, SHAPES, TABLE_REACH, SceneParameters
from airscene.model.air import AttendInferRepeat, brightest_blob
from airscene.model.networks import InferenceStep, gaussian_parameters
from airscene.model.priors import draw, normal, normal_kl, prior_presence
from airscene.model.trace import Trace
from airscene.model.transformer import crop_glimpse

# An object's position on the table is POSITION_BOUND * tanh(u), u ~ N(0, 1) a priori, so the renderer
# never draws an object off the table or out of the camera's view. Unbounded, an object the network has
# not yet found is pushed out of the picture (an object drawn where there is none costs likelihood; one
# out of sight costs nothing), and out of sight it gets no gradient back.
POSITION_BOUND = TABLE_REACH + 0.05
# The camera's azimuth is CAMERA_BOUND * tanh(u) (SceneModelConfig.bound_camera): the square table looks the same
# turned by 90 degrees, and so do the objects once their positions turn with it (the residual proposal places them
# where the camera sees them), so beyond +-45 degrees the image cannot tell one azimuth from another. Unbounded,
# the azimuth drifted from one such mode to the next (DAIR, table top, seed 2: 1,473 degrees off at step 1,750).
CAMERA_BOUND = math.pi / 4
# q(pose) starts narrow (sd softplus(-3) = 0.05). The renderer's gradient only reaches a guess that
# overlaps the object, and a narrow q makes the network's first guesses what per-image gradient descent
# from the table's centre would try, which finds most objects. Started wide (sd 0.7), the guesses
# scatter and few overlap: positions were found after 200 to 600 steps with the PyTorch renderer and not
# within 500 with MuJoCo; started narrow, within 100 and 250 (tests/test_graphics.py has a learning run).
INITIAL_POSE_SD_BIAS = -3.0
POSITION_PRIOR_SD = 1.0
CAMERA_PRIOR_SD = CAMERA_REACH / math.sqrt(3)  # the azimuth's, the sd of the scenes' (uniform within +-CAMERA_REACH)
# A residual proposal (--where-proposal residual) smooths the residual over PROPOSAL_RADIUS (table units: a cup's,
# about half a plate's) and looks beyond TAKEN_RADIUS of where earlier steps' objects are seen (less than the
# closest two items' centres, 0.35, less a cup's radius).
PROPOSAL_RADIUS, TAKEN_RADIUS = 0.12, 0.2
# q(yaw) reads a glimpse of half the image's width centred where the object is seen (an object is about
# a fifth), resampled to GLIMPSE_SIZE^2 pixels: the turn of a centred object is a fixed pattern of pixels.
# A CNN of the whole image (SceneEncoder) learned no cube yaw in 1,500 steps even supervised on the true
# phase; on the glimpse, 0.3 degrees in 200 steps (MuJoCo, measured by hand).
GLIMPSE_SCALE, GLIMPSE_SIZE = 2.0, 16


@dataclass(kw_only=True)
class SceneContext:
    """What SceneAIR reads of the whole image before its steps. B images."""

    embedding: torch.Tensor  # (B, E) the image's features (AIR's recurrent input)
    identity_embedding: torch.Tensor  # (B, E) features for the identity head alone
    camera: torch.Tensor  # (B, 1) the camera's azimuth offset
    camera_kl: torch.Tensor  # (B,) KL(q(camera) || p(camera)); 0 where the camera is fixed


@dataclass(kw_only=True)
class SceneStep:
    """One step's object. B images, K shapes."""

    identity: torch.Tensor  # (B,) long
    pose: torch.Tensor  # (B, 3) x, y, yaw; x and y carry gradients to the network
    identity_log_q: torch.Tensor  # (B, K) log q(identity = k)
    kl: torch.Tensor  # (B,) KL of the position and the yaw
    yaw_natural: torch.Tensor  # (B, 2) q(yaw)'s natural parameters (0 for shapes without a yaw)
    log_ratio: torch.Tensor  # (B,) log p - log q of identity, position and yaw
    feedback: torch.Tensor  # (B, K + 3) the identity (one-hot) and pose, as the next step sees them


@dataclass(kw_only=True)
class SceneTrace(Trace):
    """Inverse graphics' trace: the scenes drawn and what the estimators need of q. N steps, K shapes."""

    scenes: SceneParameters  # drawn; pose and camera carry gradients to the network
    identity_log_q: torch.Tensor  # (B, N, K)
    kl: torch.Tensor  # (B, N) KL of each step's position and yaw
    yaw_natural: torch.Tensor  # (B, N, 2)
    truth: SceneParameters | None = None  # the true scenes, for supervised training only


@dataclass(kw_only=True)
class RenderedSample:
    """B scenes drawn from inverse graphics' generative model p(z) p(x | z)."""

    scenes: SceneParameters  # the latents: count, identities, poses, camera
    canvas: torch.Tensor  # (B, 3, H, W) the renderer's picture of them, the likelihood's mean
    images: torch.Tensor  # (B, 3, H, W) x ~ p(x | z): the picture plus the pixel noise


def first_objects(scenes: SceneParameters, counts: torch.Tensor) -> SceneParameters:
    """The scenes with their first counts (B,) objects present, as drawn whether present or not, and no others."""
    present = torch.arange(scenes.present.shape[1], device=counts.device) < counts[:, None]  # (B, N)
    return replace(scenes, present=present)


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


class GlimpseEmbedding(nn.Module):
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


class SceneAIR(AttendInferRepeat):
    """The inference network q(z | x), and the renderer-based model p(x | z) it is trained against."""

    def __init__(self, config: SceneModelConfig, renderer: Renderer):
        super().__init__()
        if renderer.shapes != config.shapes or renderer.image_size != config.image_size:
            raise AirsceneError(f"the renderer draws {renderer.shapes} at {renderer.image_size} pixels, the model "
                                f"infers {config.shapes} at {config.image_size}: build them from one config")
        self.config, self.renderer = config, renderer
        self.shapes = len(config.shapes)
        hidden = config.hidden_size
        self.embed = SceneEncoder(config.image_size, hidden)
        # The core's inference step with the table position as z_where: it starts at the table's centre
        # with a narrow q (INITIAL_POSE_SD_BIAS), presence probability 0.88.
        self.infer_step = InferenceStep(hidden, self.shapes + 3, hidden, where_mean=(0.0, 0.0),
                                        where_sd_bias=(INITIAL_POSE_SD_BIAS, INITIAL_POSE_SD_BIAS))
        self.camera_head = nn.Linear(hidden, 2)
        with torch.no_grad():
            self.camera_head.weight.mul_(0.1)
            self.camera_head.bias.zero_()
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
            self.yaw_encoder = GlimpseEmbedding(hidden)
            self.yaw_head = nn.Linear(hidden, 2 * self.shapes)
        self.register_buffer("count_prior", torch.tensor(config.count_prior))  # rho; training may anneal it
        self.difference = config.model == "dair"

    def read_image(self, images: torch.Tensor, sample: bool) -> SceneContext:
        """The image's features and the camera, a latent of the whole image."""
        embedding = self.embed(images)  # (B, E)
        camera_mean, camera_sd = gaussian_parameters(self.camera_head(embedding))  # (B, 1) each, of u
        if self.config.move_camera:
            camera = self.azimuth(camera_mean + camera_sd * torch.randn_like(camera_mean) if sample else camera_mean)
            camera_kl = normal_kl(normal(camera_mean, camera_sd), self.camera_prior()).sum(1)
        else:
            camera, camera_kl = torch.zeros_like(camera_mean), images.new_zeros(len(images))
        return SceneContext(embedding=embedding, identity_embedding=self.identity_encoder(images), camera=camera,
                            camera_kl=camera_kl)

    def camera_prior(self) -> torch.distributions.Normal:
        """p(u), the camera's latent: the azimuth's spread over the scenes, scaled into tanh's argument."""
        return normal(0.0, CAMERA_PRIOR_SD / (CAMERA_BOUND if self.config.bound_camera else 1.0))

    def azimuth(self, latent: torch.Tensor) -> torch.Tensor:
        """The camera's azimuth offset of its latent u: CAMERA_BOUND tanh(u), or u itself (an unbounded camera)."""
        return CAMERA_BOUND * torch.tanh(latent) if self.config.bound_camera else latent

    def embed_input(self, images, context: SceneContext, steps: list[SceneStep], z_pres: list[torch.Tensor]):
        if not self.difference:
            return context.embedding, None
        residual = images - self.explained(context.camera, steps, z_pres)  # what is left to explain
        proposal = (self.propose_position(residual, context.camera, steps) if self.config.where_proposal == "residual"
                    else None)
        return self.embed(residual), proposal

    def propose_position(self, residual: torch.Tensor, camera: torch.Tensor, steps: list[SceneStep]) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 2): where on the table the camera sees the brightest blob of the residual, outside
        TAKEN_RADIUS of where it shows each earlier step's object (early in training a step's object may be
        wrong and leave its item bright, and every step would be sent back to it), as q(position)'s unbounded
        mean (the network adds its offset). Detached: a starting point, not a path for gradients."""
        size, camera = self.config.image_size, camera.detach()
        pixel = self.renderer.pixel  # table units per pixel
        radius = max(round(PROPOSAL_RADIUS / pixel), 1)  # pixels
        centres = (torch.arange(size, device=residual.device, dtype=residual.dtype) + 0.5) * 2 / size - 1  # (S,)
        taken = None
        if steps:
            seen = torch.stack([self.renderer.locate(step.identity, step.pose[:, :2].detach(), camera) for step in steps],
                               1)  # (B, M, 2) grid_sample's x, y
            reach = (2 * TAKEN_RADIUS / pixel / size) ** 2  # squared, in grid_sample's units
            near = ((centres[:, None] - seen[..., 1, None, None]) ** 2
                    + (centres - seen[..., 0, None, None]) ** 2) < reach  # (B, M, S, S)
            taken = near.any(1)
        index = brightest_blob(residual, radius, taken)  # (B,)
        position = self.renderer.unproject(torch.stack([centres[index % size], centres[index // size]], 1), camera)
        return torch.atanh((position / POSITION_BOUND).clamp(-0.99, 0.99))

    @torch.no_grad()
    def explained(self, camera: torch.Tensor, steps: list[SceneStep], z_pres: list[torch.Tensor]) -> torch.Tensor:
        """(B, 3, H, W): the render of the objects drawn so far (DAIR's xhat^{i-1}; the bare table before
        step 1). An input, so no gradient; it costs inference N renders per image."""
        batch, slots = len(camera), self.config.max_objects
        identity = torch.zeros(batch, slots, dtype=torch.long, device=camera.device)
        present = torch.zeros(batch, slots, dtype=torch.bool, device=camera.device)
        pose = camera.new_zeros(batch, slots, 3)
        for slot, (step, presence) in enumerate(zip(steps, z_pres)):
            identity[:, slot], present[:, slot], pose[:, slot] = step.identity, presence > 0, step.pose
        return self.renderer.render(SceneParameters(identity=identity, present=present, pose=pose, camera=camera))

    def initial_feedback(self, images: torch.Tensor) -> torch.Tensor:
        return images.new_zeros(len(images), self.shapes + 3)

    def infer_object(self, images, context: SceneContext, hidden, where_mean, where_sd, sample: bool) -> SceneStep:
        """Identity from q(identity | x, h), the position on the table from q(z_where), the yaw from a
        glimpse at where the renderer shows the object; sample=False takes the most probable of each."""
        identity_log_q = torch.log_softmax(self.identity_head(torch.cat([hidden, context.identity_embedding], 1)), 1)
        identity = (torch.distributions.Categorical(logits=identity_log_q, validate_args=False).sample() if sample
                    else identity_log_q.argmax(1))  # (B,)
        unbounded = where_mean + where_sd * torch.randn_like(where_mean) if sample else where_mean
        position = POSITION_BOUND * torch.tanh(unbounded)  # (B, 2)
        position_kl = normal_kl(normal(where_mean, where_sd), normal(0.0, POSITION_PRIOR_SD)).sum(1)
        yaw, yaw_natural, yaw_kl = self.infer_yaw(images, identity, position, context.camera, sample)
        pose = torch.cat([position, yaw[:, None]], 1)
        log_q_identity = identity_log_q.gather(1, identity[:, None])[:, 0]
        return SceneStep(identity=identity, pose=pose, identity_log_q=identity_log_q, kl=position_kl + yaw_kl,
                         yaw_natural=yaw_natural,
                         log_ratio=-math.log(self.shapes) - log_q_identity - position_kl - yaw_kl,
                         # The next step sees what this one chose; detached: the choices are samples.
                         feedback=torch.cat([F.one_hot(identity, self.shapes).float(), pose.detach()], 1))

    def make_trace(self, images, context: SceneContext, steps: dict, presence_logits, z_pres) -> SceneTrace:
        scenes = SceneParameters(identity=steps["identity"], present=z_pres > 0, pose=steps["pose"], camera=context.camera)
        return SceneTrace(images=images, presence_logits=presence_logits, z_pres=z_pres, log_ratio=steps["log_ratio"],
                          scene_log_ratio=-context.camera_kl, scenes=scenes, identity_log_q=steps["identity_log_q"],
                          kl=steps["kl"], yaw_natural=steps["yaw_natural"])

    def render(self, scenes: SceneParameters, differentiable: bool) -> torch.Tensor:
        """(B, 3, H, W). Differentiable: finite-difference gradients for the positions and the camera; none
        for the yaw, which saves its renders (its sample carries no gradient: q(yaw) learns by its wake
        update)."""
        if differentiable:
            return self.renderer.render_differentiable(scenes, yaw_gradient=False)
        return self.renderer.render(scenes)

    def log_likelihood(self, images: torch.Tensor, renders: torch.Tensor) -> torch.Tensor:
        """(B,) log N(x; render, sd^2 I), summed over pixels and channels."""
        return normal(renders, self.config.likelihood_sd).log_prob(images).sum((1, 2, 3))

    def prefix_log_likelihoods(self, trace: SceneTrace) -> torch.Tensor:
        """(B, N+1): log p(x | the first n objects as drawn) for every count n = 0..N, from one batched render of
        the N+1 prefixes. No gradient for the poses and camera: differencing every prefix would cost N+1 times the
        trace's own render, so the estimator (graphics.estimators.SceneEnumerate) takes theirs from one count."""
        batch, slots = len(trace.scenes), self.config.max_objects
        counts = torch.arange(slots + 1, device=trace.images.device).repeat_interleave(batch)  # (B(N+1),) n-major
        rows = torch.arange(batch, device=counts.device).repeat(slots + 1)
        with torch.no_grad():
            renders = self.render(first_objects(trace.scenes[rows], counts), differentiable=False)
        return self.log_likelihood(trace.images[rows], renders).view(slots + 1, batch).T

    def trace_log_likelihood(self, trace: SceneTrace) -> torch.Tensor:
        """(B,) log p(x | z) of the trace's scenes, differentiable in their positions and camera."""
        return self.log_likelihood(trace.images, self.render(trace.scenes, differentiable=True))

    @torch.no_grad()
    def sample(self, number: int, generator: torch.Generator | None = None, count: int | None = None) -> RenderedSample:
        """`number` scenes from the generative model, the priors the ELBO charges the inferred latents against:
        the count from the truncated geometric of rho (or `count` objects each; every slot where the experiment's
        count is fixed), each identity uniform over the shapes, each position POSITION_BOUND tanh(u) with
        u ~ N(0, POSITION_PRIOR_SD^2), each yaw uniform over its shape's turns (round shapes: 0), the camera's
        azimuth from its latent's prior (`camera_prior`, `azimuth`) where it moves; rendered, then x from the
        Gaussian likelihood."""
        c, device = self.config, self.count_prior.device
        count = c.max_objects if c.fixed_count and count is None else count
        present = prior_presence(number, c.max_objects, self.count_prior, unary=True, generator=generator,
                                 count=count) > 0  # (B, N)
        identity = torch.randint(self.shapes, (number, c.max_objects), generator=generator, device=device)
        position = POSITION_BOUND * torch.tanh(draw(normal(0.0, POSITION_PRIOR_SD), (number, c.max_objects, 2),
                                                    generator, device))
        order = self.symmetry_order[identity]  # (B, N) turns per revolution that look alike; 0: round
        turn = torch.rand(number, c.max_objects, generator=generator, device=device)
        yaw = torch.where(order > 0, (2 * turn - 1) * math.pi / order.clamp(min=1), 0.0)
        camera = (self.azimuth(draw(self.camera_prior(), (number, 1), generator, device)) if c.move_camera
                  else torch.zeros(number, 1, device=device))
        scenes = SceneParameters(identity=identity, present=present, pose=torch.cat([position, yaw[..., None]], -1),
                                 camera=camera)
        canvas = self.renderer.render(scenes)
        return RenderedSample(scenes=scenes, canvas=canvas,
                              images=draw(normal(canvas, c.likelihood_sd), canvas.shape, generator))

    @torch.no_grad()
    def infer(self, images: torch.Tensor) -> SceneParameters:
        """The most probable scene for each image: one pass of the network (DAIR renders N canvases)."""
        return self(images, "all" if self.config.fixed_count else "greedy", sample=False).scenes

    def infer_yaw(self, images: torch.Tensor, identity: torch.Tensor, position: torch.Tensor,
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
        natural = natural[torch.arange(len(identity), device=identity.device), identity]  # (B, 2) for the chosen shape
        phase = von_mises(natural.detach()).sample() if sample else torch.atan2(natural[:, 1], natural[:, 0])
        yaw = torch.where(order > 0, phase / order.clamp(min=1), 0.0)
        # The KL enters the bound's value but not q(yaw)'s gradient: the wake update alone trains q(yaw)
        # (graphics/estimators.py), and the KL's pull toward the uniform prior would only fight it.
        kappa = natural.detach().norm(dim=1)
        ratio = torch.special.i1e(kappa) / torch.special.i0e(kappa)  # E[cos(phase - mean)]
        kl = kappa * ratio - torch.special.i0e(kappa).log() - kappa  # KL(von Mises || uniform on the circle)
        return yaw, natural, torch.where(order > 0, kl, 0.0)


def von_mises(natural: torch.Tensor) -> VonMises:
    """The von Mises with natural parameters (..., 2): mean direction atan2(b, a), concentration |(a, b)|."""
    return VonMises(torch.atan2(natural[..., 1], natural[..., 0]), natural.norm(dim=-1).clamp(min=1e-4),
                    validate_args=False)


def von_mises_log_prob(natural: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
    """log q(phase) = a cos(phase) + b sin(phase) - log(2 pi I0(|(a, b)|)), natural (P, 2), phase (M, P).
    Written in the natural parameters because its gradient there, the target's mean (cos, sin) minus q's,
    does not vanish as q widens; in mean and concentration, the mean's gradient is the concentration
    times sin(phase - mean), so a q that widened early (its best fit while its mean is wrong) would
    hardly move its mean."""
    kappa = (natural.pow(2).sum(-1) + 1e-8).sqrt()  # (P,)
    log_normaliser = math.log(2 * math.pi) + torch.special.i0e(kappa).log() + kappa
    return natural[:, 0] * phase.cos() + natural[:, 1] * phase.sin() - log_normaliser
