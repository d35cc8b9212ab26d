"""What every scene model declares, so that training, evaluation, inference and figures ask the model what it
can do and never branch on its class: AIR and DAIR (model/air.py) and the grid (model/grid.py) implement it."""

from __future__ import annotations

from typing import Protocol

import torch

from airscene.config import ModelConfig
from airscene.model.trace import Description, SceneSample, Trace


class SceneModel(Protocol):
    config: ModelConfig
    count_prior: torch.Tensor  # rho, a buffer that training may anneal
    alpha: bool  # objects carry an opacity and hide what is behind them

    # What it can do.
    enumerates_count: bool  # presence "all" gives every count's terms, so the count can be summed out exactly
    estimators: tuple[str, ...]  # the estimators (config.ESTIMATORS) that can train it
    describe_compiles: bool  # describe has a fixed-shape form, and compiled it is faster than eager inference
    describe_in_bf16: bool  # describe can run under bfloat16 autocast (TrainedModel's precision "bf16")
    own_settings: tuple[str, ...]  # settings ("model.NAME", "train.NAME") that only some models read, this one among them

    @staticmethod
    def fit_to_data(config: ModelConfig, largest: int, batch_size: int, data) -> None:
        """Complete config from the data's canvas (set on it already) and refuse data it cannot learn from."""

    @property
    def input_size(self) -> int | None:
        """The canvas side it takes: the one trained on, or None where any size goes."""

    def object_capacity(self) -> int | None:
        """The most objects one scene can hold, or None where that depends on the canvas."""

    # The inference network q(z | x) and the generative model p(x, z).
    def __call__(self, images: torch.Tensor, presence: str = "sample", exploration: float | torch.Tensor = 0.0,
                 temperature: float | torch.Tensor = 1.0, sample: bool = True) -> Trace: ...

    def most_probable(self, images: torch.Tensor, sample: bool = False) -> Trace: ...

    def describe(self, images: torch.Tensor, threshold: float = 0.5) -> Description:
        """Test-time inference. Where describe_compiles, describe(..., fixed_shapes=True) gives the same description
        from a computation whose shapes do not depend on the images and that reads nothing back to the host: one
        graph for torch.compile."""

    def sample(self, number: int, generator: torch.Generator | None = None, count: int | None = None) -> SceneSample: ...

    def render(self, trace: Trace) -> torch.Tensor: ...

    def explanation_latents(self, trace: Trace) -> dict[str, torch.Tensor]:
        """The continuous latents of a trace's objects, where their priors are defined."""

    def explained_by(self, trace: Trace, latents: dict[str, torch.Tensor]) -> tuple[Trace, torch.Tensor]:
        """The trace with its objects drawn from `latents` instead (presences and background unchanged), and
        log p of the present objects' latents (B,): with trace_log_likelihood, the joint that
        infer.refine_explanation climbs."""

    def trace_log_likelihood(self, trace: Trace) -> torch.Tensor: ...

    # What a trace shows.
    def present_objects(self, trace: Trace) -> torch.Tensor:
        """(B, M, C, H, W): each present object alone on the canvas, as opaque as its alpha."""

    def pixel_shares(self, trace: Trace) -> torch.Tensor: ...

    def boxes(self, z_where: torch.Tensor, image_size: int) -> torch.Tensor: ...
