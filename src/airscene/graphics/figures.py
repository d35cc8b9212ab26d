"""Figures like the paper's Figs. 6 and 7: test images, the inferred scenes re-rendered, and inferred
against true positions."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from airscene.graphics.config import GraphicsConfig
from airscene.graphics.data import SceneData
from airscene.images import to_model_layout
from airscene.graphics.evaluate import match_objects
from airscene.graphics.renderers import Renderer
from airscene.graphics.scenes import SceneParameters
from airscene.viz import plt, save_figure


def inference_figure(run: Path, config: GraphicsConfig, renderer: Renderer, data: SceneData,
                     inferred: SceneParameters, shown: int = 8) -> Path:
    """RUN/figure.png: a row of test images, a row of the run's inferences rendered, and the inferred
    against the true x and y of every matched test object."""
    images = to_model_layout(data.test_images[:shown], 3)
    rendered = renderer.render(inferred[:shown])
    figure = plt.figure(figsize=(shown * 1.2 + 5, 3.2))
    grid = figure.add_gridspec(2, shown + 4)
    for column in range(shown):
        rows = ((images[column], data.test_scenes[column], "data"), (rendered[column], inferred[column], "inferred"))
        for row, (picture, scene, title) in enumerate(rows):
            axis = figure.add_subplot(grid[row, column])
            axis.imshow(picture.permute(1, 2, 0).numpy())
            axis.set_xticks([])
            axis.set_yticks([])
            names = [config.model.shapes[identity] for identity in scene.identity[scene.present].tolist()]
            axis.set_title(", ".join(names) or "empty", fontsize=6)
            if column == 0:
                axis.set_ylabel(title, fontsize=8)
    scatter = figure.add_subplot(grid[:, shown + 1:])
    draw_positions(scatter, inferred, data.test_scenes)
    figure.suptitle(f"{run.name}: {config.model.experiment}, {config.model.renderer} renderer", fontsize=9)
    figure.tight_layout()
    return save_figure(figure, run / "figure.png", dpi=110)


def draw_positions(axis, inferred: SceneParameters, truth: SceneParameters) -> None:
    """Inferred against true table coordinates of matched objects: points on the diagonal are right."""
    pairs = np.array(match_objects(inferred, truth))
    if len(pairs):
        for coordinate, colour in ((0, "C0"), (1, "C1")):
            axis.scatter(truth.pose[pairs[:, 0], pairs[:, 2], coordinate], inferred.pose[pairs[:, 0], pairs[:, 1], coordinate],
                         s=3, color=colour, label="xy"[coordinate])
    axis.plot([-0.6, 0.6], [-0.6, 0.6], color="grey", linewidth=0.8)
    axis.set_xlabel("true position", fontsize=8)
    axis.set_ylabel("inferred position", fontsize=8)
    axis.legend(fontsize=7)
