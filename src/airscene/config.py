"""Typed configuration: saved beside every checkpoint, so a checkpoint alone rebuilds its model. Every field
is a flag of `airscene train` (its name with dashes) and is validated the same way whether it comes from
a flag, from Python or from a checkpoint (airscene.settings)."""

from __future__ import annotations

from dataclasses import dataclass, field

from airscene.compiled import COMPILE_MODES
from airscene.images import INTENSITIES
from airscene.settings import Settings, setting

MAIN_JOB_MINUTES = 10.0  # the main job's (`airscene run`) training budget where its config sets none
# What a resumed run may change: its budget and where it computes; anything else would be another run.
RESUMABLE = ("train.steps", "train.minutes", "train.threads", "train.device", "train.compile", "workers")
# Every scene model's (each declares those it accepts: AIR.estimators, GridAIR.estimators); inverse graphics
# has its own (graphics.config).
ESTIMATORS = ("enumerate", "nvil", "vimco", "relaxed", "local")
PRECISIONS = ("fp32", "bf16")  # float32, or bfloat16 autocast: of a training step, and of inference
SCHEDULES = ("none", "linear", "exponential")


def resumable_flags() -> str:
    """RESUMABLE as the flags that set them, in words: "--steps, ... and --workers"."""
    flags = [f"--{name.split('.')[-1].replace('_', '-')}" for name in RESUMABLE]
    return f"{', '.join(flags[:-1])} and {flags[-1]}"


