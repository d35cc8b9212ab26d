"""The jobs the command line runs, as library functions: the main job (`airscene run`, `bash scripts/run.sh`:
the default Multi-MNIST data if missing, training for a fixed budget, resumed if the run directory holds a
checkpoint, held-out evaluation and Fig. 3), a run's evaluation (`airscene eval`) and counting large images."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from airscene.checkpoint import resumable, writable_run
from airscene.config import MAIN_JOB_MINUTES, Config
from airscene.data import load_dataset, make_multi_mnist
from airscene.errors import AirsceneError
from airscene.evaluate import evaluate, segmentation_metrics
from airscene.infer import check_proposals, check_refinement, load
from airscene.storage import as_path, write_json
from airscene.train import train
from airscene.viz import draw_run_figure, reconstruction_figure


def main_job(config: Config, out: str | Path, progress: bool = True, say: Callable[[str], None] = print) -> dict:
    """Everything the README's main job does; `say` reports what it is doing. Returns the training summary,
    the held-out metrics and where the figure is. A config with no minutes trains for MAIN_JOB_MINUTES."""
    out = as_path(out, "run directory")
    if config.train.minutes is None:
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, minutes=MAIN_JOB_MINUTES))
    data = Path(config.data)
    if not (data / "dataset.json").is_file():
        if data.exists() and (not data.is_dir() or any(data.iterdir())):
            raise AirsceneError(f"{data} holds files but no dataset.json: it is not an airscene data set, and the main "
                                "job will not write over it; give another --data")
        say(f"making the default Multi-MNIST data set in {config.data} ...")
        make_multi_mnist(config.data, seed=0, progress=progress)
    resume = resumable(out)
    if resume:
        say(f"resuming the run in {out}")
    summary = train(config, out, resume=resume, progress=progress)
    if summary["stopped_by"] in ("SIGINT", "SIGTERM"):
        return {"summary": summary}
    return {"summary": summary, "metrics": evaluate_run(out, samples=20), "figure": draw_run_figure(out)}


COUNT_JOB_MINUTES = 5.0  # `airscene count FOLDER --train OUT`'s training budget where none is given
MEASURE_SIDE = 128  # pixels: the crops of the source images on which the objects are measured
OBJECT_TARGET = 28  # pixels: images are scaled down so that a typical object is at most about this wide
MERGED = 1.5  # object sizes beyond this multiple of the typical one are taken for touching objects measured as one
DARK_BACKGROUND = 0.1  # the background's mean (its side of Otsu's threshold): darker, and no background is learned


def count_settings(folder: Path) -> dict:
    """What `count_job` trains with, chosen from the images of `folder` (read as the import reads them): the
    objects' size measured on crops of MEASURE_SIDE pixels (data.imports.suggest_object_size; its largest
    sizes capped at MERGED times the typical one, as touching objects measure as one), a scale that brings a
    typical object down to about OBJECT_TARGET pixels, tiles of twice the largest size a sixth of a tile apart,
    and, where the background is not dark, a learned background under a count prior annealed from 0.5 (from
    the first step, the background explains everything and every object switches off), which objects darker
    than it cover rather than add to; on a dark one, tiles turned at random (a cell or a star has no up).
    benchmarks/large_images.py measured all three."""
    import numpy as np
    import torch

    from airscene.data.imports import otsu_threshold, source_images, suggest_object_size
    from airscene.images import quantise, to_model_layout

    names, image = source_images(folder)
    crops = []
    for index in range(len(names)):
        grey = to_model_layout(image(index)[None], 1, layout="channels_last", intensity="auto")  # (1, 1, H, W)
        side = min(MEASURE_SIDE, *grey.shape[-2:])
        crops += [grey[..., y:y + side, x:x + side] for y in range(0, grey.shape[-2] - side + 1, side)
                  for x in range(0, grey.shape[-1] - side + 1, side)]
    sides = {tuple(crop.shape) for crop in crops}
    if len(sides) > 1:  # images smaller than MEASURE_SIDE: measure on the smallest square that fits them all
        side = min(min(shape[-2:]) for shape in sides)
        crops = [crop[..., :side, :side] for crop in crops]
    pixels = quantise(torch.cat(crops))  # (M, S, S) uint8
    measured = suggest_object_size(pixels)
    if "object_size" not in measured:
        raise AirsceneError(f"no objects stand out from the background of the images in {folder} (measured by "
                            f"{measured['method']}): train with `airscene data import` and `airscene train`, setting "
                            "--object-size by looking at the images")
    low, high = measured["object_size"][0], min(measured["object_size"][1], MERGED * measured["typical"])
    scale = min(1.0, round(OBJECT_TARGET / measured["typical"], 2))
    low, high = max(4, int(low * scale)), max(6, int(np.ceil(high * scale)))
    tile = int(8 * np.ceil(2 * high / 8))
    values = pixels.astype(np.float32) / 255
    threshold = otsu_threshold(values)
    darker = measured["darker_than_background"]
    background = values[values > threshold] if darker else values[values <= threshold]
    return dict(scale=scale, tile=tile, stride=max(1, tile // 6), object_size=(low, high),
                dark_background=float(background.mean()) < DARK_BACKGROUND, darker_objects=darker, measured=measured)


def count_config(settings: dict, data: Path, minutes: float, seed: int) -> Config:
    """The grid model's settings for `count_job`, as README's "Many objects" gives them, with count_settings'."""
    config = Config(data=str(data))
    model, train = config.model, config.train
    model.model, model.object_size, model.window_limit = "grid", tuple(map(float, settings["object_size"])), 1.2
    model.glimpse_size, model.embedding_size = 20, 128
    train.estimator, train.batch_size, train.minutes, train.seed = "local", 16, minutes, seed
    if settings["dark_background"]:
        train.augment = "turns"
    else:
        model.background, model.count_prior = "learned", 1e-20
        model.compositing = "alpha" if settings["darker_objects"] else "add"
        train.count_prior_schedule, train.count_prior_start, train.count_prior_steps = "exponential", 0.5, 2000
    config.validate()
    return config


