"""Typed configuration: saved beside every checkpoint, so a checkpoint alone rebuilds its model."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from airscene.errors import AirsceneError

ESTIMATORS = ("enumerate", "nvil", "vimco", "relaxed")
SCHEDULES = ("none", "linear", "exponential")


@dataclass
class ModelConfig:
    model: str = "air"  # "air": the recurrent input is the image; "dair": the error canvas x - xhat^{i-1}
    # False: every inference step starts from an empty LSTM state. It then cannot count its own steps and
    # must decide from its input alone (for DAIR: is anything left to explain?), which is what lets a
    # model trained on at most 2 objects find a third.
    step_memory: bool = True
    max_objects: int = 3  # N, the number of inference steps
    image_size: int = 50  # canvases are image_size x image_size
    channels: int = 1
    glimpse_size: int = 28  # the attention window is resampled to glimpse_size x glimpse_size
    what_size: int = 50  # C, the appearance code
    hidden_size: int = 256  # LSTM units
    embedding_size: int = 256  # the image is embedded once before the LSTM sees it
    glimpse_hidden_size: int = 200  # hidden units of the glimpse encoder and decoder MLPs
    glimpse_network: str = "mlp"  # "mlp" or "conv", for the glimpse encoder and decoder
    decoder_bias: float = -2.0  # added before the decoder's sigmoid: glimpses start nearly blank
    likelihood: str = "gaussian"  # "gaussian" (sd below) or "bernoulli"
    likelihood_sd: float = 0.3
    # z_where = (s, x, y): the window spans 1/s of the canvas. s ~ N(2.3, 0.1) is a window of 20-24 pixels
    # on a 50-pixel canvas: any unscaled MNIST digit (ink <= 20 pixels) fits, two digits do not. A looser
    # or smaller window (Pyro's N(3, 0.2), made for digits shrunk to ~15 pixels) lets one step cover two
    # digits or split one, and the count then fails.
    where_prior_mean: tuple[float, float, float] = (2.3, 0.0, 0.0)
    where_prior_sd: tuple[float, float, float] = (0.1, 1.0, 1.0)
    min_scale: float = 0.5  # the window is never more than 1/min_scale canvases wide


@dataclass
class TrainConfig:
    estimator: str = "enumerate"
    batch_size: int = 64
    learning_rate: float = 1e-3
    baseline_learning_rate: float = 1e-2  # nvil only: the baseline must track the signal faster
    normalise_signal: bool = True  # nvil only: divide the centred signal by its running sd
    vimco_samples: int = 4  # vimco only: K traces per image (a step costs about K times as much)
    temperature_start: float = 1.0  # relaxed only: the Concrete temperature, annealed exponentially
    temperature_end: float = 0.5
    temperature_steps: int = 5000
    straight_through: bool = False  # relaxed only: hard z_pres forward, relaxed gradient backward
    clip_norm: float = 10.0
    # The presence prior rho: fixed at count_prior_end ("none"), or annealed from count_prior_start to
    # count_prior_end over count_prior_steps ("linear", "exponential") and held there. A small fixed rho
    # (each object costs log(1/rho) = 23 nats) learns more reliably than the paper's annealing from near 1:
    # with exploration (below) nothing needs a high rho to keep the steps in use early on.
    count_prior: str = "none"
    count_prior_start: float = 0.9
    count_prior_end: float = 1e-10
    count_prior_steps: int = 3000
    presence_exploration: float = 1.0  # initial weight e of the exploration mixture in q(z_pres) (model/air.py)
    presence_exploration_steps: int = 1500  # e decays linearly to 0 over this many steps
    steps: int = 20_000
    minutes: float | None = None  # wall-clock budget; whichever of steps and minutes ends first
    seed: int = 0
    log_every: int = 50
    eval_every: int = 500
    eval_images: int = 1000
    checkpoint_every: int = 1000
    threads: int = 0  # torch intra-op threads; 0 keeps torch's default


@dataclass
class Config:
    data: str = "data/multi-mnist"
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "Config":
        try:
            model = ModelConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in values["model"].items()})
            return cls(data=values["data"], model=model, train=TrainConfig(**values["train"]))
        except (KeyError, TypeError) as error:
            raise AirsceneError(f"configuration does not match this airscene version ({error}): "
                                "retrain, or use the airscene version that wrote it") from None

    def validate(self) -> "Config":
        model, train = self.model, self.train
        checks = [
            (model.model in ("air", "dair"), f"model '{model.model}' is unknown: use air or dair"),
            (model.max_objects >= 1, f"max_objects is {model.max_objects}: use N >= 1"),
            (model.image_size >= 4 and model.glimpse_size >= 4, "image_size and glimpse_size must be >= 4"),
            (model.channels in (1, 3), f"channels is {model.channels}: use 1 or 3"),
            (model.glimpse_network in ("mlp", "conv"), f"glimpse_network '{model.glimpse_network}' is unknown: use mlp or conv"),
            (model.likelihood in ("gaussian", "bernoulli"), f"likelihood '{model.likelihood}' is unknown: use gaussian or bernoulli"),
            (model.likelihood_sd > 0, "likelihood_sd must be > 0"),
            (min(model.where_prior_sd) > 0, "where_prior_sd must be > 0"),
            (0 < model.min_scale < model.where_prior_mean[0], "min_scale must lie in (0, prior mean scale)"),
            (train.estimator in ESTIMATORS, f"estimator '{train.estimator}' is unknown: use one of {', '.join(ESTIMATORS)}"),
            (train.batch_size >= 1, f"batch size {train.batch_size} must be >= 1"),
            (train.learning_rate > 0, f"learning rate {train.learning_rate} must be > 0"),
            (train.baseline_learning_rate > 0, f"baseline learning rate {train.baseline_learning_rate} must be > 0"),
            (train.clip_norm > 0, "clip_norm must be > 0"),
            (train.vimco_samples >= 2, f"vimco_samples is {train.vimco_samples}: VIMCO needs >= 2"),
            (train.temperature_start > 0 and train.temperature_end > 0, "temperatures must be > 0"),
            (train.count_prior in SCHEDULES, f"count prior schedule '{train.count_prior}' is unknown: use none, linear or exponential"),
            (0 < train.count_prior_end < 1 and 0 < train.count_prior_start < 1, "count prior values must lie in (0, 1)"),
            (0 <= train.presence_exploration <= 1, "presence_exploration must lie in [0, 1]"),
            (train.steps >= 1, f"steps is {train.steps}: use >= 1"),
            (train.minutes is None or train.minutes > 0, "minutes must be > 0"),
            (min(train.log_every, train.eval_every, train.checkpoint_every, train.eval_images) >= 1,
             "log_every, eval_every, checkpoint_every and eval_images must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise AirsceneError(f"setting rejected: {message}")
        return self