@dataclass
class ModelConfig:
    model: str = setting("air", "air: the recurrent input is the image; dair: the error canvas x - xhat^{i-1}; "
                         "grid: every cell of a grid at once, for many objects", choices=("air", "dair", "grid"))
    # The grid model's cells: each proposes at most one object, whose centre lies in it. A little smaller
    # than the objects, so that two objects' centres rarely share a cell (of 0-10 MNIST digits on 100 x 100:
    # 1.6% of scenes with 16-pixel cells, 0.05% with 12, none with 8); the cost grows as cells shrink.
    cell_size: int = setting(12, "grid: the cells' side in pixels", choices=(4, 6, 8, 12, 16, 24, 32), added="0.2.0")
    # The grid's presences at test time: the network's, then this many sweeps of coordinate ascent on the
    # ELBO (GridAIR.refine_presence), which settles an object that two neighbouring cells both claim or both
    # leave.
    presence_sweeps: int = setting(2, "grid: sweeps refining the cells' presences at test time (0: the network's alone)",
                                   minimum=0, maximum=100, added="0.2.0")
    # The grid's backbone: strided convolutions down to the cells, the first with this many channels and each
    # next one twice as many (up to embedding_size). On a large canvas they are most of the grid's inference
    # time (a 200 x 200 canvas: about 190 M multiply-adds at 32, 50 M at 16 with embedding_size 64).
    backbone_channels: int = setting(32, "grid: channels of the backbone's first convolution, doubled at each stride",
                                     minimum=1, maximum=1024, added="0.2.0")
    # False: every inference step starts from an empty LSTM state. It then cannot count its own steps and
    # must decide from its input and the previous step's latents (for DAIR: is anything left to explain?).
    step_memory: bool = setting(True, "carry the LSTM state from step to step")
    # False: step i is not told z^{i-1} (nor z_pres^{i-1}) either. Without step memory the previous object's
    # latents can still tell a step where it is in the sequence; without both, DAIR's step is one function of
    # what is left to explain, the same at every step, which is what a count never seen in training needs.
    step_feedback: bool = setting(True, "feed step i the previous step's latents z^{i-1} and z_pres^{i-1}",
                                  added="0.2.0")
    # "residual": DAIR's step i centres its window's mean on the brightest blob of what is left to explain (the
    # peak of |x - xhat^{i-1}| smoothed over a prior-sized window, outside the earlier steps' windows), and the
    # network learns only an offset from it. The network alone learns slowly where small objects are, and a step
    # may settle on an object already explained (behind it, with alpha, a duplicate costs the likelihood nothing):
    # measured on the Multi-dSprites and CLEVR look-alikes (RESULTS.md, "Segmentation: each step sent to what is left").
    where_proposal: str = setting("none", "DAIR: where each step's window starts: none (the network's alone) or "
                                  "residual (on the brightest blob of what is left to explain)",
                                  choices=("none", "residual"), added="0.2.0")
    max_objects: int = setting(3, "N, the number of inference steps", minimum=1, maximum=64)
    # The canvas: None until training sets them from the data (a value that contradicts the data is refused).
    image_size: int | None = setting(None, "canvases are image_size x image_size (default: the data's)",
                                     minimum=4, maximum=2048)
    channels: int | None = setting(None, "1 (grey) or 3 (RGB) (default: the data's)", choices=(1, 3))
    intensity: str | None = setting(None, "how image files' values become [0, 1], as the data set was imported: auto, "
                                    "image (each image's own percentiles) or full (the type's range) (default: the "
                                    "data's)", choices=tuple(INTENSITIES), added="0.2.0")
    image_scale: float | None = setting(None, "whole images are resized by this factor before the model reads them, "
                                        "as the data set's were (`data import --scale`) (default: the data's)",
                                        minimum=0.01, maximum=100.0, added="0.2.0")
    glimpse_size: int = setting(28, "the attention window is resampled to glimpse_size x glimpse_size",
                                minimum=4, maximum=256)
    what_size: int = setting(50, "C, the appearance code", minimum=1, maximum=1024)
    hidden_size: int = setting(256, "LSTM units", minimum=1, maximum=8192)
    embedding_size: int = setting(256, "the image is embedded once before the LSTM sees it (grid: each cell's "
                                  "features)", minimum=1, maximum=8192)
    glimpse_hidden_size: int = setting(200, "hidden units of the glimpse encoder and decoder", minimum=1, maximum=8192)
    glimpse_network: str = setting("mlp", "the glimpse encoder and decoder", choices=("mlp", "conv"))
    # "flat": one colour an object and a decoded shape (GlimpseDecoder): for flat-shaded objects (sprites,
    # tetrominoes), whose per-pixel colours the "pixel" decoder must otherwise learn at every pixel.
    glimpse_colour: str = setting("pixel", "how a decoded glimpse is coloured: pixel (each pixel its own) or flat "
                                  "(one colour an object, painting a decoded shape)", choices=("pixel", "flat"),
                                  added="0.2.0")
    decoder_bias: float = setting(-2.0, "added before the decoder's sigmoid: glimpses start nearly blank",
                                  minimum=-20.0, maximum=20.0)
    likelihood: str = setting("gaussian", "p(x | z): gaussian (sd likelihood_sd) or bernoulli",
                              choices=("gaussian", "bernoulli"))
    likelihood_sd: float = setting(0.3, "sd of the Gaussian likelihood", minimum=1e-3, maximum=100.0)
    # z_where = (s, x, y): the window spans 1/s of the canvas. s ~ N(2.3, 0.1) is a window of 20-24 pixels
    # on a 50-pixel canvas: any unscaled MNIST digit (ink <= 20 pixels) fits, two digits do not. A looser
    # or smaller window (Pyro's N(3, 0.2), made for digits shrunk to ~15 pixels) lets one step cover two
    # digits or split one, and the count then fails.
    where_prior_mean: tuple[float, ...] = setting((2.3, 0.0, 0.0), "mean of p(z_where) = (scale, x, y)",
                                                  minimum=-100.0, maximum=100.0, length=3)
    where_prior_sd: tuple[float, ...] = setting((0.1, 1.0, 1.0), "sd of p(z_where)", minimum=1e-3, maximum=100.0,
                                                length=3)
    min_scale: float = setting(0.5, "the window is never more than 1/min_scale canvases wide", minimum=0.01)
    # The objects' size in pixels, SIZE or MIN,MAX, instead of the three settings above: training derives
    # them from it and the canvas (`object_size_prior`), and the window can then never grow to cover two
    # objects of that size.
    object_size: tuple[float, ...] | None = setting(None, "the objects' size in pixels, SIZE or MIN,MAX: sets the "
                                                    "window-scale prior and bounds the window", above=0.0,
                                                    maximum=4096.0, length=(1, 2))
    # The widest window, as a multiple of the largest objects: 1.5 leaves room for a 20-pixel digit whatever its
    # placement; nearer 1 (1.2), two objects side by side no longer fit in one window.
    window_limit: float = setting(1.5, "the widest window, as a multiple of the largest --object-size", minimum=1.0,
                                  maximum=10.0, added="0.2.0")
    # Real images are not black. "learned": a background with its own latent z_bg ~ N(0, I), decoded at
    # background_resolution^2 and smoothly upsampled; the recurrent input and the likelihood then see
    # objects over it. It must stay too coarse to draw an object: a background pixel wider than the
    # objects (2 on the 50-pixel canvas: at 4 it drew the digits as blobs and no count formed).
    background: str = setting("none", "none, or learned: a smooth background with its own latent", choices=("none", "learned"))
    background_size: int = setting(8, "dimensions of the background's latent", minimum=1, maximum=256)
    background_resolution: int = setting(2, "the background is decoded at this many pixels a side, then upsampled",
                                         minimum=1, maximum=512)
    # "add": the canvas is the sum of the objects (the paper's); "alpha": each glimpse also decodes an alpha
    # mask and the objects are composited, so an object hides what lies behind it: AIR's step 1 in front,
    # and the grid's cells by an inferred depth of each.
    compositing: str = setting("add", "add (the paper's sum of glimpses) or alpha (objects occlude: AIR's step 1 "
                               "in front, the grid's by an inferred depth)", choices=("add", "alpha"))
    # rho of the count prior: each object costs log(1/rho) nats (1e-10: about 23), so a digit split over
    # two steps does not pay. Part of the generative model; training may anneal toward it (TrainConfig).
    count_prior: float = setting(1e-10, "rho: AIR's count is a geometric in rho truncated at N, the grid's cells each "
                                 "present with probability rho (float32 holds it from 1e-30)", minimum=1e-30, below=1.0)


