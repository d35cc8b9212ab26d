"""Attend, Infer, Repeat (Eslami et al. 2016): the inference network q_phi and generative model p_theta.

`AttendInferRepeat` is the recurrence every variant shares: at step i an LSTM reads the image (DAIR: what
the earlier steps leave unexplained) and z^{i-1}, a head proposes q(z_pres^i) and q(z_where^i), and the
model infers the rest of the object. `AIR` is the paper's model with a learned glimpse decoder; inverse
graphics (airscene.graphics.model) puts a fixed renderer in its place.

One forward pass returns a Trace. How z_pres is drawn is the caller's choice ("sample" for
score-function estimators, "all" for exact enumeration of the count, "relaxed" or "straight_through"
for the Concrete relaxation, "greedy" for the most probable presence), so the model does not know which
estimator trains it.

Exploration: during early training q(z_pres^i) is the mixture (1 - e) Bernoulli(p_i) + e Bernoulli(u_i),
itself a valid variational distribution, so the ELBO stays a bound for every e; u_i = (N-i+1)/(N-i+2)
makes the count uniform on 0..N when e = 1. With e near 1 every prefix of the steps keeps real weight
and is trained to explain the image on its own: step 1 alone learns to explain a whole digit. Without
it the count commits early to spreading one digit over several steps (which a weak decoder prefers),
and rarely recovers. The training loop anneals e to 0, after which q is the network's own.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from airscene.config import ModelConfig
from airscene.errors import AirsceneError
from airscene.model.networks import BackgroundVAE, GlimpseDecoder, GlimpseEncoder, ImageEmbedding, InferenceStep
from airscene.model.priors import apply_object_size, count_log_prior, draw, normal, prior_presence, standard_normal
from airscene.model.trace import Description, SceneSample, Trace, stack_steps
from airscene.model.transformer import crop_glimpse, paste_glimpse, window_boxes, window_scale

# The brightness (the brightest channel, images in [0, 1]) an added glimpse must exceed the background's by to
# take most of a pixel's prior share from it: a decoder's sigmoid never draws an exact 0, and without a floor a
# glimpse on black ground would own its whole window a priori. With explain_pixels after it, any floor from 0.1
# to 0.3 gives the same masks on the Tetrominoes look-alike's training scenes (ARI 99.6-99.7%; 5% without one;
# benchmarks/mask_floor.py).
VISIBLE = 0.3
PRESENCE_MODES = ("sample", "all", "greedy", "relaxed", "straight_through")


def explore_presence(logit: torch.Tensor, exploration: float | torch.Tensor, step: int, steps: int) -> torch.Tensor:
    """The logit of the exploration mixture (1 - e) Bernoulli(sigmoid(logit)) + e Bernoulli(u_i) at step
    `step` (from 0) of `steps`. e is a number, or a 0-d tensor (a compiled training step's input, so that one
    compiled step serves every e)."""
    uniform_count = (steps - step) / (steps - step + 1)

    def mixed(e):
        return torch.logit((1 - e) * torch.sigmoid(logit) + e * uniform_count)

    if not torch.is_tensor(exploration):
        return mixed(exploration) if exploration > 0 else logit
    # Where e = 0 the logit is returned as it is; the mixture there is computed with e = 1/2, whose logit
    # stays finite (and its zero gradient too) however confident the network.
    exploring = exploration > 0
    return torch.where(exploring, mixed(torch.where(exploring, exploration, 0.5)), logit)


def draw_presence(logit: torch.Tensor, previous: torch.Tensor, presence: str, temperature: float | torch.Tensor) -> torch.Tensor:
    """z_pres^i (B, 1) from its logit (B,) and z_pres^{i-1} (B, 1). Multiplying by the previous value makes
    every step after an absent one absent too (the unary code of the count)."""
    if presence == "all":
        return torch.ones_like(previous)
    if presence == "greedy":
        return (logit > 0).float().unsqueeze(1) * previous
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


class AttendInferRepeat(nn.Module):
    """The recurrence of the paper's Fig. 2. A subclass has `config` (max_objects, step_memory, step_feedback),
    `infer_step` (an InferenceStep), `difference` (DAIR) and `count_prior` (a buffer: rho), and says what an object
    is: `read_image`, `embed_input` (a step's input embedded, and a shift of its window's mean or None),
    `initial_feedback`, `infer_object`, `make_trace`."""

    def forward(self, images: torch.Tensor, presence: str = "sample", exploration: float | torch.Tensor = 0.0,
                temperature: float | torch.Tensor = 1.0, sample: bool = True) -> Trace:
        """images (B, C, H, W) in [0, 1] -> the model's Trace of all N steps; exploration is e above;
        temperature is the Concrete relaxation's, used only when presence is "relaxed" or "straight_through";
        sample=False takes every latent but z_pres at its most probable value instead of a sample."""
        if presence not in PRESENCE_MODES:
            raise ValueError(f"presence must be one of {PRESENCE_MODES}")
        steps_total = self.config.max_objects
        context = self.read_image(images, sample)
        feedback, z_pres = self.initial_feedback(images), images.new_ones(len(images), 1)
        state = None  # the LSTM's fresh state (zeros)
        steps, logits, presences = [], [], []
        for step in range(steps_total):
            if step == 0 or self.difference:
                # The recurrent input's share of the LSTM gates, (B, 4H): AIR's input is x at every step,
                # so it is computed once; DAIR's is x - xhat^{i-1}, new at every step.
                embedding, where_shift = self.embed_input(images, context, steps, presences)
                image_gates = self.infer_step.image_gates(embedding)
            logit, latents, state = self.step(images, context, image_gates, torch.cat([feedback, z_pres], 1), state,
                                              sample=sample, where_shift=where_shift)
            logit = explore_presence(logit, exploration, step, steps_total)
            z_pres = draw_presence(logit, z_pres, presence, temperature)
            feedback = latents.feedback
            steps.append(latents)
            logits.append(logit)
            presences.append(z_pres[:, 0])
        return self.make_trace(images, context, stack_steps(steps), torch.stack(logits, 1), torch.stack(presences, 1))

    def step(self, images, context, image_gates, previous, state, sample: bool, where_shift: torch.Tensor | None):
        """One step of the recurrence, as training and test-time inference both take it: the LSTM reads the
        image's gates (B, 4H) and previous = [z^{i-1}, z_pres^{i-1}] (B, F + 1) (from a fresh state without
        step memory; zeros without step feedback), proposes q(z_pres^i) and q(z_where^i) (its mean shifted by
        where_shift (B, D) where the input proposes a window), and the model infers the object. Returns the
        presence logit (B,), the step's record (infer_object's) and the new LSTM state."""
        if not self.config.step_memory:
            state = None
        if not self.config.step_feedback:
            previous = torch.zeros_like(previous)
        logit, where_mean, where_sd, state = self.infer_step(image_gates, previous, state)
        if where_shift is not None:
            where_mean = where_mean + where_shift
        return logit, self.infer_object(images, context, state[0], where_mean, where_sd, sample), state

    def count_log_prior(self, counts: torch.Tensor) -> torch.Tensor:
        """log p(n) of each count under the truncated geometric with the current rho."""
        return count_log_prior(counts, self.count_prior, self.config.max_objects)


def composite(objects: torch.Tensor, background: torch.Tensor | None, weights: torch.Tensor,
              alpha: bool) -> torch.Tensor:
    """The canvas after each prefix of the objects (B, N, C(+1), H, W), from the background alone
    (prefix 0) to all N: (B, N+1, C, H, W). Additive objects add up over the background; with alpha, the
    last channel of each object is its opacity and object i is drawn in front of the objects after it
    (the inference order is the depth order), so it hides them and the background. weights (B, N) (z_pres)
    scale each object's contribution (its opacity)."""
    appearance = objects[:, :, :-1] if alpha else objects
    if background is None:
        background = torch.zeros_like(appearance[:, 0])
    weights = weights[:, :, None, None, None]
    if not alpha:
        return torch.cat([background[:, None], background[:, None] + (weights * appearance).cumsum(1)], 1)
    shown, through = visibility(weights * objects[:, :, -1:])  # (B, N, 1, H, W) each
    fronts = (shown * appearance).cumsum(1)
    return torch.cat([background[:, None], fronts + through * background[:, None]], 1)


