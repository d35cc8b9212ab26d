"""Typed configuration of an inverse-graphics run, saved beside its checkpoint: the data, the model (its
renderer included: it is the generative model) and the training, which is AIR's TrainConfig with other
defaults."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from airscene.config import TrainConfig, estimator_settings_used, proposal_reads_residual, steps_told_apart
from airscene.graphics.scenes import CROCKERY, SINGLE_OBJECTS
from airscene.settings import Settings, setting


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
# "marginal": the identity summed out exactly (a fixed count of one object); "nvil": the score function for
# the presence (any N); "enumerate": the count summed out over the N + 1 rendered prefixes (any N); "supervised":
# the same network trained on the true scenes (the paper's Figs. 6b and 7).
ESTIMATORS = ("marginal", "nvil", "enumerate", "supervised")


@dataclass
class SceneModelConfig:
    experiment: str = setting("single-object", "the scenes: their shapes, how many, whether the camera turns",
                              choices=tuple(EXPERIMENTS))
    renderer: str = setting("mujoco", "p(x | z)'s renderer: mujoco, or torch (fast, top-down: tests and trials)",
                            choices=RENDERERS)
    # "air": every step sees the image; "dair": step i sees x minus the render of steps < i, so it can tell
    # what is already explained (under occlusion a duplicate object costs the likelihood nothing)
    model: str = setting("air", "air, or dair (steps see the image minus the render of earlier steps)",
                         choices=("air", "dair"))
    # "residual": DAIR's step i starts q(position) where the camera sees the brightest blob of what is left to
    # explain (outside the objects earlier steps placed), and the network learns an offset from it. Without it a
    # step that starts on an item already explained stays there: a duplicate hidden under it costs the likelihood
    # nothing, and the renderer's gradient is local.
    where_proposal: str = setting("none", "DAIR: where each step's position starts: none (the network's alone) or "
                                  "residual (where the camera sees the brightest blob of what is left to explain)",
                                  choices=("none", "residual"), added="0.2.0")
    bound_camera: bool = setting(True, "keep the camera's azimuth within +-45 degrees, beyond which the square table "
                                 "looks the same", added="0.2.0", earlier=False)
    step_memory: bool = setting(True, "carry the LSTM state from step to step")
    step_feedback: bool = setting(True, "feed step i the previous step's latents", added="0.2.0")
    image_size: int = setting(32, "rendered images are image_size x image_size", minimum=16, maximum=512)
    hidden_size: int = setting(256, "LSTM units and image features", minimum=8, maximum=8192)
    likelihood_sd: float = setting(0.15, "sd of the Gaussian pixel noise", minimum=1e-3, maximum=100.0)
    count_prior: float = setting(0.1, "rho of the geometric count prior (table top)", minimum=1e-30, below=1.0)

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
    def fixed_count(self) -> bool:
        """Every scene holds N objects: z_pres is not a latent."""
        return self.counts == (self.max_objects,)


def graphics_training() -> TrainConfig:
    """TrainConfig's defaults for inverse graphics. The table top's q(z_pres) is count-uniform for the first
    400 steps (while the poses are found), then becomes the network's own over 400, as AIR's exploration; the
    learning rates start at their value (a higher start was measured for AIR's decoder, not for the renderer's
    poses)."""
    return TrainConfig(estimator="marginal", batch_size=32, learning_rate_start=1.0, presence_exploration_hold=400,
                       presence_exploration_steps=400, steps=3000, log_every=25, eval_every=250, checkpoint_every=250)


@dataclass
class GraphicsConfig(Settings):
    workers: int = setting(0, "renderer processes; 0 renders in the training process", minimum=0, maximum=256)
    repeats: bool = setting(True, "table top: may a scene hold two items of one type")
    training_images: int = setting(20_000, "training scenes, rendered once", minimum=1, maximum=10**7)
    test_images: int = setting(1_000, "held-out scenes", minimum=1, maximum=10**6)
    model: SceneModelConfig = field(default_factory=SceneModelConfig)
    train: TrainConfig = field(default_factory=graphics_training)

    def used(self) -> list[tuple[str, bool, str]]:
        train = self.train
        return [*estimator_settings_used(train),
                ("workers", self.model.renderer == "mujoco", "by the MuJoCo renderer"),
                ("repeats", not self.model.fixed_count, "by experiments with several objects"),
                ("model.count_prior", not self.model.fixed_count, "by experiments with several objects"),
                ("model.bound_camera", self.model.move_camera, "by experiments whose camera turns"),
                ("train.yaw_proposals", train.estimator != "supervised", "by the unsupervised estimators")]

    def consistency(self) -> list[tuple[bool, str]]:
        estimator, fixed = self.train.estimator, self.model.fixed_count
        return [
            (estimator in ESTIMATORS, f"estimator '{estimator}' is AIR's: inverse graphics uses {', '.join(ESTIMATORS)}"),
            (estimator == "supervised" or (estimator in ("nvil", "enumerate")) != fixed,
             f"{self.model.experiment} has a {'fixed' if fixed else 'variable'} count: "
             f"use --estimator {'marginal' if fixed else 'enumerate, nvil'} or supervised"),
            (self.train.batch_size <= self.training_images,
             f"batch size {self.train.batch_size} exceeds the {self.training_images} training images: lower "
             "--batch-size or raise --training-images"),
            steps_told_apart(self.model),
            proposal_reads_residual(self.model),
        ]
