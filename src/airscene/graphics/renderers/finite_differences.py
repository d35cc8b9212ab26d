"""A fixed renderer as an autograd node: its gradient with respect to the continuous scene parameters
comes from central finite differences, every perturbation of a batch rendered in one call, so any backend
gets it for free."""

from __future__ import annotations

import torch

from airscene.graphics.scenes import SceneParameters


class FiniteDifferenceRender(torch.autograd.Function):
    """Backward renders every perturbation of the batch (plus and minus one step of each present object's
    x, y and, for shapes that show it, yaw; and of the camera) in one batched call, and contracts each
    central difference with the incoming gradient. `renderer` supplies `render`, `steps` (x, y, yaw) and
    `camera_step`, in the parameters' own units, and `rotates` per identity."""

    @staticmethod
    def forward(ctx, pose, camera, renderer, identity, present, yaw_gradient):
        scenes = SceneParameters(identity=identity, present=present, pose=pose.detach(), camera=camera.detach())
        ctx.renderer, ctx.scenes, ctx.yaw_gradient = renderer, scenes, yaw_gradient
        return renderer.render(scenes)

    @staticmethod
    def backward(ctx, grad_images):  # grad_images: (B, 3, H, W)
        renderer, scenes = ctx.renderer, ctx.scenes
        batch, slots = scenes.identity.shape
        device = grad_images.device
        want_pose, want_camera = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        perturbed = torch.zeros(batch, slots, 3, dtype=torch.bool, device=device)
        if want_pose:
            perturbed = scenes.present.unsqueeze(-1).repeat(1, 1, 3)
            perturbed[..., 2] &= renderer.rotates.to(device)[scenes.identity] & ctx.yaw_gradient
        scene_index, slot, coordinate = perturbed.nonzero(as_tuple=True)  # P pose perturbations
        cameras = torch.arange(batch, device=device) if want_camera else torch.zeros(0, dtype=torch.long, device=device)
        pose_steps = renderer.steps.to(device)[coordinate]  # (P,)
        scene_indices = torch.cat([scene_index, cameras])
        shifted = scenes[torch.cat([scene_indices, scene_indices])]
        count = len(scene_indices)
        for sign, rows in ((1.0, torch.arange(count, device=device)), (-1.0, torch.arange(count, 2 * count, device=device))):
            shifted.pose[rows[:len(scene_index)], slot, coordinate] += sign * pose_steps
            shifted.camera[rows[len(scene_index):], 0] += sign * renderer.camera_step
        images = renderer.render(shifted) if count else grad_images.new_zeros(0, *grad_images.shape[1:])
        steps = torch.cat([pose_steps, torch.full((len(cameras),), renderer.camera_step, device=device)])
        differences = (images[:count] - images[count:]) / (2 * steps.view(-1, 1, 1, 1))  # (P + C, 3, H, W)
        directional = (differences * grad_images[scene_indices]).sum((1, 2, 3))  # (P + C,)
        grad_pose = grad_camera = None
        if want_pose:
            grad_pose = grad_images.new_zeros(batch, slots, 3).index_put_((scene_index, slot, coordinate),
                                                                         directional[:len(scene_index)])
        if want_camera:
            grad_camera = directional[len(scene_index):].view(batch, 1)
        return grad_pose, grad_camera, None, None, None, None
