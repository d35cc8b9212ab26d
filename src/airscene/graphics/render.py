"""Renderers: scene parameters in, float images out, batched. AIR's generative model in the
inverse-graphics setting is a fixed renderer, so its gradient with respect to the continuous scene
parameters comes from finite differences (`render_differentiable`); any backend gets it for free."""

from __future__ import annotations

import math

import torch

from airscene.errors import AirsceneError
from airscene.graphics.scenes import SHAPES, TABLE_COLOUR, TABLE_HALF_SIZE, SceneParameters


class Renderer:
    """The interface every backend implements. `shapes` names the identities that scene.identity
    indexes; the finite-difference steps are in the parameters' own units (table units, radians)."""

    def __init__(self, shapes: tuple[str, ...], image_size: int, position_step: float, yaw_step: float,
                 camera_step: float):
        unknown = [shape for shape in shapes if shape not in SHAPES]
        if unknown:
            raise AirsceneError(f"shapes {', '.join(unknown)} are unknown: use some of {', '.join(SHAPES)}")
        self.shapes, self.image_size = tuple(shapes), image_size
        self.steps = torch.tensor([position_step, position_step, yaw_step])
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

    def close(self) -> None:
        """Release the backend's resources (contexts, worker processes)."""

    def __enter__(self) -> "Renderer":
        return self

    def __exit__(self, *exception) -> None:
        self.close()


class FiniteDifferenceRender(torch.autograd.Function):
    """The renderer as an autograd node. Backward renders every perturbation of the batch (plus and
    minus one step of each present object's x, y and, for shapes that show it, yaw; and of the camera)
    in one batched call, and contracts each central difference with the incoming gradient."""

    @staticmethod
    def forward(ctx, pose, camera, renderer: Renderer, identity, present, yaw_gradient):
        scenes = SceneParameters(identity, present, pose.detach(), camera.detach())
        ctx.renderer, ctx.scenes, ctx.yaw_gradient = renderer, scenes, yaw_gradient
        return renderer.render(scenes)

    @staticmethod
    def backward(ctx, grad_images):  # grad_images: (B, 3, H, W)
        renderer, scenes = ctx.renderer, ctx.scenes
        batch, slots = scenes.identity.shape
        want_pose, want_camera = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        perturbed = torch.zeros(batch, slots, 3, dtype=torch.bool)
        if want_pose:
            perturbed = scenes.present.unsqueeze(-1).repeat(1, 1, 3)
            perturbed[..., 2] &= renderer.rotates[scenes.identity] & ctx.yaw_gradient
        scene_index, slot, coordinate = perturbed.nonzero(as_tuple=True)  # P pose perturbations
        cameras = torch.arange(batch) if want_camera else torch.zeros(0, dtype=torch.long)
        pose_steps = renderer.steps[coordinate]  # (P,)
        scene_indices = torch.cat([scene_index, cameras])
        shifted = scenes[torch.cat([scene_indices, scene_indices])]
        count = len(scene_indices)
        for sign, rows in ((1.0, torch.arange(count)), (-1.0, torch.arange(count, 2 * count))):
            shifted.pose[rows[:len(scene_index)], slot, coordinate] += sign * pose_steps
            shifted.camera[rows[len(scene_index):], 0] += sign * renderer.camera_step
        images = renderer.render(shifted) if count else grad_images.new_zeros(0, *grad_images.shape[1:])
        steps = torch.cat([pose_steps, torch.full((len(cameras),), renderer.camera_step)])
        differences = (images[:count] - images[count:]) / (2 * steps.view(-1, 1, 1, 1))  # (P + C, 3, H, W)
        directional = (differences * grad_images[scene_indices]).sum((1, 2, 3))  # (P + C,)
        grad_pose = grad_camera = None
        if want_pose:
            grad_pose = torch.zeros(batch, slots, 3).index_put_((scene_index, slot, coordinate),
                                                                directional[:len(scene_index)])
        if want_camera:
            grad_camera = directional[len(scene_index):].view(batch, 1)
        return grad_pose, grad_camera, None, None, None, None