@dataclass
class TrainConfig:
    """How a model is trained: the estimator and the loop. AIR and inverse graphics share it (their
    defaults differ: airscene.graphics.config)."""

    estimator: str = setting("enumerate", "how the count's gradient is estimated (AIR: enumerate, nvil, vimco, "
                             "relaxed; the grid: local, vimco, relaxed; inverse graphics: marginal, nvil, enumerate, "
                             "supervised)",
                             choices=(*ESTIMATORS, "marginal", "supervised"))
    batch_size: int = setting(64, "images per step", minimum=1, maximum=65536)
    learning_rate: float = setting(1e-3, "Adam's step size for the model", above=0.0, maximum=10.0)
    # The learning rates' decay over the budget (whichever of steps and minutes runs out first): held until
    # learning_rate_hold of it is spent (none, by default: on the overlapping sprites a decay over the whole
    # budget counted better than one over its second half), then down a half cosine to learning_rate_final
    # times their value at its end. A minute-budgeted run cannot know its step count in advance, so the
    # schedule follows the share of the budget spent; the elapsed time is checkpointed, so a resumed run
    # carries on along it.
    learning_rate_decay: str = setting("none", "decay the learning rates over the budget: none or cosine",
                                       choices=("none", "cosine"), added="0.2.0")
    learning_rate_hold: float = setting(0.0, "share of the budget before the decay begins", minimum=0.0, below=1.0,
                                        added="0.2.0")
    learning_rate_final: float = setting(0.05, "the learning rates at the budget's end, as a share of their value",
                                         minimum=0.0, maximum=1.0, added="0.2.0")
    # The first minute: the model's learning rate starts at learning_rate_start times its value and comes down
    # to it exponentially over learning_rate_start_steps. AIR's count forms once one glimpse explains a whole
    # digit better than two, and a higher early rate gets the decoder there sooner; the rate then returns to the
    # one measured over long runs (README, RESULTS.md "Time to accuracy"). NVIL's baseline keeps its own rate.
    learning_rate_start: float = setting(4.0, "the model's learning rate's multiple at step 0, annealed to 1",
                                         above=0.0, maximum=100.0, added="0.2.0", earlier=1.0)
    learning_rate_start_steps: int = setting(1000, "steps over which that multiple comes down to 1", minimum=1,
                                             added="0.2.0")
    baseline_learning_rate: float = setting(1e-2, "nvil: the baseline must track the signal faster",
                                            above=0.0, maximum=10.0)
    normalise_signal: bool = setting(True, "nvil: divide the centred signal by its running sd")
    vimco_samples: int = setting(4, "vimco: K traces per image (a step costs about K times as much)",
                                 minimum=2, maximum=256)
    temperature_start: float = setting(1.0, "relaxed: the Concrete temperature, annealed exponentially",
                                       above=0.0, maximum=100.0)
    temperature_end: float = setting(0.5, "relaxed: the temperature after temperature_steps", above=0.0, maximum=100.0)
    temperature_steps: int = setting(5000, "relaxed: steps of the temperature's annealing", minimum=1)
    straight_through: bool = setting(False, "relaxed: hard z_pres forward, relaxed gradient backward")
    yaw_proposals: int = setting(8, "inverse graphics: yaws rendered per turning object for q(yaw)'s wake update",
                                 minimum=1, maximum=256)
    clip_norm: float = setting(10.0, "the model's gradient norm is clipped to this", above=0.0)
    augment: str = setting("none", "turns: each training image flipped and turned by a random multiple of 90 degrees "
                           "every step (objects seen from above, such as cells, coins and stars, from few source "
                           "images); none: as stored", choices=("none", "turns"), added="0.2.0")
    augment_contrast: float = setting(0.0, "each training image's contrast about each channel's median scaled every "
                                      "step by a factor drawn log-uniformly from [1/(1 + c), 1 + c] (shades of "
                                      "objects the source images do not show); 0: as stored", minimum=0.0,
                                      maximum=10.0, added="0.2.0")
    # The count prior rho: fixed at the model's count_prior ("none"), or annealed from count_prior_start to
    # it over count_prior_steps ("linear", "exponential") and held there. A small fixed rho learns more
    # reliably than the paper's annealing from near 1: with exploration (below) nothing needs a high rho
    # to keep the steps in use early on.
    count_prior_schedule: str = setting("none", "anneal the count prior: none, linear or exponential",
                                        choices=SCHEDULES)
    count_prior_start: float = setting(0.9, "rho at step 0 of an annealed count prior", minimum=1e-30, below=1.0)
    count_prior_steps: int = setting(3000, "steps of the count prior's annealing", minimum=1)
    presence_exploration: float = setting(1.0, "initial weight e of the exploration mixture in q(z_pres) (model/air.py)",
                                          minimum=0.0, maximum=1.0)
    presence_exploration_hold: int = setting(0, "steps e stays at its initial weight", minimum=0)
    presence_exploration_steps: int = setting(1500, "then e decays linearly to 0 over this many steps", minimum=1)
    steps: int = setting(20_000, "training steps", minimum=1, maximum=10**9)
    minutes: float | None = setting(None, "wall-clock budget; whichever of steps and minutes ends first", above=0.0)
    seed: int = setting(0, "seeds the initialisation, the batches and every sample", minimum=0, maximum=2**32 - 1)
    log_every: int = setting(50, "steps between training records in metrics.jsonl", minimum=1)
    eval_every: int = setting(500, "steps between held-out evaluations", minimum=1)
    eval_images: int = setting(1000, "held-out images of each evaluation during training", minimum=1)
    checkpoint_every: int = setting(1000, "steps between checkpoints", minimum=1)
    threads: int = setting(0, "torch intra-op threads; 0 keeps torch's default", minimum=0, maximum=1024)
    device: str = setting("auto", "where to train: auto (a GPU if there is one), cpu, cuda, cuda:N or mps")
    precision: str = setting("fp32", "fp32, or bf16: autocast to bfloat16 (README, 'Where the compute is')",
                             choices=PRECISIONS)
    # A training step is about a thousand small operators; compiled, they fuse into a few kernels (and with
    # reduce-overhead on a GPU, one CUDA graph replay), after a compile of up to a minute at the run's start
    # (airscene.compiled). It changes how a step computes (its sums' rounding), not what it computes.
    compile: str = setting("none", "compile the training step with torch.compile: none, default, or reduce-overhead "
                           "(on a GPU, replayed as CUDA graphs)", choices=COMPILE_MODES, added="0.2.0")
    # Under torchrun each rank takes batch_size images, so a step sees batch_size x world size; "linear"
    # multiplies the learning rates by the world size, "sqrt" by its square root.
    learning_rate_scaling: str = setting("none", "scale the learning rates with the world size: none, linear or sqrt",
                                         choices=("none", "linear", "sqrt"))


