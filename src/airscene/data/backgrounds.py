"""Backgrounds for composed scenes: crops of the photographs and textures that ship with scikit-image, or
smooth gradients with noise. Training and test scenes draw from disjoint photographs, so a model is
scored on backgrounds it never saw."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from airscene.errors import AirsceneError
from airscene.images import rescaled

KINDS = ("none", "photos", "gradients")
TRAIN_PHOTOS = ("brick.png", "grass.png", "camera.png", "astronaut.png", "coffee.png", "chelsea.png")
TEST_PHOTOS = ("gravel.png", "rocket.jpg", "moon.png")
PHOTO_SCALES = (0.2, 0.3, 0.45)  # each photograph is cropped at these scales, so crops show texture and edges


def photographs(names: tuple[str, ...]) -> list[np.ndarray]:
    """scikit-image's sample images, as (h, w, 3) floats in [0, 1], each at PHOTO_SCALES."""
    try:
        import skimage
    except ImportError:
        raise AirsceneError("photographic backgrounds come from scikit-image's sample images: "
                            "pip install scikit-image") from None
    directory = Path(skimage.__file__).parent / "data"
    scaled = []
    for name in names:
        with Image.open(directory / name) as image:
            image = image.convert("RGB")
            for scale in PHOTO_SCALES:
                size = (max(64, round(image.width * scale)), max(64, round(image.height * scale)))
                scaled.append(np.asarray(image.resize(size, Image.BILINEAR), np.float32) / 255)
    return scaled


@dataclass(kw_only=True)
class Backgrounds:
    """Where a set's backgrounds come from: "photos" (crops, flipped at random) or "gradients", at most
    `level` bright, so that objects drawn in white stay the brightest thing in a scene."""

    kind: str
    level: float
    photos: list[np.ndarray]

    def draw(self, size: int, channels: int, rng: np.random.Generator) -> np.ndarray:
        """One (size, size, channels) float background in [0, level]."""
        if self.kind == "gradients":
            background = _gradient(size, channels, rng)
        else:
            photo = self.photos[rng.integers(len(self.photos))]
            if min(photo.shape[:2]) < size:  # a large canvas: the photograph enlarged to hold it
                enlarged = rescaled(torch.from_numpy(photo).permute(2, 0, 1)[None], (size + 0.5) / min(photo.shape[:2]))
                photo = enlarged[0].permute(1, 2, 0).clamp(0, 1).numpy()
            y, x = rng.integers(0, photo.shape[0] - size + 1), rng.integers(0, photo.shape[1] - size + 1)
            background = photo[y:y + size, x:x + size]
            background = background[:, ::-1] if rng.random() < 0.5 else background
            background = background.mean(-1, keepdims=True) if channels == 1 else background
        return background * self.level


def _gradient(size: int, channels: int, rng: np.random.Generator) -> np.ndarray:
    """A linear ramp in a random direction between two random shades, a smooth random wave on top (a 4 x 4
    grid upsampled) and a little pixel noise, each channel its own."""
    ramp = np.linspace(0, 1, size, dtype=np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    along = np.cos(angle) * ramp[None, :] + np.sin(angle) * ramp[:, None]  # (size, size)
    along = (along - along.min()) / max(float(np.ptp(along)), 1e-6)
    start, end = rng.uniform(0, 1, (2, channels)).astype(np.float32)
    coarse = rng.uniform(-0.15, 0.15, (4, 4, channels)).astype(np.float32)
    wave = np.stack([np.asarray(Image.fromarray(coarse[..., c]).resize((size, size), Image.BICUBIC)) for c in range(channels)], -1)
    noise = rng.normal(0, 0.03, (size, size, channels)).astype(np.float32)
    return np.clip(start + (end - start) * along[..., None] + wave + noise, 0, 1)


def background_pools(kind: str, level: float = 0.5) -> tuple[Backgrounds | None, Backgrounds | None]:
    """The training and test sets' backgrounds (None for "none"): photographs disjoint between them."""
    if kind not in KINDS:
        raise AirsceneError(f"--background {kind!r} is unknown: use {', '.join(KINDS)}")
    if not 0 < level <= 1:
        raise AirsceneError(f"--background-level {level} is invalid: give the brightest background value, in (0, 1]")
    if kind == "none":
        return None, None
    photos = kind == "photos"
    return (Backgrounds(kind=kind, level=level, photos=photographs(TRAIN_PHOTOS) if photos else []),
            Backgrounds(kind=kind, level=level, photos=photographs(TEST_PHOTOS) if photos else []))