class TorchRenderer(Renderer):
    """A batched pure-PyTorch renderer: the table seen from straight above, orthographically, each shape
    drawn as its footprint with soft (half-pixel sigmoid) edges and rounded shapes shaded toward their
    rim. The camera's azimuth turns the view about the table's centre. Smooth in every continuous
    parameter, so its autograd gradient is a reference for the finite-difference one, and fast enough
    for tests; the results use MuJoCo."""

    def __init__(self, shapes: tuple[str, ...], image_size: int = 32, view: float = 0.8, autograd: bool = False):
        pixel = 2 * view / image_size
        super().__init__(shapes, image_size, position_step=pixel / 4, yaw_step=0.05, camera_step=0.02)
        self.autograd, self.softness, self.view = autograd, pixel / 2, view
        centres = (torch.arange(image_size) + 0.5) * pixel - view
        rows, columns = torch.meshgrid(-centres, centres, indexing="ij")  # image rows run along -y
        self.grid = torch.stack([columns, rows], -1).view(-1, 2)  # (P, 2) world x, y at azimuth 0

    def render(self, scenes: SceneParameters) -> torch.Tensor:
        with torch.no_grad():
            return self._draw(scenes)

    def render_differentiable(self, scenes: SceneParameters, yaw_gradient: bool = True) -> torch.Tensor:
        return self._draw(scenes) if self.autograd else super().render_differentiable(scenes, yaw_gradient)

    def locate(self, identity: torch.Tensor, position: torch.Tensor, camera: torch.Tensor) -> torch.Tensor:
        seen = rotate(position.unsqueeze(1), -camera)[:, 0]  # (B, 2): the view turns with the camera
        return torch.stack([seen[:, 0], -seen[:, 1]], 1) / self.view  # image rows run along -y

    def _draw(self, scenes: SceneParameters) -> torch.Tensor:
        batch, slots = scenes.identity.shape
        world = rotate(self.grid.unsqueeze(0), scenes.camera)  # (B, P, 2)
        table, _ = footprint("box", (TABLE_HALF_SIZE, TABLE_HALF_SIZE), world)
        image = torch.sigmoid(-table / self.softness).unsqueeze(-1) * torch.tensor(TABLE_COLOUR)  # (B, P, 3), black floor
        for slot in range(slots):
            pose = scenes.pose[:, slot]  # (B, 3)
            local = rotate(world - pose[:, None, :2], -pose[:, 2:])  # (B, P, 2) in the object's frame
            for index, shape in enumerate(self.shapes):
                chosen = ((scenes.identity[:, slot] == index) & scenes.present[:, slot]).float()[:, None, None]
                for kind, size, offset, colour in SHAPES[shape].geoms:
                    distance, shade = footprint(kind, size, local - torch.tensor(offset[:2]))
                    alpha = torch.sigmoid(-distance / self.softness).unsqueeze(-1) * chosen  # (B, P, 1)
                    image = image * (1 - alpha) + alpha * torch.tensor(colour) * shade.unsqueeze(-1)
        return image.view(batch, self.image_size, self.image_size, 3).permute(0, 3, 1, 2)


def rotate(points: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rotate (B, P, 2) points counter-clockwise by (B, 1) angles."""
    cos, sin = angle.cos().unsqueeze(-1), angle.sin().unsqueeze(-1)  # (B, 1, 1)
    x, y = points[..., :1], points[..., 1:]
    return torch.cat([cos * x - sin * y, sin * x + cos * y], -1)


def footprint(kind: str, size: tuple[float, ...], local: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Signed distance (B, P) to a geom's outline seen from above, and its shading (B, P)."""
    if kind == "box":
        excess = local.abs() - torch.tensor(size[:2])
        outside = excess.clamp(min=0).pow(2).sum(-1).add(1e-12).sqrt()
        return outside + excess.max(-1).values.clamp(max=0), torch.ones_like(outside)
    radii = torch.tensor(size[:2] if kind == "ellipsoid" else (size[0], size[0]))
    radius = (local / radii).pow(2).sum(-1).add(1e-12).sqrt()  # 1 on the outline
    shade = 1 - 0.4 * radius.clamp(max=1).pow(2) if kind in ("sphere", "ellipsoid") else torch.ones_like(radius)
    return (radius - 1) * radii.min(), shade


def make_renderer(name: str, shapes: tuple[str, ...], slots: int, image_size: int, workers: int = 0) -> Renderer:
    """A backend by name: "mujoco" (the results' renderer) or "torch" (fast, for tests and quick trials)."""
    if name == "mujoco":
        from airscene.graphics.mujoco_renderer import MujocoRenderer
        return MujocoRenderer(shapes, slots, image_size, workers=workers)
    if name == "torch":
        return TorchRenderer(shapes, image_size)
    raise AirsceneError(f"renderer '{name}' is unknown: use mujoco or torch")
