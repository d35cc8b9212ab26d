"""Metrics of inferred scenes against the truth, and the paper's third contender: fitting each test
image's scene from scratch by gradient descent on its likelihood."""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from airscene.graphics.renderers import Renderer
from airscene.graphics.scenes import SHAPES, SceneParameters
from airscene.runs import combine


def match_objects(inferred: SceneParameters, truth: SceneParameters) -> list[tuple[int, int, int]]:
    """(scene, inferred slot, true slot) pairs: in each scene, present objects paired by least total
    distance on the table (Hungarian), as many pairs as the smaller count."""
    pairs = []
    for scene in range(len(truth)):
        mine = np.flatnonzero(inferred.present[scene].numpy())
        theirs = np.flatnonzero(truth.present[scene].numpy())
        if len(mine) and len(theirs):
            distance = torch.cdist(inferred.pose[scene, mine, :2], truth.pose[scene, theirs, :2]).numpy()
            rows, columns = linear_sum_assignment(distance)
            pairs += [(scene, int(mine[r]), int(theirs[c])) for r, c in zip(rows, columns)]
    return pairs


def rotation_error(inferred_yaw: torch.Tensor, true_yaw: torch.Tensor, symmetry: float) -> torch.Tensor:
    """|difference| modulo the shape's symmetry angle, in [0, symmetry / 2]."""
    difference = torch.remainder(inferred_yaw - true_yaw, symmetry)
    return torch.minimum(difference, symmetry - difference)


def scene_totals(inferred: SceneParameters, truth: SceneParameters, shapes: tuple[str, ...]) -> dict:
    """Each metric as (total, weight): count accuracy over scenes; over matched objects, identity accuracy
    and position error (table units); rotation error in degrees over matched objects of the right identity
    whose yaw shows (per shape, and all together); camera error over scenes where the camera turns."""
    inferred, truth = inferred.to("cpu"), truth.to("cpu")
    totals = {"count_accuracy": (float((inferred.counts == truth.counts).sum()), len(truth))}
    pairs = match_objects(inferred, truth)
    if pairs:
        scene, mine, theirs = (torch.tensor(column) for column in zip(*pairs))
        same = inferred.identity[scene, mine] == truth.identity[scene, theirs]
        distance = (inferred.pose[scene, mine, :2] - truth.pose[scene, theirs, :2]).norm(dim=1)
        totals.update(identity_accuracy=(float(same.sum()), len(pairs)), position_error=(float(distance.sum()), len(pairs)))
        errors = []
        for index, shape in enumerate(shapes):
            symmetry = SHAPES[shape].symmetry
            chosen = same & (truth.identity[scene, theirs] == index)
            if math.isfinite(symmetry) and chosen.any():
                error = rotation_error(inferred.pose[scene, mine, 2][chosen], truth.pose[scene, theirs, 2][chosen], symmetry)
                totals[f"rotation_error_degrees_{shape}"] = (math.degrees(float(error.sum())), len(error))
                errors.append(error)
        if errors:
            totals["rotation_error_degrees"] = (math.degrees(float(torch.cat(errors).sum())), sum(map(len, errors)))
    if truth.camera.abs().sum() > 0:
        totals["camera_error_degrees"] = (math.degrees(float((inferred.camera - truth.camera).abs().sum())), len(truth))
    return totals


def scene_metrics(inferred: SceneParameters, truth: SceneParameters, shapes: tuple[str, ...]) -> dict:
    """The metrics of `scene_totals`, as means."""
    return combine([scene_totals(inferred, truth, shapes)])


def optimise_scenes(renderer: Renderer, images: torch.Tensor, iterations: int = 100,
                    learning_rate: float = 0.03) -> tuple[SceneParameters, float]:
    """Single objects: for every identity, Adam on the pose from the table's centre (yaw 0) to minimise
    the squared pixel error (the Gaussian likelihood's), gradients by finite differences; each image
    keeps the identity that fits best. Returns the scenes (on the CPU) and the seconds per image."""
    started = time.perf_counter()
    images = images.cpu()
    batch = len(images)
    best_error = torch.full((batch,), math.inf)
    best = SceneParameters(identity=torch.zeros(batch, 1, dtype=torch.long), present=torch.ones(batch, 1, dtype=torch.bool),
                           pose=torch.zeros(batch, 1, 3), camera=torch.zeros(batch, 1))
    for identity in range(len(renderer.shapes)):
        pose = torch.zeros(batch, 1, 3, requires_grad=True)
        optimiser = torch.optim.Adam([pose], lr=learning_rate)
        scenes = SceneParameters(identity=torch.full((batch, 1), identity), present=best.present, pose=pose,
                                 camera=best.camera)
        for _ in range(iterations):
            error = ((renderer.render_differentiable(scenes) - images) ** 2).sum((1, 2, 3))
            optimiser.zero_grad()
            error.sum().backward()
            optimiser.step()
        final = ((renderer.render(scenes) - images) ** 2).sum((1, 2, 3))
        better = final < best_error
        best_error = torch.where(better, final, best_error)
        best.identity[better] = identity
        best.pose[better] = pose.detach()[better]
    return best, (time.perf_counter() - started) / batch