def count_job(folder: str | Path, out: str | Path, minutes: float = COUNT_JOB_MINUTES, seed: int = 0,
              progress: bool = True, say: Callable[[str], None] = print) -> list:
    """Count the objects in a folder of large images with no model given: choose the settings from the images
    (`count_settings`), import them as tiles into OUT/data, train the grid on them for `minutes` in OUT/run
    (resumed if interrupted; it needs no labels, so it may learn from the very images it counts), and count
    every image whole into OUT/counts.csv and OUT/drawn/. Returns `infer.count_files`' results."""
    from airscene.data.imports import import_images
    from airscene.infer import count_files, load
    from airscene.outputs import draw_inferences, write_inferences
    from airscene.storage import outside

    folder, out = as_path(folder, "image folder"), as_path(out, "count directory")
    if not folder.is_dir():
        raise AirsceneError(f"{folder} is not a folder: give the folder of images to learn from and count")
    outside(out, [folder], "--train")
    data, run = out / "data", out / "run"
    if out.is_dir() and any(entry.name not in ("data", "run", "counts.csv", "drawn") for entry in out.iterdir()):
        raise AirsceneError(f"{out} holds files that `airscene count --train` did not write: give a new folder")
    settings = count_settings(folder)
    low, high = settings["object_size"]
    background = "a dark background: none learned" if settings["dark_background"] else (
        "a background learned, which the objects, darker, cover" if settings["darker_objects"] else "a background learned")
    say(f"objects measured {settings['measured']['object_size'][0]:g}-{settings['measured']['object_size'][1]:g} "
        f"pixels: images scaled by {settings['scale']:g} (objects {low}-{high} pixels), tiles of {settings['tile']} "
        f"pixels every {settings['stride']}; {background}")
    if not (data / "dataset.json").is_file():
        import_images(folder, data, scale=settings["scale"] if settings["scale"] != 1 else None, tile=settings["tile"],
                      stride=settings["stride"], test_fraction=0.0)
    config = count_config(settings, data, minutes, seed)
    if not (run / "train_summary.json").is_file():
        say(f"training the grid model for {minutes:g} minutes in {run}")
        train(config, run, resume=resumable(run), progress=progress)
    trained = load(run)
    results = count_files(trained, [folder])
    write_inferences(results, out / "counts.csv")
    draw_inferences(results, out / "drawn", intensity=trained.intensity)
    return results


def evaluate_run(run: str | Path, data: str | Path | None = None, samples: int = 50, device: str = "cpu",
                 proposals: int = 1, refine: int = 0) -> dict:
    """Every held-out metric of a trained run (a run directory or its checkpoint) on the test split of its
    own data set, or of `data`; written to RUN/eval.json (RUN/eval-DATA.json for another data set) and
    returned. RUN/reconstructions.png shows the first test images with their reconstructions. Where the data
    has masks, the segmentation is each image's best of `proposals` explanations (infer.best_explanation), refined
    by `refine` gradient steps on its joint (infer.refine_explanation)."""
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or not 1 <= samples <= 10_000:
        raise AirsceneError(f"samples is {samples!r}: the importance-weighted log p(x) needs a whole number from 1 "
                            "to 10,000")
    proposals, refine = check_proposals(proposals), check_refinement(refine)
    directory = writable_run(run)
    trained = load(run, device)
    _, test, _ = load_dataset(data or trained.config.data)
    if len(test) == 0:
        raise AirsceneError(f"data {data or trained.config.data} has no test images: make a data set with a test split")
    images = trained.prepare(test.images)
    torch.manual_seed(0)
    metrics = {"checkpoint_step": trained.step, "data": str(data or trained.config.data),
               **evaluate(trained.model, images, test.counts, test.boxes, samples=samples)}
    if test.masks is not None:  # segmentation as object-centric models are compared
        metrics.update(segmentation_metrics(test.masks, trained.segment(images, proposals=proposals, refine=refine)[1]),
                       proposals=proposals, refine=refine)
    else:
        metrics["missing_labels"].append("masks")
    suffix = "" if data is None else f"-{Path(data).resolve().name}"  # another data set's results beside the run's own
    write_json(directory / f"eval{suffix}.json", metrics, "evaluation")
    shown = test.images[:32]
    reconstructions, scenes = trained.reconstruct(shown)
    reconstruction_figure(shown, reconstructions, scenes.boxes, scenes.counts,
                          None if test.counts is None else test.counts[:32], directory / f"reconstructions{suffix}.png")
    return metrics