@dataclass
class Config(Settings):
    data: str = setting("data/multi-mnist", "the data set directory")
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def consistency(self) -> list[tuple[bool, str]]:
        from airscene.model import model_class  # the models read this module: asked when validating, not imported

        model, train = self.model, self.train
        accepted = model_class(model.model).estimators
        return [
            (train.estimator in ESTIMATORS, f"estimator '{train.estimator}' is for inverse graphics: AIR uses "
                                            f"{', '.join(ESTIMATORS)}"),
            (model.min_scale < model.where_prior_mean[0], f"min_scale {model.min_scale} must be below the prior's "
                                                          f"mean scale {model.where_prior_mean[0]}"),
            steps_told_apart(model),
            proposal_reads_residual(model),
            (train.estimator in accepted or train.estimator not in ESTIMATORS,
             f"estimator '{train.estimator}' does not apply to --model {model.model}: use {', '.join(accepted)}"),
        ]

    def used(self) -> list[tuple[str, bool, str]]:
        from airscene.model import MODELS, model_class  # the models read this module: asked when validating

        model, train = self.model, self.train
        reads = model_class(model.model).own_settings  # what only some models read, as each model declares

        def readers(path: str) -> str:
            return " and ".join(name for name, cls in MODELS.items() if path in cls.own_settings)

        own = sorted({path for cls in MODELS.values() for path in cls.own_settings} - {"model.window_limit"})
        return [*estimator_settings_used(train), ("train.yaw_proposals", False, "by inverse graphics"),
                *((path, path in reads, f"by --model {readers(path)}") for path in own),
                # AIR's window prior follows --object-size within the same limit
                ("model.window_limit", "model.window_limit" in reads or model.object_size is not None,
                 f"with --object-size or --model {readers('model.window_limit')}"),
                ("model.likelihood_sd", model.likelihood == "gaussian", "with --likelihood gaussian"),
                ("model.background_size", model.background == "learned", "with --background learned"),
                ("model.background_resolution", model.background == "learned", "with --background learned")]


