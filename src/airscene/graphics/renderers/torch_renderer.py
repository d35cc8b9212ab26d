"""A batched pure-PyTorch renderer, for tests and quick trials (the results use MuJoCo)."""

from __future__ import annotations

import torch

from airscene.graphics.renderers.base import Renderer
from airscene.graphics.scenes import SHAPES, TABLE_COLOUR, TABLE_HALF_SIZE, SceneParameters


class TorchRenderer(Renderer):
    """A batched pure-PyTorch renderer: the table seen from straight above, orthographically, each shape
    drawn as its footprint with soft (half-pixel sigmoid) edges and rounded shapes shaded toward their
    rim. The camera's azimuth turns the view about the table's centre. Smooth in every continuous
    parameter, so its autograd gradient is a reference for the finite-difference one, and fast enough
    for tests; the results use MuJoCo."""

    def __init__(self, shapes: tuple[str, ...], image_size: int = 32, view: float = 0.8, autograd: bool = False):
        pixel = 2 * view / image_size
        super().__init__(shapes, image_size, pixel=pixel, yaw_step=0.05, camera_step=0.02)
        self.autograd, self.softness, self.view = autograd, pixel / 2, view
        centres = (torch.arange(image_size) + 0.5) * pixel - view
        rows, columns = torch.meshgrid(-centres, centres, indexing="ij")  # image rows run along -y
        self.grid = torch.stack([columns, rows], -1).view(-1, 2)  # (P, 2) world x, y at azimuth 0

    def render(self, scenes: SceneParameters) -> torch.Tensor:
        with torch.no_grad():
            return self.draw(scenes)

    def render_differentiable(self, scenes: SceneParameters, yaw_gradient: bool = True) -> torch.Tensor:
        return self.draw(scenes) if self.autograd else super().render_differentiable(scenes, yaw_gradient)

    def locate(self, identity: torch.Tensor, position: torch.Tensor, camera: torch.Tensor) -> torch.Tensor:
        seen = rotate(position.unsqueeze(1), -camera)[:, 0]  # (B, 2): the view turns with the camera
        return torch.stack([seen[:, 0], -seen[:, 1]], 1) / self.view  # image rows run along -y

    def unproject(self, point: torch.Tensor, camera: torch.Tensor, height: torch.Tensor | None = None) -> torch.Tensor:
        """Seen from straight above: the same at every height."""
        seen = torch.stack([point[:, 0], -point[:, 1]], 1) * self.view
        return rotate(seen.unsqueeze(1), camera)[:, 0]

    def draw(self, scenes: SceneParameters) -> torch.Tensor:
        """The render, differentiable by autograd in every continuous parameter, on the scenes' device."""
        batch, slots = scenes.identity.shape
        device = scenes.pose.device
        world = rotate(self.grid.to(device).unsqueeze(0), scenes.camera)  # (B, P, 2)
        table, _ = footprint("box", (TABLE_HALF_SIZE, TABLE_HALF_SIZE), world)
        table_colour = torch.tensor(TABLE_COLOUR, device=device)
        image = torch.sigmoid(-table / self.softness).unsqueeze(-1) * table_colour  # (B, P, 3), black floor
        for slot in range(slots):
            pose = scenes.pose[:, slot]  # (B, 3)
            local = rotate(world - pose[:, None, :2], -pose[:, 2:])  # (B, P, 2) in the object's frame
            for index, shape in enumerate(self.shapes):
                chosen = ((scenes.identity[:, slot] == index) & scenes.present[:, slot]).float()[:, None, None]
                for kind, size, offset, colour in SHAPES[shape].geoms:
                    distance, shade = footprint(kind, size, local - torch.tensor(offset[:2], device=device))
                    alpha = torch.sigmoid(-distance / self.softness).unsqueeze(-1) * chosen  # (B, P, 1)
                    image = image * (1 - alpha) + alpha * torch.tensor(colour, device=device) * shade.unsqueeze(-1)
        return image.view(batch, self.image_size, self.image_size, 3).permute(0, 3, 1, 2)


def rotate(points: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rotate (B, P, 2) points counter-clockwise by (B, 1) angles."""
    cos, sin = angle.cos().unsqueeze(-1), angle.sin().unsqueeze(-1)  # (B, 1, 1)
    x, y = points[..., :1], points[..., 1:]
    return torch.cat([cos * x - sin * y, sin * x + cos * y], -1)


def footprint(kind: str, size: tuple[float, ...], local: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Signed distance (B, P) to a geom's outline seen from above, and its shading (B, P)."""
    if kind == "box":
        excess = local.abs() - torch.tensor(size[:2], device=local.device)
        outside = excess.clamp(min=0).pow(2).sum(-1).add(1e-12).sqrt()
        return outside + excess.max(-1).values.clamp(max=0), torch.ones_like(outside)
    radii = torch.tensor(size[:2] if kind == "ellipsoid" else (size[0], size[0]), device=local.device)
    radius = (local / radii).pow(2).sum(-1).add(1e-12).sqrt()  # 1 on the outline
    shade = 1 - 0.4 * radius.clamp(max=1).pow(2) if kind in ("sphere", "ellipsoid") else torch.ones_like(radius)
    return (radius - 1) * radii.min(), shade


