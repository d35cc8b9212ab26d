"""The public inference API: images in, objects out.

    model = airscene.load("RUN/checkpoint.pt")
    scenes = model.infer(images)      # (B, H, W) or (B, C, H, W); uint8, or float in [0, 1]
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
from airscene.model import AIR, window_boxes
from airscene.model.priors import count_prior_at


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


def prepare_images(images, image_size: int, channels: int) -> torch.Tensor:
    """Validate user images and return float (B, C, H, W) in [0, 1]. Images of another size are refused
    rather than resized: AIR's scale prior is in canvas units, so a resized scene is a different scene."""
    array = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if array.size == 0:
        raise AirsceneError("no images given: pass a non-empty array of shape (B, H, W) or (B, C, H, W)")
    if array.ndim == 2:
        raise AirsceneError(f"images have shape {array.shape}, a single image: add a batch axis, e.g. images[None]")
    if array.ndim not in (3, 4):
        raise AirsceneError(f"images have shape {array.shape}: pass (B, H, W) or (B, C, H, W)")
    if array.ndim == 3:
        array = array[:, None]
    if array.shape[-2:] != (image_size, image_size):
        raise AirsceneError(f"images are {array.shape[-2]}x{array.shape[-1]} but the model was trained on "
                            f"{image_size}x{image_size}: resize or crop them to {image_size}x{image_size}")
    if array.shape[1] != channels:
        if channels == 1 and array.shape[1] == 3:
            array = array.mean(axis=1, keepdims=True)  # colour to grey, as the model saw grey
        else:
            raise AirsceneError(f"images have {array.shape[1]} channels, the model expects {channels}")
    if array.dtype == np.uint8:
        return torch.from_numpy(array.astype(np.float32) / 255)
    if array.dtype.kind not in "fiu" or array.dtype == np.bool_:
        raise AirsceneError(f"images have dtype {array.dtype}: pass uint8 (0-255) or float in [0, 1]")
    array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise AirsceneError("images contain NaN or infinite pixels: replace them before inference")
    if array.min() < 0 or array.max() > 1:
        raise AirsceneError(f"float images must lie in [0, 1], these span [{array.min():.3g}, {array.max():.3g}]: "
                            "divide uint8-range values by 255")
    return torch.from_numpy(array)


class TrainedModel:
    """A trained AIR with its config, rebuilt from a checkpoint alone."""

    def __init__(self, model: AIR, config: Config, step: int = 0):
        self.model = model.eval()
        self.config = config
        self.step = step

    @torch.inference_mode()
    def infer(self, images, batch_size: int = 1000) -> Scenes:
        """Counts, boxes, presence and codes for each image, batched."""
        if batch_size < 1:
            raise AirsceneError(f"batch_size is {batch_size}: use >= 1")
        c = self.config.model
        tensor = prepare_images(images, c.image_size, c.channels)
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


def load(path: str | Path) -> TrainedModel:
    """Rebuild a trained model from a checkpoint (or a run directory holding checkpoint.pt)."""
    state, config = load_checkpoint(path)
    model = AIR(config.model)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as error:
        first = str(error).strip().splitlines()[-1].strip()
        raise AirsceneError(f"checkpoint {path} does not match its own config ({first}): it is corrupt "
                            "or from an incompatible airscene version; retrain") from None
    step = state.get("step", 0)
    model.count_prior = count_prior_at(step, config.train)
    return TrainedModel(model, config, step)
