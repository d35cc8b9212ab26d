"""What a forward pass records for an estimator, shared by every model."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch


@dataclass(kw_only=True)
class Trace:
    """The terms of one forward pass that every estimator may rely on; N steps, B images. A model's own
    trace adds its latents (AIR's glimpse latents, inverse graphics' scene parameters)."""

    images: torch.Tensor  # (B, C, H, W)
    presence_logits: torch.Tensor  # (B, N) logit of q(z_pres^i = 1 | x, z^{<i})
    z_pres: torch.Tensor  # (B, N) 0/1 when sampled; all 1 under "all"; in (0, 1) when relaxed
    # (B, N) log p(z^i) - log q(z^i | x, z^{<i}) of step i's latents other than z_pres (a one-sample
    # estimate, or the negative KL where that is closed form); it counts where z_pres^i = 1
    log_ratio: torch.Tensor
    # (B,) the same for latents of the whole image (inverse graphics' camera); 0 where a model has none
    scene_log_ratio: torch.Tensor

    @property
    def steps_taken(self) -> torch.Tensor:
        """(B, N): 1 where step i was reached, i.e. every earlier z_pres was 1 (z_pres^{i-1}, which already
        carries the product of the earlier ones)."""
        return torch.cat([torch.ones_like(self.z_pres[:, :1]), self.z_pres[:, :-1]], dim=1)

    def greedy_presence(self) -> torch.Tensor:
        """(B, N): the presence inference would report, the run of leading steps with probability > 0.5."""
        return torch.cumprod((self.presence_logits > 0).float(), dim=1)

    def where(self, chosen: torch.Tensor, other: Trace) -> Trace:
        """A trace of the same images that holds, image by image, `other`'s record where chosen (B,) is true and
        this one's elsewhere."""
        def pick(mine, theirs):
            if mine is None:
                return None
            return torch.where(chosen.view(-1, *[1] * (mine.dim() - 1)), theirs, mine)

        return dataclasses.replace(self, **{field.name: pick(getattr(self, field.name), getattr(other, field.name))
                                            for field in dataclasses.fields(self)})


@dataclass(kw_only=True)
class SceneSample:
    """B scenes drawn from a model's generative model p(x, z): its latents from their priors, then x."""

    images: torch.Tensor  # (B, C, H, W) x ~ p(x | z)
    canvas: torch.Tensor  # (B, C, H, W) the likelihood's mean: what the latents draw
    z_pres: torch.Tensor  # (B, N) 0/1 of AIR's steps or of the grid's cells
    z_where: torch.Tensor  # (B, N, 3) each window as AIR's (s, x, y)
    z_what: torch.Tensor  # (B, N, C_what)
    background: torch.Tensor | None = None  # (B, C, H, W) where the model has a background


@dataclass(kw_only=True)
class Description:
    """What test-time inference (`describe`) says of B images, by AIR's N steps or the grid's N cells."""

    present: torch.Tensor  # (B, N) z_pres, 0 or 1
    presence: torch.Tensor  # (B, N) the presence probabilities (AIR: 0 for steps not reached)
    where: torch.Tensor  # (B, N, 3) z_where, NaN where absent
    what: torch.Tensor  # (B, N, C_what), NaN where absent

    @classmethod
    def joined(cls, parts: list[Description]) -> Description:
        """The descriptions of consecutive chunks of a batch as one."""
        return cls(**{field.name: torch.cat([getattr(part, field.name) for part in parts])
                      for field in dataclasses.fields(cls)})

    def cpu(self) -> Description:
        return Description(**{field.name: getattr(self, field.name).cpu() for field in dataclasses.fields(self)})


def stack_steps(steps: list) -> dict[str, torch.Tensor]:
    """A list of per-step records (dataclasses of (B, ...) tensors) -> their fields stacked along dim 1,
    by name: {field: (B, N, ...)}; a field the steps leave None is left out."""
    names = [field.name for field in dataclasses.fields(steps[0]) if getattr(steps[0], field.name) is not None]
    return {name: torch.stack([getattr(step, name) for step in steps], dim=1) for name in names}
