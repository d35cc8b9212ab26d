"""The interface every renderer implements: scene parameters in, float images out, batched."""

from __future__ import annotations

import math

import torch

from airscene.errors import AirsceneError
from airscene.graphics.renderers.finite_differences import FiniteDifferenceRender
from airscene.graphics.scenes import SHAPES, SceneParameters


class Renderer:
    """`shapes` names the identities that scene.identity indexes; `pixel` is the table units a pixel spans at the
    table's centre; the finite-difference steps are in the parameters' own units (table units, radians), a
    position's a quarter of a pixel. Renders come back on the scenes' device, wherever the backend itself runs."""

    def __init__(self, shapes: tuple[str, ...], image_size: int, pixel: float, yaw_step: float, camera_step: float):
        unknown = [shape for shape in shapes if shape not in SHAPES]
        if unknown:
            raise AirsceneError(f"shapes {', '.join(unknown)} are unknown: use some of {', '.join(SHAPES)}")
        self.shapes, self.image_size, self.pixel = tuple(shapes), image_size, pixel
        self.steps = torch.tensor([pixel / 4, pixel / 4, yaw_step])
        self.camera_step = camera_step
        # Yaw changes nothing for rotationally symmetric shapes: their yaw needs no extra renders.
        self.rotates = torch.tensor([math.isfinite(SHAPES[shape].symmetry) for shape in shapes])

    def render(self, scenes: SceneParameters) -> torch.Tensor:
        """(B, 3, H, W) floats in [0, 1]; no gradient."""
        raise NotImplementedError

    def render_differentiable(self, scenes: SceneParameters, yaw_gradient: bool = True) -> torch.Tensor:
        """Like `render`, with gradients for scenes.pose and scenes.camera by central differences
        (yaw_gradient=False: none for the yaw, which saves its renders)."""
        return FiniteDifferenceRender.apply(scenes.pose, scenes.camera, self, scenes.identity, scenes.present,
                                            yaw_gradient)

    def locate(self, identity: torch.Tensor, position: torch.Tensor, camera: torch.Tensor) -> torch.Tensor:
        """(B,), (B, 2), (B, 1) -> (B, 2): where an object's centre appears in the image, in grid_sample's
        normalised coordinates (x right, y down, [-1, 1] across the image)."""
        raise NotImplementedError

    def unproject(self, point: torch.Tensor, camera: torch.Tensor, height: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 2), (B, 1) -> (B, 2): the inverse of `locate`, the table position of an object whose centre appears
        at `point` (grid_sample's coordinates), for centres `height` (B,) above the table (default: the shapes'
        mean centre height, for an object not yet named)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the backend's resources (contexts, worker processes)."""

    def __enter__(self) -> "Renderer":
        return self

    def __exit__(self, *exception) -> None:
        self.close()