def proposal_reads_residual(model) -> tuple[bool, str]:
    """A model's consistency check (AIR's and inverse graphics'): a residual proposal reads what the earlier steps
    left to explain, which only DAIR's steps see."""
    return (model.where_proposal == "none" or model.model == "dair",
            "--where-proposal residual starts a step on what the earlier steps left to explain, which only DAIR "
            "reads: use --model dair")


def steps_told_apart(model) -> tuple[bool, str]:
    """A model's consistency check (AIR's and inverse graphics'): AIR's steps all read the image, so without step
    memory and step feedback every step would infer the same object."""
    return (model.step_memory or model.step_feedback or model.model != "air",
            "without step memory and step feedback every AIR step sees the same input and infers the same object: "
            "use --model dair, or keep --step-memory or --step-feedback")


def estimator_settings_used(train: TrainConfig) -> list[tuple[str, bool, str]]:
    """TrainConfig's settings that only some estimators or schedules read."""
    relaxed = train.estimator == "relaxed"
    return [("train.normalise_signal", train.estimator == "nvil", "by --estimator nvil"),
            ("train.baseline_learning_rate", train.estimator == "nvil", "by --estimator nvil, whose baseline it trains"),
            ("train.vimco_samples", train.estimator == "vimco", "by --estimator vimco"),
            *((f"train.{name}", relaxed, "by --estimator relaxed")
              for name in ("temperature_start", "temperature_end", "temperature_steps", "straight_through")),
            *((f"train.{name}", train.count_prior_schedule != "none", "with an annealed --count-prior-schedule")
              for name in ("count_prior_start", "count_prior_steps")),
            ("train.learning_rate_start_steps", train.learning_rate_start != 1.0, "with a --learning-rate-start other than 1"),
            *((f"train.{name}", train.learning_rate_decay != "none", "with --learning-rate-decay cosine")
              for name in ("learning_rate_hold", "learning_rate_final"))]
