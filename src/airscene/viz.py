"""Figures: the data preview and the paper's Fig. 3 (reconstructions with a box per step, count accuracy
over training, where each step attends)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from airscene.data import load_dataset  # noqa: E402
from airscene.data.scenes import SceneSet  # noqa: E402
from airscene.errors import AirsceneError  # noqa: E402
from airscene.infer import load  # noqa: E402
from airscene.rundir import read_metrics  # noqa: E402
from airscene.checkpoint import writable_run  # noqa: E402
from airscene.images import PNG_MARK, marked_png  # noqa: E402
from airscene.storage import as_path, check_writable, outside, replaceable, write_file  # noqa: E402

STEP_COLOURS = ("red", "lime", "deepskyblue", "yellow", "magenta", "orange")


def _show(axis, image: np.ndarray) -> None:
    """image (H, W), (H, W, 3) or (C, H, W), uint8 or float in [0, 1]."""
    if image.ndim == 3 and image.shape[0] in (1, 3):
        image = np.moveaxis(image, 0, -1)
    axis.imshow(image.squeeze(), cmap="gray", vmin=0, vmax=255 if image.dtype == np.uint8 else 1,
                interpolation="nearest")
    axis.set_xticks([])
    axis.set_yticks([])


def _draw_box(axis, box, colour: str) -> None:
    """box x0, y0, x1, y1 in pixel edges; imshow puts pixel centres at integers, so shift by half."""
    x0, y0, x1, y1 = box
    axis.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor=colour, linewidth=1.2))


def draw_scene(axis, image: np.ndarray, boxes: np.ndarray | None = None, title: str | None = None,
               title_colour: str = "black") -> None:
    """An image with one box per step (rows of NaN skipped), coloured by step: red, green, blue, ..."""
    _show(axis, image)
    for step, box in enumerate([] if boxes is None else boxes):
        if not np.isnan(box[0]):
            _draw_box(axis, box, STEP_COLOURS[step % len(STEP_COLOURS)])
    if title is not None:
        axis.set_title(title, fontsize=8, color=title_colour)


def preview(scenes: SceneSet, out: str | Path, number: int = 32, columns: int = 8, force: bool = False) -> Path:
    """A grid of scenes with their ground-truth boxes and counts, where the set has them. An existing file at
    `out` is replaced only if airscene wrote it (or with `force`)."""
    out = replaceable(out, "--out", force, marked_png)
    if out.suffix.lower() not in FIGURE_FORMATS:
        raise AirsceneError(f"figure {out} has no figure suffix: name it .png, .jpg, .pdf or .svg")
    check_writable(out.parent, "figure directory")
    if isinstance(number, bool) or not isinstance(number, int) or number < 1:
        raise AirsceneError(f"number is {number!r}: show a whole number >= 1 of scenes")
    number = min(number, len(scenes))
    rows = max(1, -(-number // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(columns * 1.4, rows * 1.55), squeeze=False)
    for index, axis in enumerate(axes.flat):
        if index >= number:
            axis.axis("off")
            continue
        if scenes.counts is None:
            draw_scene(axis, scenes.images[index], title="no labels")
            continue
        count = scenes.counts[index]
        shown = scenes.labels is not None and count <= MAX_TITLE_LABELS  # dozens of labels would run over the row
        labels = ",".join(str(v) for v in scenes.labels[index, :count]) if shown else ""
        boxes = scenes.boxes[index, :count].astype(float) if scenes.boxes is not None else None
        draw_scene(axis, scenes.images[index], boxes, f"n={count}" + (f" [{labels}]" if labels else ""))
    figure.tight_layout()
    return save_figure(figure, out)


MAX_TITLE_LABELS = 5  # a preview names the classes of scenes with at most this many objects


def preview_dataset(directory: str | Path, out: str | Path, split: str = "test", number: int = 32,
                    force: bool = False) -> Path:
    """`preview` of a data set's split, written outside the data set it shows."""
    if split not in ("train", "test"):
        raise AirsceneError(f"split is {split!r}: give train or test")
    outside(as_path(out, "figure"), [as_path(directory, "data directory")], "--out")
    train, test, _ = load_dataset(directory)
    return preview(train if split == "train" else test, out, number=number, force=force)


def draw_samples(run: str | Path, out: str | Path, number: int = 32, count: int | None = None, seed: int = 0,
                 force: bool = False, device: str = "cpu") -> Path:
    """`preview` of scenes drawn from a trained run's generative model (TrainedModel.sample), each with its
    objects' windows and count, written outside the run."""
    outside(as_path(out, "figure"), [as_path(run, "run")], "--out")
    return preview(load(run, device).sample(number, count=count, seed=seed), out, number=number, force=force)


