"""Scenes for the inverse-graphics setting (the paper's Sec. 3.2): objects on a table seen by a camera.

A scene is a few object slots, each with an identity, a presence flag and a pose (x, y on the table, yaw
about the vertical axis), plus the camera's azimuth about the table's centre. Renderers turn these
parameters into images; AIR infers them back."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Shape:
    """One object identity: MuJoCo geoms (type, size, local offset, colour) standing on the table top,
    and the rotation after which it looks the same (math.inf: any rotation)."""

    name: str
    geoms: tuple[tuple[str, tuple[float, ...], tuple[float, float, float], tuple[float, float, float]], ...]
    symmetry: float


# Light colours on a dark table: every object then differs from the table more than from any other
# object. That matters for learning: where a guessed object overlaps the true one, the pixels cost
# |guess - truth|^2 rather than |guess - table|^2 + |truth - table|^2, so with these colours even a
# guess of the wrong identity is drawn toward the object it overlaps instead of pushed away from it
# (with a brown table and saturated red and blue, half the early pose gradients pointed away).
TABLE_COLOUR = (0.2, 0.2, 0.2)
# The table is a square whose edges the camera sees against a black floor: the only landmark that
# tells a turn of the camera from a turn of every object about the table's centre.
TABLE_HALF_SIZE = 0.65
RED, BLUE, GREEN, YELLOW = (0.95, 0.45, 0.4), (0.45, 0.55, 0.95), (0.45, 0.85, 0.45), (0.95, 0.9, 0.3)
SHAPES = {
    "cube": Shape("cube", (("box", (0.16, 0.16, 0.16), (0, 0, 0.16), RED),), math.pi / 2),
    "sphere": Shape("sphere", (("sphere", (0.17,), (0, 0, 0.17), BLUE),), math.inf),
    # The paper's textured cylinder: a green cylinder with a yellow stripe down one side, so its yaw shows.
    "cylinder": Shape("cylinder", (("cylinder", (0.15, 0.16), (0, 0, 0.16), GREEN),
                                   ("box", (0.03, 0.06, 0.16), (0.135, 0, 0.16), YELLOW)), 2 * math.pi),
    "plate": Shape("plate", (("cylinder", (0.24, 0.02), (0, 0, 0.02), (0.95, 0.95, 0.9)),), math.inf),
    "cup": Shape("cup", (("cylinder", (0.11, 0.13), (0, 0, 0.13), (0.95, 0.6, 0.2)),), math.inf),
    # A bowl: the upper half of a flattened ellipsoid (the lower half is hidden inside the table).
    "bowl": Shape("bowl", (("ellipsoid", (0.19, 0.19, 0.1), (0, 0, 0), (0.35, 0.75, 0.8)),), math.inf),
}
SINGLE_OBJECTS = ("cube", "sphere", "cylinder")
CROCKERY = ("plate", "cup", "bowl")
TABLE_REACH = 0.4  # objects stand within [-TABLE_REACH, TABLE_REACH]^2
CAMERA_REACH = 0.5  # the camera's azimuth offset lies within +-CAMERA_REACH radians
FIELDS = ("identity", "present", "pose", "camera")  # of SceneParameters


@dataclass(kw_only=True)
class SceneParameters:
    """A batch of B scenes with N object slots. Slots are filled from the front: present[b] is a run of
    True then False, as AIR's steps produce."""

    identity: torch.Tensor  # (B, N) long, an index into the experiment's shape list
    present: torch.Tensor  # (B, N) bool
    pose: torch.Tensor  # (B, N, 3) float: x, y, yaw
    camera: torch.Tensor  # (B, 1) float: azimuth offset in radians

    def __len__(self) -> int:
        return self.identity.shape[0]

    def __getitem__(self, index) -> "SceneParameters":
        return SceneParameters(**{name: getattr(self, name)[index] for name in FIELDS})

    @property
    def counts(self) -> torch.Tensor:  # (B,)
        return self.present.sum(1)

    def to(self, device) -> "SceneParameters":
        return SceneParameters(**{name: getattr(self, name).to(device) for name in FIELDS})

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name).cpu().numpy() for name in FIELDS}

    @classmethod
    def from_arrays(cls, arrays) -> "SceneParameters":
        return cls(**{name: torch.as_tensor(np.asarray(arrays[name])) for name in FIELDS})

    @classmethod
    def concatenate(cls, parts: list["SceneParameters"]) -> "SceneParameters":
        return cls(**{name: torch.cat([getattr(part, name) for part in parts]) for name in FIELDS})


def sample_scenes(count: int, shapes: int, slots: int, counts: tuple[int, ...], repeats: bool, move_camera: bool,
                  seed: int, spacing: float = 0.35) -> SceneParameters:
    """Random scenes: an object count from `counts`, identities (without repetition unless `repeats`),
    positions at least `spacing` apart on the table, uniform yaw, and (if `move_camera`) a random
    camera azimuth."""
    rng = np.random.default_rng(seed)
    identity = np.zeros((count, slots), np.int64)
    present = np.zeros((count, slots), bool)
    pose = np.zeros((count, slots, 3), np.float32)
    for scene in range(count):
        objects = int(rng.choice(counts))
        identity[scene, :objects] = rng.choice(shapes, objects, replace=repeats or objects > shapes)
        present[scene, :objects] = True
        placed: list[np.ndarray] = []
        while len(placed) < objects:
            position = rng.uniform(-TABLE_REACH, TABLE_REACH, 2)
            if all(np.linalg.norm(position - other) >= spacing for other in placed):
                placed.append(position)
        for slot, position in enumerate(placed):
            pose[scene, slot] = (*position, rng.uniform(0, 2 * math.pi))
    camera = rng.uniform(-CAMERA_REACH, CAMERA_REACH, (count, 1)) if move_camera else np.zeros((count, 1))
    return SceneParameters(identity=torch.from_numpy(identity), present=torch.from_numpy(present), pose=torch.from_numpy(pose),
                           camera=torch.from_numpy(camera.astype(np.float32)))
