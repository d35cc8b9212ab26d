"""The public inference API: images in, objects out.

    model = airscene.load("RUN/checkpoint.pt")
    scenes = model.infer(images)      # (B, H, W), (B, C, H, W) or (B, H, W, C); uint8, uint16, or float in [0, 1]
    scenes.counts, scenes.boxes, scenes.presence, scenes.what
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from airscene.checkpoint import load_checkpoint
from airscene.config import Config
from airscene.errors import AirsceneError
from airscene.images import to_model_layout
from airscene.model import AIR, window_boxes


@dataclass
class Scenes:
    """Per image: the count and, per inference step, the object's box, presence and codes."""

    counts: np.ndarray  # (B,) int
    boxes: np.ndarray  # (B, N, 4) float: pixel x0, y0, x1, y1 of the attention window; NaN where no object
    presence: np.ndarray  # (B, N) float: presence probability of each step (0 for steps not reached)
    what: np.ndarray  # (B, N, C) float: appearance codes z_what; NaN where no object
    where: np.ndarray  # (B, N, 3) float: z_where = (scale, x, y); NaN where no object

    def to_records(self) -> list[dict]:
        """JSON-ready: one dict per image with its objects."""
        records = []
        for index, count in enumerate(self.counts):
            objects = [{"step": step + 1, "box": [round(float(v), 2) for v in self.boxes[index, step]],
                        "presence": round(float(self.presence[index, step]), 4),
                        "where": [round(float(v), 4) for v in self.where[index, step]],
                        "what": [round(float(v), 4) for v in self.what[index, step]]}
                       for step in range(int(count))]
            records.append({"count": int(count), "objects": objects})
        return records


class TrainedModel:
    """A trained AIR with its config, rebuilt from a checkpoint alone."""

    def __init__(self, model: AIR, config: Config, step: int = 0):
        self.model = model.eval()
        self.config = config
        self.step = step

    def prepare(self, images) -> torch.Tensor:
        """Images in any supported form (airscene.images.to_model_layout) as this model's input."""
        return to_model_layout(images, self.config.model.channels, self.config.model.image_size)

    @torch.inference_mode()
    def infer(self, images, batch_size: int = 1000) -> Scenes:
        """Counts, boxes, presence and codes for each image, batched."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise AirsceneError(f"batch_size is {batch_size!r}: use a whole number >= 1")
        c = self.config.model
        tensor = self.prepare(images)
        present, presence, wheres, whats = (torch.cat(parts) for parts in
                                            zip(*(self.model.describe(chunk) for chunk in tensor.split(batch_size))))
        return Scenes(counts=present.sum(1).long().numpy(),
                      boxes=window_boxes(wheres, c.image_size, c.min_scale).numpy(),
                      presence=presence.numpy(), what=whats.numpy(), where=wheres.numpy())

    @torch.inference_mode()
    def reconstruct(self, images) -> tuple[np.ndarray, Scenes]:
        """(B, C, H, W) reconstructions (the sum of the present objects' renderings) and the scenes."""
        scenes = self.infer(images)
        where = torch.from_numpy(np.nan_to_num(scenes.where))
        what = torch.from_numpy(np.nan_to_num(scenes.what))
        present = torch.from_numpy(~np.isnan(scenes.where[..., 0])).float()  # (B, N)
        objects = torch.stack([self.model.render_object(what[:, i], where[:, i]) for i in range(where.shape[1])], 1)
        return (objects * present[:, :, None, None, None]).sum(1).clamp(0, 1).numpy(), scenes


def model_from_checkpoint(state: dict, config: Config, path: str | Path) -> AIR:
    """The AIR of a checkpoint's state and config."""
    model = AIR(config.model)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as error:
        first = str(error).strip().splitlines()[-1].strip()
        raise AirsceneError(f"checkpoint {path} does not match its own config ({first}): it is corrupt "
                            "or from an incompatible airscene version; retrain") from None
    return model


def load(path: str | Path) -> TrainedModel:
    """Rebuild a trained model from a checkpoint (or a run directory holding checkpoint.pt)."""
    state, config = load_checkpoint(path)
    return TrainedModel(model_from_checkpoint(state, config, path), config, state["step"])
