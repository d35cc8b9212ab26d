"""Training and test images of an inverse-graphics experiment: random scenes (fixed seeds) rendered once
and kept in the run directory, so a resumed run and its evaluation see the same images."""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from airscene.data.files import write_arrays
from airscene.graphics.config import GraphicsConfig
from airscene.graphics.renderers import Renderer
from airscene.graphics.scenes import SceneParameters, sample_scenes

DATA_FILE = "scenes.npz"
TRAIN_SEED, TEST_SEED = 1, 2
RENDER_CHUNK = 1000


@dataclass(kw_only=True)
class SceneData:
    train_images: np.ndarray  # (n, 3, H, W) uint8
    train_scenes: SceneParameters  # the truth; training never sees it unless supervised
    test_images: np.ndarray
    test_scenes: SceneParameters


def render_uint8(renderer: Renderer, scenes: SceneParameters) -> np.ndarray:
    parts = [renderer.render(scenes[start:start + RENDER_CHUNK]) for start in range(0, len(scenes), RENDER_CHUNK)]
    return torch.cat(parts).mul_(255).round_().to(torch.uint8).cpu().numpy()


def data_settings(config: GraphicsConfig) -> dict:
    model = config.model
    return {"experiment": model.experiment, "renderer": model.renderer, "repeats": config.repeats,
            "image_size": model.image_size, "train": config.training_images, "test": config.test_images,
            "seeds": [TRAIN_SEED, TEST_SEED]}


def scene_data(config: GraphicsConfig, renderer: Renderer, directory: Path) -> SceneData:
    """Load DIRECTORY/scenes.npz if it was made with these settings, else render and save it."""
    path, settings = directory / DATA_FILE, data_settings(config)
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as archive:
                if json.loads(archive["settings"].item()) == settings:  # .item(): files written 1-d read too
                    return SceneData(train_images=archive["train_images"], train_scenes=_scenes(archive, "train"),
                                     test_images=archive["test_images"], test_scenes=_scenes(archive, "test"))
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
            pass  # a damaged file is simply rendered again
    arrays, data = {"settings": np.array(json.dumps(settings))}, {}
    for split, count, seed in (("train", config.training_images, TRAIN_SEED), ("test", config.test_images, TEST_SEED)):
        scenes = sample_scenes(count, len(config.model.shapes), config.model.max_objects, config.model.counts,
                               config.repeats, config.model.move_camera, seed)
        data[f"{split}_images"], data[f"{split}_scenes"] = render_uint8(renderer, scenes), scenes
        arrays.update({f"{split}_images": data[f"{split}_images"],
                       **{f"{split}_{name}": value for name, value in scenes.to_arrays().items()}})
    write_arrays(path, arrays, "rendered scenes")
    return SceneData(**data)


def _scenes(archive, split: str) -> SceneParameters:
    return SceneParameters.from_arrays({name: archive[f"{split}_{name}"] for name in ("identity", "present", "pose", "camera")})
