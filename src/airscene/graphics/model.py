"""AIR with a fixed renderer (the paper's Sec. 3.2): only the inference network is learned.

At step i the recurrent network looks at the image (DAIR: at what the objects drawn so far leave
unexplained, x minus their render) and at the latents of step i-1, and proposes
q(z_pres^i), q(identity^i) and q(pose^i) (x, y, yaw on the table); a camera head proposes the camera's
azimuth. The generative model p(x | z) is the renderer plus Gaussian pixel noise, with priors: a geometric
count, uniform identities, Gaussian poses. The pose and camera are reparameterised and their gradient
comes through the renderer by finite differences; the discrete choices are left to the estimator."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.distributions import Normal, kl_divergence

from airscene.errors import AirsceneError
from airscene.graphics.config import GraphicsConfig
from airscene.graphics.render import Renderer
from airscene.graphics.scenes import CAMERA_REACH, TABLE_REACH, SceneParameters
from airscene.model.networks import PRESENCE_LOGIT_BOUND, gaussian_parameters

# An object's position on the table is POSITION_BOUND * tanh(u), u ~ N(0, 1) a priori, so the renderer
# never draws an object off the table or out of the camera's view. Unbounded, an object the network has
# not yet found is pushed out of the picture (an object drawn where there is none costs likelihood; one
# out of sight costs nothing), and out of sight it gets no gradient back. Yaw ~ N(0, pi) and the
# camera's azimuth are unbounded.
POSITION_BOUND = TABLE_REACH + 0.05
# q(pose) starts narrow (sd softplus(-3) = 0.05). The renderer's gradient only reaches a guess that
# overlaps the object, and a narrow q makes the network's first guesses what per-image gradient descent
# from the table's centre would try, which finds most objects. Started wide (sd 0.7), the guesses
# scatter and few overlap: positions were found after 200 to 600 steps with the PyTorch renderer and not
# within 500 with MuJoCo; started narrow, within 100 and 250 (tests/test_graphics.py has a learning run).
INITIAL_POSE_SD_BIAS = -3.0
POSE_PRIOR_SD = (1.0, 1.0, math.pi)
CAMERA_PRIOR_SD = CAMERA_REACH / math.sqrt(3)


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


class SceneAIR(nn.Module):
    """The inference network q(z | x), and the renderer-based model p(x | z) it is trained against."""

    def __init__(self, config: GraphicsConfig, renderer: Renderer | None = None):
        super().__init__()
        self.config, self.renderer = config, renderer
        self.shapes = len(config.shapes)
        hidden = config.hidden_size
        self.encoder = SceneEncoder(config.image_size, hidden)
        self.lstm = nn.LSTMCell(hidden + self.shapes + 3 + 1, hidden)
        self.object_head = nn.Linear(hidden, 1 + 6)  # presence logit, pose mean and sd
        self.camera_head = nn.Linear(hidden, 2)
        # Identity has its own image features: in an encoder shared with the pose, the pose's gradient
        # (thousands of nats) decides what is learned, and colour, which only identity needs, was lost.
        self.identity_encoder = SceneEncoder(config.image_size, hidden)
        self.identity_head = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.ReLU(), nn.Linear(hidden, self.shapes))
        with torch.no_grad():  # start at the table's centre with a narrow pose, presence probability 0.88
            for head in (self.object_head, self.camera_head):
                head.weight.mul_(0.1)
                head.bias.zero_()
            self.object_head.bias[0] = 2.0
            self.object_head.bias[4:] = INITIAL_POSE_SD_BIAS
        self.register_buffer("pose_prior_sd", torch.tensor(POSE_PRIOR_SD))

    def forward(self, images: torch.Tensor, exploration: float = 0.0, sample: bool = True,
                identity_alternatives: str | None = None) -> SceneTrace:
        """Draw z ~ q(z | x) (or, with sample=False, take the most probable choices and the means), render
        it, and score it. `exploration` mixes q(z_pres) with a count-uniform Bernoulli, as in AIR.
        `identity_alternatives` also scores each present object as every identity in turn: "fixed" (no
        gradient) or "differentiable" (single objects: replaces the drawn scene's own render)."""
        scenes, terms = self.propose(images, exploration, sample)
        trace = SceneTrace(images, scenes, None, terms["log_q_presence"], terms["log_q"], terms["log_p"], terms["kl"],
                           terms["taken"], terms["identity_log_q"])
        if identity_alternatives == "differentiable":
            if self.config.max_objects != 1:
                raise AirsceneError("differentiable identity alternatives are for single objects")
            trace.log_likelihood_per_identity = self.alternative_likelihoods(images, scenes, differentiable=True)
            trace.log_likelihood = trace.log_likelihood_per_identity[:, 0].gather(1, scenes.identity)[:, 0]
            return trace
        trace.log_likelihood = self.log_likelihood(self.renderer.render_differentiable(scenes), images)
        if identity_alternatives == "fixed":
            trace.log_likelihood_per_identity = self.alternative_likelihoods(images, scenes, differentiable=False)
        return trace

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
        render = self.renderer.render_differentiable if differentiable else self.renderer.render
        values = self.log_likelihood(render(alternatives), images[rows]).view(shapes, count).T  # (P, K)
        return result.index_put((scene_index, slot), values)

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
                                                          "logits", "identity_log_q", "log_q_presence")}
        for step in range(steps):
            if config.model == "dair":
                embedding = self.encoder(images - self.canvas(columns, camera, steps))  # what is left to explain
            state = self.lstm(torch.cat([embedding, previous, present[:, None]], 1), state)
            output = self.object_head(state[0])
            presence_logit = PRESENCE_LOGIT_BOUND * torch.tanh(output[:, 0] / PRESENCE_LOGIT_BOUND)
            identity_logits = self.identity_head(torch.cat([state[0], identity_embedding], 1))  # (B, K)
            pose_mean, pose_sd = gaussian_parameters(output[:, 1:])  # (B, 3) each
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
            unbounded = pose_mean + pose_sd * torch.randn_like(pose_mean) if sample else pose_mean
            pose = torch.cat([POSITION_BOUND * torch.tanh(unbounded[:, :2]), unbounded[:, 2:]], 1)
            kl = present * kl_divergence(Normal(pose_mean, pose_sd), Normal(0.0, self.pose_prior_sd)).sum(1)
            # The next step sees what this one chose; detached, as in AIR: the choices are samples.
            previous = torch.cat([F.one_hot(identity, self.shapes).float() * present[:, None],
                                  pose.detach() * present[:, None]], 1)
            for name, value in (("identity", identity), ("present", present > 0), ("pose", pose), ("log_q", log_q),
                                ("log_p", log_p), ("kl", kl), ("taken", taken), ("logits", identity_logits),
                                ("identity_log_q", identity_log_q), ("log_q_presence", log_q_presence)):
                columns[name].append(value)
        stacked = {name: torch.stack(values, 1) for name, values in columns.items()}
        stacked["kl"][:, 0] += camera_kl
        scenes = SceneParameters(stacked["identity"], stacked["present"], stacked["pose"], camera)
        return scenes, stacked