def light_passing(opacity: torch.Tensor) -> torch.Tensor:
    """(B, N, ...) opacities, front first -> the light passing every object up to i, a running product over
    the steps: cumprod's backward asks the host whether any factor is zero, which makes the device wait."""
    passing = [1 - opacity[:, 0]]
    for step in range(1, opacity.shape[1]):
        passing.append(passing[-1] * (1 - opacity[:, step]))
    return torch.stack(passing, 1)


def visibility(opacity: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, N, ...) opacities, front first -> what of each object shows (its opacity times the light that passes
    the objects in front of it), and the light passing every object up to i."""
    through = light_passing(opacity)
    before = torch.cat([torch.ones_like(through[:, :1]), through[:, :-1]], 1)  # ... up to i - 1
    return before * opacity, through


def pixel_shares(objects: torch.Tensor, background: torch.Tensor | None, weights: torch.Tensor,
                 alpha: bool) -> torch.Tensor:
    """Whose each pixel is, as `composite` draws it: (B, N + 1, H, W), the background's share (index 0) and
    each object's, summing to 1. With alpha, what each object's opacity leaves visible of it (object i in front
    of those after it), the background what passes them all; added up, each object's part of the pixel's
    brightness (brightest channel) beside the background's brightness plus VISIBLE, so that the faint
    ground a glimpse's decoder draws around its object is not the object's."""
    weights = weights[:, :, None, None]
    if alpha:
        shown, through = visibility(weights * objects[:, :, -1])  # (B, N, H, W) each
        return torch.cat([through[:, -1:], shown], 1)
    amounts = weights * objects.amax(2)  # (B, N, H, W)
    ground = VISIBLE + (0.0 if background is None else background.amax(1, keepdim=True))  # (B, 1, H, W)
    total = amounts.sum(1, keepdim=True) + ground
    shares = amounts / total.clamp_min(1e-6)
    return torch.cat([1 - shares.sum(1, keepdim=True), shares], 1)


def alone_pictures(appearance: torch.Tensor, background: torch.Tensor | None, additive: bool) -> torch.Tensor:
    """(B, N, C, H, W) each object's appearance -> (B, N + 1, C, H, W) the picture each would draw alone: the
    background, then each object added to it, or (opaque) in its place."""
    ground = appearance.new_zeros(appearance.shape[:1] + appearance.shape[2:]) if background is None else background
    return torch.cat([ground[:, None], appearance + ground[:, None] if additive else appearance], 1)


def fitted_appearance(appearance: torch.Tensor, opacity: torch.Tensor) -> torch.Tensor:
    """(B, N, C, H, W) each alpha-composited object's decoded colour, (B, N, H, W) its opacity -> the colour it would
    show at each pixel: its own where it is opaque, drawn toward its opacity-weighted mean colour where it is not.
    A transparent pixel's colour has no gradient, so the decoder never fitted it: taken as it is, it hands a
    sprite's soft edge to the background."""
    weights = opacity[:, :, None]  # (B, N, 1, H, W)
    mean = (appearance * weights).sum((-2, -1), keepdim=True) / weights.sum((-2, -1), keepdim=True).clamp_min(1e-6)
    return weights * appearance + (1 - weights) * mean


