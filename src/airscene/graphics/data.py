"""Training and test images of an inverse-graphics experiment: random scenes (fixed seeds) rendered once
and kept in the run directory, so a resumed run and its evaluation see the same images."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from airscene.data.files import write_arrays
from airscene.errors import AirsceneError
from airscene.graphics.config import GraphicsConfig
from airscene.graphics.render import Renderer
from airscene.graphics.scenes import SceneParameters, sample_scenes

DATA_FILE = "scenes.npz"
TRAIN_SEED, TEST_SEED = 1, 2
RENDER_CHUNK = 1000


@dataclass
class SceneData:
    train_images: np.ndarray  # (n, 3, H, W) uint8
    train_scenes: SceneParameters  # the truth; training never sees it unless supervised
    test_images: np.ndarray
    test_scenes: SceneParameters


def images_to_float(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).float().div_(255)


def render_uint8(renderer: Renderer, scenes: SceneParameters) -> np.ndarray:
    parts = [renderer.render(scenes[start:start + RENDER_CHUNK]) for start in range(0, len(scenes), RENDER_CHUNK)]
    return torch.cat(parts).mul_(255).round_().to(torch.uint8).numpy()


def data_settings(config: GraphicsConfig) -> dict:
    return {"experiment": config.experiment, "renderer": config.renderer, "repeats": config.repeats,
            "image_size": config.image_size, "train": config.training_images, "test": config.test_images,
            "seeds": [TRAIN_SEED, TEST_SEED]}


def scene_data(config: GraphicsConfig, renderer: Renderer, directory: Path) -> SceneData:
    """Load DIRECTORY/scenes.npz if it was made with these settings, else render and save it."""
    path, settings = directory / DATA_FILE, data_settings(config)
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as archive:
                if json.loads(str(archive["settings"])) == settings:
                    return SceneData(archive["train_images"], _scenes(archive, "train"),
                                     archive["test_images"], _scenes(archive, "test"))
        except (OSError, ValueError, KeyError):
            pass  # a damaged file is simply rendered again
    arrays = {"settings": np.array(json.dumps(settings))}
    data = []
    for split, count, seed in (("train", config.training_images, TRAIN_SEED), ("test", config.test_images, TEST_SEED)):
        scenes = sample_scenes(count, len(config.shapes), config.max_objects, config.counts, config.repeats,
                               config.move_camera, seed)
        images = render_uint8(renderer, scenes)
        arrays.update({f"{split}_images": images, **{f"{split}_{k}": v for k, v in scenes.to_arrays().items()}})
        data += [images, scenes]
    try:
        write_arrays(path, arrays)
    except OSError as error:
        raise AirsceneError(f"cannot write {path} ({error.strerror}): free disk space or choose another --out") from None
    return SceneData(*data)


def _scenes(archive, split: str) -> SceneParameters:
    return SceneParameters.from_arrays({name: archive[f"{split}_{name}"] for name in ("identity", "present", "pose", "camera")})
