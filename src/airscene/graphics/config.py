"""Typed configuration of an inverse-graphics run, saved beside its checkpoint."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import NamedTuple

from airscene.errors import AirsceneError
from airscene.graphics.scenes import CROCKERY, SINGLE_OBJECTS

class Experiment(NamedTuple):
    shapes: tuple[str, ...]
    max_objects: int  # N, the inference steps
    counts: tuple[int, ...]  # how many objects a scene may hold
    move_camera: bool


EXPERIMENTS = {
    "single-object": Experiment(SINGLE_OBJECTS, 1, (1,), False),
    "table-top": Experiment(CROCKERY, 4, (0, 1, 2, 3), True),
}
RENDERERS = ("mujoco", "torch")


@dataclass
class GraphicsConfig:
    experiment: str = "single-object"
    renderer: str = "mujoco"  # "torch": the fast top-down renderer (tests, quick trials)
    workers: int = 0  # renderer processes; 0 renders in the training process
    # "air": every step sees the image; "dair": step i sees x minus the render of steps < i, so it can
    # tell what is already explained (under occlusion a duplicate object costs the likelihood nothing)
    model: str = "air"
    repeats: bool = True  # table-top: may a scene hold two items of one type
    supervised: bool = False  # single-object: train on the true identity and pose instead (the paper's Fig. 6b)
    # "marginal": the identity summed out exactly (single objects); "score-function": NVIL for the
    # presence (any N). None picks marginal for N = 1 (estimator.py).
    estimator: str | None = None
    image_size: int = 32
    training_images: int = 20_000
    test_images: int = 1_000
    hidden_size: int = 256
    likelihood_sd: float = 0.15
    presence_prior: float = 0.1  # rho of the geometric count prior (table-top)
    yaw_proposals: int = 8  # yaws rendered per turning object and step for q(yaw)'s wake update
    batch_size: int = 32
    learning_rate: float = 1e-3
    baseline_learning_rate: float = 1e-2
    # table top: q(z_pres) is count-uniform for the first exploration_hold steps (while the poses are
    # found), then becomes the network's own over exploration_steps, as AIR's exploration (model/air.py)
    exploration_hold: int = 400
    exploration_steps: int = 400
    clip_norm: float = 10.0
    steps: int = 3000
    minutes: float | None = None
    seed: int = 0
    log_every: int = 25
    eval_every: int = 250
    checkpoint_every: int = 250
    threads: int = 0

    @property
    def shapes(self) -> tuple[str, ...]:
        return EXPERIMENTS[self.experiment].shapes

    @property
    def max_objects(self) -> int:
        return EXPERIMENTS[self.experiment].max_objects

    @property
    def counts(self) -> tuple[int, ...]:
        return EXPERIMENTS[self.experiment].counts

    @property
    def move_camera(self) -> bool:
        return EXPERIMENTS[self.experiment].move_camera

    @property
    def estimator_name(self) -> str:
        return self.estimator or ("marginal" if self.max_objects == 1 else "score-function")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "GraphicsConfig":
        try:
            return cls(**values)
        except TypeError as error:
            raise AirsceneError(f"configuration does not match this airscene version ({error}): retrain") from None

    def validate(self) -> "GraphicsConfig":
        checks = [
            (self.experiment in EXPERIMENTS, f"experiment '{self.experiment}' is unknown: use {' or '.join(EXPERIMENTS)}"),
            (self.renderer in RENDERERS, f"renderer '{self.renderer}' is unknown: use {' or '.join(RENDERERS)}"),
            (self.model in ("air", "dair"), f"model '{self.model}' is unknown: use air or dair"),
            (not (self.supervised and self.experiment != "single-object"), "--supervised is for the single-object experiment"),
            (self.estimator in (None, "marginal", "score-function"),
             f"estimator '{self.estimator}' is unknown: use marginal or score-function"),
            (not (self.estimator_name == "marginal" and self.max_objects > 1),
             "the marginal estimator sums over one object's identity: use score-function for the table top"),
            (self.workers >= 0, "workers must be >= 0"),
            (self.image_size >= 16, f"image size {self.image_size} is too small: use >= 16"),
            (self.batch_size >= 1 and self.training_images >= self.batch_size,
             "batch size must be >= 1 and at most the number of training images"),
            (self.test_images >= 1, "test_images must be >= 1"),
            (self.likelihood_sd > 0, "likelihood_sd must be > 0"),
            (0 < self.presence_prior < 1, "presence_prior must lie in (0, 1)"),
            (self.yaw_proposals >= 1, f"yaw_proposals is {self.yaw_proposals}: use >= 1 (q(yaw) learns from them)"),
            (self.learning_rate > 0 and self.baseline_learning_rate > 0, "learning rates must be > 0"),
            (self.steps >= 1, f"steps is {self.steps}: use >= 1"),
            (self.minutes is None or self.minutes > 0, "minutes must be > 0"),
            (min(self.log_every, self.eval_every, self.checkpoint_every) >= 1,
             "log_every, eval_every and checkpoint_every must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise AirsceneError(f"setting rejected: {message}")
        return self