@dataclass(kw_only=True)
class BackgroundLatents:
    """The background drawn for B images, and log p(z_bg) - log q(z_bg | x)."""

    background: torch.Tensor  # (B, C, H, W)
    log_ratio: torch.Tensor  # (B,)


def brightest_blob(residual: torch.Tensor, radius: int, taken: torch.Tensor | None = None) -> torch.Tensor:
    """(B, C, H, W) -> (B,): the pixel (row-major index) where |residual|, summed over channels and smoothed over
    an object's `radius`, peaks outside `taken` (B, H, W), the places earlier steps took. Detached (an argmax has
    no gradient). The smoothing is a Gaussian of sd half the radius, not a box: a box's plateau over a blob would
    tie, and at the canvas's edge its peak would slide inwards; outside the canvas there is nothing to explain."""
    offsets = torch.arange(-radius, radius + 1, device=residual.device, dtype=residual.dtype)
    kernel = torch.exp(-0.5 * (offsets / max(radius / 2, 0.5)) ** 2)  # (2 radius + 1,)
    strength = residual.detach().abs().sum(1, keepdim=True)  # (B, 1, H, W)
    strength = F.conv2d(strength, kernel.view(1, 1, -1, 1), padding=(radius, 0))
    strength = F.conv2d(strength, kernel.view(1, 1, 1, -1), padding=(0, radius))
    if taken is not None:
        strength = strength.masked_fill(taken[:, None], -1.0)
    return strength.flatten(1).argmax(1)


def read_background(background: BackgroundVAE, images: torch.Tensor, sample: bool, side: int) -> BackgroundLatents:
    """The background component's latent inferred from images (B, C, H, W), and decoded to their size. Images
    larger than the canvas `side` it learned on are read window by window (read_background_in_windows)."""
    if max(images.shape[-2:]) > side:
        return read_background_in_windows(background, images, sample, side)
    q = normal(*background.encode(images))
    z_background = q.rsample() if sample else q.mean  # (B, D)
    log_ratio = (standard_normal().log_prob(z_background) - q.log_prob(z_background)).sum(-1)
    return BackgroundLatents(background=background.decode(z_background, images.shape[-2:]), log_ratio=log_ratio)