FIGURE_FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".pdf": "pdf", ".svg": "svg"}


def save_figure(figure, out: str | Path, dpi: int = 120) -> Path:
    """A matplotlib figure in the format its name says (PNG, JPEG, PDF, SVG), written atomically; the figure
    is closed."""
    out = as_path(out, "figure")
    try:
        form = FIGURE_FORMATS.get(out.suffix.lower())
        if form is None:
            raise AirsceneError(f"figure {out} has no figure suffix: name it .png, .jpg, .pdf or .svg")
        check_writable(out.parent, "figure directory")
        metadata = PNG_MARK if form == "png" else None
        write_file(out, lambda handle: figure.savefig(handle, format=form, dpi=dpi, metadata=metadata), "figure")
    finally:
        plt.close(figure)
    return out


def attention_maps(boxes: np.ndarray, image_size: int) -> np.ndarray:
    """(B, N, 4) windows (NaN where absent) -> (N, H, W): how often each step's window covers each pixel."""
    centres = np.arange(image_size) + 0.5
    maps = np.zeros((boxes.shape[1], image_size, image_size))
    for step in range(boxes.shape[1]):
        valid = boxes[~np.isnan(boxes[:, step, 0]), step]  # (M, 4)
        inside_x = (centres[None, :] >= valid[:, 0:1]) & (centres[None, :] < valid[:, 2:3])  # (M, W)
        inside_y = (centres[None, :] >= valid[:, 1:2]) & (centres[None, :] < valid[:, 3:4])  # (M, H)
        maps[step] = np.einsum("mh,mw->hw", inside_y.astype(float), inside_x.astype(float)) / max(len(boxes), 1)
    return maps


def draw_reconstructions(figure, grid, row: int, images, reconstructions, boxes, counts, true_counts, shown: int,
                         first: int = 0) -> None:
    """Two rows of `grid` from `row` on: images first..first+shown, and their reconstructions with one box
    per step; an inferred count differing from the true one is titled in red."""
    for column, index in enumerate(range(first, first + shown)):
        truth = None if true_counts is None else true_counts[index]
        draw_scene(figure.add_subplot(grid[row, column]), images[index], title="data" if truth is None else f"true {truth}")
        draw_scene(figure.add_subplot(grid[row + 1, column]), reconstructions[index], boxes[index],
                   f"inferred {counts[index]}", "black" if truth in (None, counts[index]) else "red")


