"""Renderers: the fixed generative model of inverse graphics. `Renderer` (base.py) is the interface; any
backend gets finite-difference gradients (finite_differences.py); `TorchRenderer` is a fast top-down
PyTorch renderer for tests and trials, `MujocoRenderer` the results' (MuJoCo, headless)."""

from __future__ import annotations

from airscene.errors import AirsceneError
from airscene.graphics.renderers.base import Renderer
from airscene.graphics.renderers.mujoco_renderer import MujocoRenderer
from airscene.graphics.renderers.torch_renderer import TorchRenderer


def make_renderer(name: str, shapes: tuple[str, ...], slots: int, image_size: int, workers: int = 0) -> Renderer:
    """A backend by name: "mujoco" (the results' renderer) or "torch" (fast, for tests and quick trials)."""
    if name == "mujoco":
        return MujocoRenderer(shapes, slots, image_size, workers=workers)
    if name == "torch":
        return TorchRenderer(shapes, image_size)
    raise AirsceneError(f"renderer '{name}' is unknown: use mujoco or torch")


__all__ = ["MujocoRenderer", "Renderer", "TorchRenderer", "make_renderer"]