def read_background_in_windows(background: BackgroundVAE, images: torch.Tensor, sample: bool,
                               side: int) -> BackgroundLatents:
    """The background of images (B, C, H, W) larger than the canvas `side` the component learned on, read at
    the scale it learned: windows of side x side (at most the images' own height and width) half a window
    apart, each with a latent of its own, decoded, and blended by weights that fall from the window's centre
    to almost nothing at its edges. Read whole, one coarse latent would have to draw a canvas many times the
    size of any it learned on, smoother than any background it was trained to fit. The log ratio is the
    windows' summed. The images are padded by their edge pixels to a whole number of half windows."""
    batch, channels, height, width = images.shape
    window = (min(side, height), min(side, width))
    stride = tuple(max(1, length // 2) for length in window)
    padded_size = [length + -(length - size) % step for length, size, step in zip((height, width), window, stride)]
    padded = F.pad(images, (0, padded_size[1] - width, 0, padded_size[0] - height), mode="replicate")
    windows = F.unfold(padded, window, stride=stride)  # (B, C h w, L)
    count = windows.shape[-1]
    read = read_background(background, windows.transpose(1, 2).reshape(batch * count, channels, *window), sample,
                           side)
    ramps = [1 - ((torch.arange(size, device=images.device, dtype=images.dtype) + 0.5) / size * 2 - 1).abs()
             for size in window]  # (h,), (w,): 1 at the centre, 1 / size at the edges
    weight = (ramps[0][:, None] * ramps[1][None, :]).flatten().repeat(channels)[:, None]  # (C h w, 1)
    drawn = read.background.reshape(batch, count, -1).transpose(1, 2) * weight  # (B, C h w, L)
    total = F.fold(weight[None].expand(1, -1, count), padded_size, window, stride=stride)
    blended = F.fold(drawn, padded_size, window, stride=stride) / total
    return BackgroundLatents(background=blended[..., :height, :width], log_ratio=read.log_ratio.view(batch, count).sum(1))


def draw_background(background: BackgroundVAE, config: ModelConfig, number: int, generator: torch.Generator | None,
                    device: torch.device) -> torch.Tensor:
    """(number, C, H, W) backgrounds of config.image_size from the generative model: z_bg from its prior,
    decoded."""
    z_background = draw(standard_normal(), (number, config.background_size), generator, device)
    return background.decode(z_background, (config.image_size, config.image_size))


@dataclass(kw_only=True)
class GlimpseStep:
    """One AIR step's object: B images. What the recurrence needs is drawn in its loop; the log ratios and
    (for AIR) the rendering are computed for all steps at once afterwards, from q's parameters kept here."""

    z_where: torch.Tensor  # (B, 3)
    z_what: torch.Tensor  # (B, C_what)
    where_mean: torch.Tensor  # (B, 3) q(z_where^i | x, z^{<i})
    where_sd: torch.Tensor  # (B, 3)
    what_mean: torch.Tensor  # (B, C_what) q(z_what^i | x_att)
    what_sd: torch.Tensor  # (B, C_what)
    feedback: torch.Tensor  # (B, 3 + C_what) z^i as the next step sees it
    # (B, C(+1), H, W) the decoded glimpse on an empty canvas (+ its alpha): DAIR renders it in the loop, whose
    # next input it changes; AIR leaves it None and renders every step in one pass.
    objects: torch.Tensor | None = None


@dataclass(kw_only=True)
class GlimpseTrace(Trace):
    """AIR's trace: the glimpse latents of every step and each step's object on its own canvas."""

    z_where: torch.Tensor  # (B, N, 3)
    z_what: torch.Tensor  # (B, N, C_what)
    objects: torch.Tensor  # (B, N, C, H, W), or (B, N, C + 1, H, W) with an alpha channel
    background: torch.Tensor | None = None  # (B, C, H, W) where the model has a background


class PixelLikelihood:
    """p(x | canvas), independent over pixels: a Gaussian of sd config.likelihood_sd, or a Bernoulli."""

    def pixel_log_likelihood(self, images: torch.Tensor, canvas: torch.Tensor) -> torch.Tensor:
        """log p(x | canvas) of each pixel, broadcast; in float32 whatever the canvas's precision."""
        canvas = canvas.float()
        if self.config.likelihood == "gaussian":
            sd = self.config.likelihood_sd
            return -0.5 * (images - canvas).square() / sd ** 2 - (math.log(sd) + 0.5 * math.log(2 * math.pi))
        mean = canvas.clamp(1e-4, 1 - 1e-4)  # a sum of glimpses can leave [0, 1]
        return images * torch.log(mean) + (1 - images) * torch.log1p(-mean)

    def explain_pixels(self, images: torch.Tensor, shares: torch.Tensor, pictures: torch.Tensor) -> torch.Tensor:
        """Whose each pixel is, given what it shows: the posterior over the background and the objects of the one
        that drew it, with their shares of the canvas (B, N + 1, H, W) as the prior and the likelihood of the
        pixel under each one's picture alone, `pictures` (B, N + 1, C, H, W). Where a glimpse's decoder blurs an
        edge, the image decides it."""
        fit = self.pixel_log_likelihood(images[:, None], pictures).sum(2)  # (B, N + 1, H, W)
        log_prior = torch.where(shares > 0, shares.clamp_min(1e-30).log(), float("-inf"))
        return torch.softmax(log_prior + fit, dim=1)

    def draw_images(self, canvas: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """x ~ p(x | canvas): the canvas plus Gaussian noise, or Bernoulli pixels."""
        if self.config.likelihood == "gaussian":
            noise = torch.randn(canvas.shape, generator=generator, device=canvas.device)
            return canvas + self.config.likelihood_sd * noise
        return torch.bernoulli(canvas.clamp(0, 1), generator=generator)

    def log_likelihood(self, images: torch.Tensor, canvas: torch.Tensor) -> torch.Tensor:
        """log p(x | canvas) summed over pixels; images (B, C, H, W), canvas (B, ..., C, H, W) -> (B, ...).
        (A sum over thousands of pixels in bfloat16 would lose nats: it is float32.)"""
        images = images.view(images.shape[0], *([1] * (canvas.dim() - images.dim())), *images.shape[1:])
        if self.config.likelihood == "gaussian":
            return self.gaussian_log_likelihood((images - canvas.float()).square().flatten(-3).sum(-1), images[0].numel())
        return self.pixel_log_likelihood(images, canvas).flatten(-3).sum(-1)

    def gaussian_log_likelihood(self, squared_error: torch.Tensor, pixels: int) -> torch.Tensor:
        """log N(x; canvas, sd^2 I) of `pixels` pixels from sum (x - canvas)^2."""
        sd = self.config.likelihood_sd
        return -0.5 * squared_error / sd ** 2 - pixels * (math.log(sd) + 0.5 * math.log(2 * math.pi))


class AIR(AttendInferRepeat, PixelLikelihood):
    """AIR (config.model "air") and DAIR ("dair"): objects are glimpses, decoded and pasted on the canvas."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        if config.image_size is None or config.channels is None:
            raise AirsceneError("the model config has no image_size or channels: set them, or train on a data set, "
                                "which sets them from its images")
        self.config = config
        self.embed = ImageEmbedding(config.channels, config.image_size, config.embedding_size)
        self.infer_step = InferenceStep(config.embedding_size, 3 + config.what_size, config.hidden_size,
                                        where_mean=config.where_prior_mean, where_sd_bias=(-2.0, 0.0, 0.0))
        self.encode = GlimpseEncoder(config.channels, config.glimpse_size, config.glimpse_hidden_size,
                                     config.what_size, config.glimpse_network)
        self.alpha = config.compositing == "alpha"
        self.decode = GlimpseDecoder.of(config)
        if config.background == "learned":
            self.background = BackgroundVAE(config.channels, config.background_size, config.background_resolution)
        self.register_buffer("where_prior_mean", torch.tensor(config.where_prior_mean))
        self.register_buffer("where_prior_sd", torch.tensor(config.where_prior_sd))
        self.register_buffer("count_prior", torch.tensor(config.count_prior))  # rho; training may anneal it
        # DAIR: the recurrent input at step i is the error canvas x - xhat^{i-1}, what is left to explain,
        # instead of x itself; the glimpse is still cropped from x.
        self.difference = config.model == "dair"

    def read_image(self, images: torch.Tensor, sample: bool) -> BackgroundLatents | None:
        """The background, AIR's one latent of the whole image (where the config has one)."""
        return None if self.config.background == "none" else read_background(self.background, images, sample,
                                                                                 self.config.image_size)

    def embed_input(self, images: torch.Tensor, context, steps: list[GlimpseStep], z_pres: list[torch.Tensor]):
        """What step i reads: the embedding of x (DAIR: of x - xhat^{i-1}), and its window's proposal (or None)."""
        if not self.difference:
            return self.embed(images), None
        background = None if context is None else context.background
        residual = images - self.explained(images, background, [step.objects for step in steps], z_pres)
        windows = torch.stack([step.z_where for step in steps], 1) if steps and self.proposes_where else None
        return self.read_residual(residual, windows)

    @property
    def proposes_where(self) -> bool:
        """Whether each step's window starts on what is left to explain (--where-proposal residual): only then are
        the earlier steps' windows read."""
        return self.config.where_proposal == "residual"

    def read_residual(self, residual: torch.Tensor,
                      windows: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """DAIR's input, x - xhat^{i-1} (B, C, H, W), and the earlier steps' windows (B, i - 1, 3) -> its
        embedding (B, E), and the shift of q(z_where)'s mean (B, 3) that centres the window on the residual's
        brightest blob outside those windows (with --where-proposal residual)."""
        proposal = self.propose_where(residual, windows) if self.proposes_where else None
        return self.embed(residual), proposal

    def propose_where(self, residual: torch.Tensor, windows: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, H, W) -> (B, 3): (0, x, y), the peak of |residual| smoothed over a window of the prior's mean
        size, in z_where's units, outside `windows` (B, M, 3), the windows earlier steps took: early in training a
        glimpse draws almost nothing, so what is left barely changes from step to step, and without that every
        step would be sent to the same blob. Detached: a starting point the network's offset refines, not a path
        for gradients (the argmax has none)."""
        _, _, height, width = residual.shape
        # pixel centres in canvas units: x over [-1, 1] of the width, y in the same units (z_where's convention)
        xs = (torch.arange(width, device=residual.device) + 0.5) * 2 / width - 1  # (W,)
        ys = (torch.arange(height, device=residual.device) + 0.5) * 2 / width - height / width  # (H,)
        taken = None
        if windows is not None:  # each earlier window (its object's blurred edge would otherwise outshine a dim one)
            reach = 1 / window_scale(windows[..., 0], self.config.min_scale)  # (B, M) half a window's side
            near_x = (xs - windows[..., 1, None]).abs() < reach[..., None]  # (B, M, W)
            near_y = (ys - windows[..., 2, None]).abs() < reach[..., None]  # (B, M, H)
            taken = (near_y[..., :, None] & near_x[..., None, :]).any(1)  # (B, H, W)
        index = brightest_blob(residual, round(width / self.config.where_prior_mean[0]) // 2, taken)
        x, y = xs[index % width], ys[index // width]
        return torch.stack([torch.zeros_like(x), x, y], 1)

    def explained(self, images, background: torch.Tensor | None, objects: list[torch.Tensor],
                  z_pres: list[torch.Tensor]) -> torch.Tensor:
        """(B, C, H, W) DAIR's xhat^{i-1}: the background and the objects so far, composited."""
        if not objects:
            return torch.zeros_like(images) if background is None else background
        return composite(torch.stack(objects, 1), background, torch.stack(z_pres, 1), self.alpha)[:, -1]

    def initial_feedback(self, images: torch.Tensor) -> torch.Tensor:
        """z^0 = (z_where, z_what) = 0."""
        return images.new_zeros(len(images), 3 + self.config.what_size)

    def infer_object(self, images, context, hidden, where_mean, where_sd, sample: bool) -> GlimpseStep:
        """Sample z_where, crop x_att there, sample z_what from it (both reparameterised; sample=False: their
        means); DAIR also renders the decoded glimpse, which its next step's input needs."""
        c = self.config
        z_where = normal(where_mean, where_sd).rsample() if sample else where_mean  # (B, 3)
        glimpse = crop_glimpse(images, z_where, c.glimpse_size, c.min_scale)  # (B, C, g, g)
        what_mean, what_sd = self.encode(glimpse)
        z_what = normal(what_mean, what_sd).rsample() if sample else what_mean  # (B, C_what)
        return GlimpseStep(z_where=z_where, z_what=z_what, where_mean=where_mean, where_sd=where_sd, what_mean=what_mean,
                           what_sd=what_sd, feedback=torch.cat([z_where, z_what], 1),
                           objects=self.render_object(z_what, z_where) if self.difference else None)

    def make_trace(self, images, context: BackgroundLatents | None, steps: dict, presence_logits, z_pres) -> GlimpseTrace:
        """The trace of all N steps, with each step's log p(z) - log q(z) and (AIR) its object computed for
        the N steps at once."""
        z_where, z_what = steps["z_where"], steps["z_what"]  # (B, N, 3), (B, N, C_what)
        log_q = (normal(steps["where_mean"], steps["where_sd"]).log_prob(z_where).sum(-1)
                 + normal(steps["what_mean"], steps["what_sd"]).log_prob(z_what).sum(-1))
        log_p = self.latent_log_prior(z_where, z_what)
        objects = steps["objects"] if self.difference else self.render_steps(z_what, z_where)
        return GlimpseTrace(images=images, presence_logits=presence_logits, z_pres=z_pres, log_ratio=log_p - log_q,
                            z_where=z_where, z_what=z_what, objects=objects,
                            scene_log_ratio=images.new_zeros(len(images)) if context is None else context.log_ratio,
                            background=None if context is None else context.background)

    # The settings only AIR and DAIR read (Config.used refuses them for other models): the grid's windows follow
    # --object-size, a grid cell has no count to explore, and the fast start slowed the grid's count (94.7% at step
    # 1,500 without it, 88.4% with it, one seed): the training loop starts the grid at its rate.
    own_settings = ("model.max_objects", "model.step_memory", "model.step_feedback", "model.where_proposal",
                    "model.where_prior_mean", "model.where_prior_sd", "model.min_scale", "train.presence_exploration",
                    "train.presence_exploration_hold", "train.presence_exploration_steps", "train.learning_rate_start",
                    "train.learning_rate_start_steps")
    enumerates_count = True  # presence "all" draws every step: the count's N + 1 terms from one trace
    # "local" sums out one grid cell's presence given the others: AIR's steps are a sequence, not cells.
    estimators = ("enumerate", "nvil", "vimco", "relaxed")
    describe_compiles = True  # describe(fixed_shapes=True): N steps on every image, one graph
    describe_in_bf16 = False  # its steps' small products gain little; its description is kept in float32 buffers

    @staticmethod
    def fit_to_data(config: ModelConfig, largest: int, batch_size: int, data) -> None:
        """Derive the window prior from config.object_size (priors.apply_object_size), and refuse data whose
        scenes hold more objects (`largest`) than its N steps can find."""
        apply_object_size(config)
        if largest > config.max_objects:
            raise AirsceneError(f"data {data} has scenes with {largest} objects but the model has N = "
                                f"{config.max_objects} steps: raise --max-objects to at least {largest}")

    @property
    def input_size(self) -> int:
        return self.config.image_size

    def object_capacity(self) -> int:
        return self.config.max_objects

    def present_objects(self, trace: GlimpseTrace) -> torch.Tensor:
        """(B, N, C, H, W): each step's object alone on the canvas, as opaque as its alpha, zeros where absent."""
        appearance = trace.objects[:, :, :-1] * trace.objects[:, :, -1:] if self.alpha else trace.objects
        return appearance * trace.z_pres[:, :, None, None, None]

    def where_prior(self) -> torch.distributions.Normal:
        """p(z_where) of every step: independent Gaussians over (s, x, y)."""
        return normal(self.where_prior_mean, self.where_prior_sd)

    @torch.no_grad()
    def sample(self, number: int, generator: torch.Generator | None = None, count: int | None = None) -> SceneSample:
        """`number` scenes from the generative model (the paper's Sec. 2): the count from its truncated geometric
        (or `count` objects each), each object's z_where and z_what from their priors, decoded and composited
        in step order over a background from its prior, then x from the likelihood."""
        c = self.config
        z_pres = prior_presence(number, c.max_objects, self.count_prior, unary=True, generator=generator, count=count)
        z_where = draw(self.where_prior(), (number, c.max_objects, 3), generator)
        z_what = draw(standard_normal(), (number, c.max_objects, c.what_size), generator, z_where.device)
        objects = self.render_steps(z_what, z_where)  # (B, N, C(+1), H, W)
        background = (draw_background(self.background, c, number, generator, z_where.device)
                      if c.background == "learned" else None)
        canvas = composite(objects, background, z_pres, self.alpha)[:, -1]
        return SceneSample(images=self.draw_images(canvas, generator), canvas=canvas, z_pres=z_pres, z_where=z_where,
                           z_what=z_what, background=background)

    def latent_log_prior(self, z_where: torch.Tensor, z_what: torch.Tensor) -> torch.Tensor:
        """(B, N, 3), (B, N, C_what) -> (B, N): log p(z_where^i) + log p(z_what^i) of each step."""
        return self.where_prior().log_prob(z_where).sum(-1) + standard_normal().log_prob(z_what).sum(-1)

    def explanation_latents(self, trace: GlimpseTrace) -> dict[str, torch.Tensor]:
        """The continuous latents of a trace's objects, where their priors are defined: z_where and z_what."""
        return {"z_where": trace.z_where, "z_what": trace.z_what}

    def explained_by(self, trace: GlimpseTrace, latents: dict[str, torch.Tensor]) -> tuple[GlimpseTrace, torch.Tensor]:
        """The trace with its objects drawn from `latents` (explanation_latents' kind; presences and background
        as they were), and log p of the present objects' latents (B,)."""
        z_where, z_what = latents["z_where"], latents["z_what"]
        log_prior = (self.latent_log_prior(z_where, z_what) * trace.z_pres).sum(1)
        return dataclasses.replace(trace, z_where=z_where, z_what=z_what, objects=self.render_steps(z_what, z_where)), log_prior

    def render_object(self, z_what: torch.Tensor, z_where: torch.Tensor) -> torch.Tensor:
        """y^i: the decoded glimpse y_att placed on the canvas by the inverse transform. (B, C, H, W)"""
        return paste_glimpse(self.decode(z_what), z_where, self.config.image_size, self.config.min_scale)

    def render_steps(self, z_what: torch.Tensor, z_where: torch.Tensor) -> torch.Tensor:
        """(B, N, C_what), (B, N, 3) -> (B, N, C(+1), H, W): render_object of every step in one pass."""
        objects = self.render_object(z_what.flatten(0, 1), z_where.flatten(0, 1))
        return objects.view(*z_what.shape[:2], *objects.shape[1:])

    def render(self, trace: GlimpseTrace) -> torch.Tensor:
        """(B, C, H, W): the canvas of the trace, its present objects (weighted by z_pres) composited over its
        background; without either, sum_i z_pres^i y^i as in the paper."""
        return composite(trace.objects, trace.background, trace.z_pres, self.alpha)[:, -1]

    def prefix_canvases(self, trace: GlimpseTrace) -> torch.Tensor:
        """(B, N+1, C, H, W): canvas n holds the first n objects (as if they were present) over the background."""
        return composite(trace.objects, trace.background, torch.ones_like(trace.z_pres), self.alpha)

    def prefix_log_likelihoods(self, trace: GlimpseTrace) -> torch.Tensor:
        """(B, N+1): log p(x | canvas n) for every count n = 0..N."""
        if self.config.likelihood != "gaussian" or self.alpha:
            return self.log_likelihood(trace.images, self.prefix_canvases(trace))
        # Additive objects over a background b: sum (x - b - canvas_n)^2 = |x'|^2 - 2 sum_{i<=n} <x', y^i>
        # + sum_{i,j<=n} <y^i, y^j> with x' = x - b: all N+1 squared errors from N inner products and an N x N
        # Gram matrix, without building the N+1 canvases.
        residual = trace.images if trace.background is None else trace.images - trace.background.float()
        objects = trace.objects.flatten(2).float()  # (B, N, P), in float32 (the sums are over thousands of pixels)
        image = residual.flatten(1)  # (B, P)
        cross = torch.bmm(objects, image.unsqueeze(2)).squeeze(2)  # (B, N) <x', y^i>
        gram = torch.bmm(objects, objects.transpose(1, 2))  # (B, N, N) <y^i, y^j>
        canvas_norms = gram.cumsum(1).cumsum(2).diagonal(dim1=1, dim2=2)  # (B, N) |canvas_n|^2 for n >= 1
        zero = torch.zeros_like(cross[:, :1])
        squared_error = (image.square().sum(1, keepdim=True) - 2 * torch.cat([zero, cross.cumsum(1)], 1)
                         + torch.cat([zero, canvas_norms], 1))
        return self.gaussian_log_likelihood(squared_error, image[0].numel())

    def trace_log_likelihood(self, trace: GlimpseTrace) -> torch.Tensor:
        """(B,) log p(x | z) of the trace's latents."""
        return self.log_likelihood(trace.images, self.render(trace))

    def pixel_shares(self, trace: GlimpseTrace) -> torch.Tensor:
        """(B, N + 1, H, W): how likely each pixel is the background's and each step's object's (absent: 0),
        given its shares of the canvas and what the pixel shows (explain_pixels)."""
        shares = pixel_shares(trace.objects, trace.background, trace.z_pres, self.alpha)
        appearance = (fitted_appearance(trace.objects[:, :, :-1], trace.objects[:, :, -1]) if self.alpha
                      else trace.z_pres[:, :, None, None, None] * trace.objects)
        return self.explain_pixels(trace.images, shares, alone_pictures(appearance, trace.background, not self.alpha))

    def boxes(self, z_where: torch.Tensor, image_size: int) -> torch.Tensor:
        """(..., 3) -> (..., 4) pixel boxes x0, y0, x1, y1 of the windows."""
        return window_boxes(z_where, image_size, self.config.min_scale)

    def most_probable(self, images: torch.Tensor, sample: bool = False) -> Trace:
        """The trace of the most probable scene: every latent at its mean, each step's presence greedy; with
        `sample`, the continuous latents drawn from q instead (a proposal, infer.best_explanation)."""
        return self(images, presence="greedy", sample=sample)

    @torch.no_grad()
    def describe(self, images: torch.Tensor, threshold: float = 0.5, fixed_shapes: bool = False) -> Description:
        """Test-time inference: the recurrence's steps (`step`) with means instead of samples, no rendering (but
        DAIR's canvas), and early exit: each step runs only on the images whose every earlier step was present,
        and stops once none is left. Returns its Description: z_pres (B, N), presence probabilities (B, N; 0 for
        steps not reached), z_where (B, N, 3) and z_what (B, N, C_what), NaN where absent. With `fixed_shapes`,
        every step runs on every image and the stopped ones are masked: the same description, with nothing read
        back to the host, so that it compiles into one graph (infer.TrainedModel's compile)."""
        c, batch = self.config, images.shape[0]
        present, presence = images.new_zeros(batch, c.max_objects), images.new_zeros(batch, c.max_objects)
        wheres = images.new_full((batch, c.max_objects, 3), float("nan"))
        whats = images.new_full((batch, c.max_objects, c.what_size), float("nan"))
        active = torch.arange(batch, device=images.device)  # images still being explained
        reached = images.new_ones(batch, dtype=torch.bool)  # fixed shapes: every earlier step was present
        previous = torch.cat([self.initial_feedback(images), images.new_ones(batch, 1)], 1)
        state = None  # the LSTM's fresh state (zeros)
        context = self.read_image(images, sample=False) if self.difference else None  # DAIR's canvas starts with it
        objects: list[torch.Tensor] = []  # DAIR: each step's object, for the images still active
        for step in range(c.max_objects):
            if step == 0 or self.difference:
                background = None if context is None else context.background
                if self.difference:
                    shown = self.explained(images, background, objects, [images.new_ones(len(images))] * len(objects))
                    windows = wheres[active, :step] if step and self.proposes_where else None
                    embedding, where_shift = self.read_residual(images - shown, windows)
                else:
                    embedding, where_shift = self.embed(images), None
                image_gates = self.infer_step.image_gates(embedding)
            logit, latents, state = self.step(images, context, image_gates, previous, state, sample=False,
                                              where_shift=where_shift)
            z_where, z_what, feedback, drawn = latents.z_where, latents.z_what, latents.feedback, latents.objects
            probability = torch.sigmoid(logit)
            if fixed_shapes:
                presence[:, step] = probability * reached
                reached = reached & (probability > threshold)
                present[:, step] = reached.to(present.dtype)
                wheres[:, step] = torch.where(reached[:, None], z_where, float("nan"))
                whats[:, step] = torch.where(reached[:, None], z_what, float("nan"))
            else:
                presence[active, step] = probability
                keep = probability > threshold
                if not keep.any():
                    break
                if not keep.all():  # drop the images that stopped (only then: copying rows costs time)
                    kept = keep.nonzero().squeeze(1)  # found once; a boolean index would search the mask anew
                    active, images, image_gates, z_where, z_what, feedback = (
                        tensor.index_select(0, kept) for tensor in (active, images, image_gates, z_where, z_what, feedback))
                    state, objects = (state[0][kept], state[1][kept]), [obj[kept] for obj in objects]
                    context = None if context is None else BackgroundLatents(background=context.background[kept],
                                                                             log_ratio=context.log_ratio[kept])
                    drawn = None if drawn is None else drawn[kept]
                present[active, step] = 1.0
                wheres[active, step], whats[active, step] = z_where, z_what
            previous = torch.cat([feedback, torch.ones_like(z_where[:, :1])], 1)
            if self.difference:
                objects.append(drawn)
        return Description(present=present, presence=presence, where=wheres, what=whats)