def reconstruction_figure(images, reconstructions, boxes, counts, true_counts, out: str | Path, shown: int = 32,
                          columns: int = 8) -> Path:
    """Test images and their reconstructions with a box per inference step, `columns` to a row pair."""
    shown = min(shown, len(images))
    pairs = max(1, -(-shown // columns))
    figure = plt.figure(figsize=(columns * 1.25, pairs * 2.6))
    grid = figure.add_gridspec(2 * pairs, columns, hspace=0.4)
    for pair in range(pairs):
        first = pair * columns
        draw_reconstructions(figure, grid, 2 * pair, images, reconstructions, boxes, counts, true_counts,
                             min(columns, shown - first), first)
    return save_figure(figure, out)


def label_picture(labels: np.ndarray) -> np.ndarray:
    """Label maps (..., H, W) as pictures (..., H, W, 3): object k in step k's colour, the background dark grey."""
    from matplotlib.colors import to_rgb

    palette = np.array([(0.15, 0.15, 0.15)] + [to_rgb(colour) for colour in STEP_COLOURS], np.float32)
    return palette[np.where(labels > 0, (labels - 1) % len(STEP_COLOURS) + 1, 0)]


def decomposition_figure(images: np.ndarray, parts: dict[str, np.ndarray], boxes: np.ndarray, out: str | Path,
                         labels: np.ndarray | None = None, shown: int = 8) -> Path:
    """For each of `shown` images (a column): the image, the inferred background, each step's object alone
    (coloured title per step), the reconstruction with its boxes and, given label maps (B, H, W), whose each
    pixel is (segment): what the model took the scene to be."""
    shown, steps = min(shown, len(images)), parts["objects"].shape[1]
    rows = [("data", images), ("background", parts["background"]),
            *((f"step {step + 1}", parts["objects"][:, step]) for step in range(steps)),
            ("reconstruction", parts["reconstruction"]),
            *([] if labels is None else [("masks", label_picture(labels[:shown]))])]
    figure, axes = plt.subplots(len(rows), shown, figsize=(shown * 1.3, len(rows) * 1.35), squeeze=False)
    for row, (label, pictures) in enumerate(rows):
        for column in range(shown):
            draw_scene(axes[row, column], pictures[column], boxes[column] if label == "reconstruction" else None)
        axes[row, 0].set_ylabel(label, fontsize=8, color=STEP_COLOURS[row - 2] if label.startswith("step") else "black")
    figure.tight_layout()
    return save_figure(figure, out)


def figure3(images: np.ndarray, reconstructions: np.ndarray, boxes: np.ndarray, counts: np.ndarray,
            true_counts: np.ndarray | None, metrics: list[dict], out: str | Path, shown: int = 10) -> Path:
    """Top: data and reconstructions with one coloured box per inference step (red, green, blue).
    Bottom: held-out count accuracy over training (the test ELBO where the data has no counts); per step,
    where its window falls over the test set."""
    steps = boxes.shape[1]
    shown = min(shown, len(images))
    columns = max(shown, 3 + 2 * steps)  # the bottom row: the curve, then two columns per step's map
    figure = plt.figure(figsize=(columns * 1.25, 6.2))
    grid = figure.add_gridspec(3, columns, height_ratios=[1, 1, 1.6], hspace=0.35)
    draw_reconstructions(figure, grid, 0, images, reconstructions, boxes, counts, true_counts, shown)
    curve = figure.add_subplot(grid[2, :columns - 2 * steps - 1])
    key, label = (("test_count_accuracy", "held-out count accuracy") if true_counts is not None
                  else ("test_elbo", "held-out ELBO (nats)"))
    evals = [m for m in metrics if m.get("kind") == "eval" and m.get(key) is not None]
    if evals:
        curve.plot([m["step"] for m in evals], [m[key] for m in evals], marker=".")
    curve.set_xlabel("training step")
    curve.set_ylabel(label)
    if key == "test_count_accuracy":
        curve.set_ylim(0, 1.02)
    curve.grid(alpha=0.3)
    maps = attention_maps(boxes, images.shape[1])
    for step in range(steps):
        start = columns - 2 * (steps - step)
        axis = figure.add_subplot(grid[2, start:start + 2])
        axis.imshow(maps[step], cmap="magma", vmin=0, vmax=max(maps.max(), 1e-9))
        axis.set_title(f"step {step + 1}", fontsize=9, color=STEP_COLOURS[step % len(STEP_COLOURS)])
        axis.set_xticks([])
        axis.set_yticks([])
    return save_figure(figure, out)


def gradient_variance_chart(results: dict, out: str | Path) -> Path:
    """Horizontal bars (log scale) of each estimator's presence-head gradient variance, from airscene gradvar."""
    names = list(results["estimators"])
    variances = [results["estimators"][name]["presence_head_variance"] for name in names]
    figure, axis = plt.subplots(figsize=(7, 0.45 * len(names) + 1.2))
    axis.barh(names[::-1], variances[::-1], color="tab:blue")
    axis.set_xscale("log")
    axis.set_xlabel("total variance of the presence-head gradient (log scale)")
    axis.set_title(f"{results['samples']} gradient samples, one batch of {results['batch_size']}, "
                   f"model at step {results['checkpoint_step']}", fontsize=9)
    axis.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    return save_figure(figure, out, dpi=110)


def draw_run_figure(run: str | Path, data: str | Path | None = None, images: int = 1000, device: str = "cpu") -> Path:
    """The paper's Fig. 3 for a trained run (a run directory or its checkpoint), from the first `images`
    test scenes of its data set (or of `data`): RUN/figure3.png; and RUN/decomposition.png, the first
    scenes taken apart into background, objects, reconstruction and masks."""
    directory = writable_run(run)
    trained = load(run, device)
    _, test, _ = load_dataset(data or trained.config.data)
    shown = test.images[:images]
    reconstructions, scenes = trained.reconstruct(shown)
    truth = None if test.counts is None else test.counts[:images]
    decomposition_figure(shown, trained.decompose(shown[:8]), scenes.boxes, directory / "decomposition.png",
                         labels=trained.segment(shown[:8])[1])
    return figure3(shown, reconstructions, scenes.boxes, scenes.counts, truth, read_metrics(directory),
                   directory / "figure3.png")
