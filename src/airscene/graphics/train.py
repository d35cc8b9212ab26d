"""Training and evaluation of an inverse-graphics run: the renderer, the rendered data, the network and its
estimator as a TrainingJob of the one loop (airscene.runs), with its guarantees: atomic checkpoints,
resume, SIGINT/SIGTERM checkpoint and exit, non-finite steps skipped."""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path

import torch

from airscene.checkpoint import checkpoint_config, read_checkpoint, writable_run
from airscene.distributed import Shard, barrier, joined, resolve_device
from airscene.errors import AirsceneError
from airscene.estimators import Batch
from airscene.graphics.config import GraphicsConfig
from airscene.graphics.data import SceneData, scene_data
from airscene.graphics.estimators import make_scene_estimator
from airscene.graphics.evaluate import optimise_scenes, scene_metrics, scene_totals
from airscene.graphics.figures import inference_figure
from airscene.graphics.model import SceneAIR
from airscene.graphics.renderers import Renderer, make_renderer
from airscene.images import to_model_layout
from airscene.rundir import Run
from airscene.runs import TrainingJob, batch_indices, fit, make_optimiser, memory_as_error
from airscene.schedules import count_prior_at, exploration_at
from airscene.storage import write_json


def build_renderer(config: GraphicsConfig, workers: int | None = None) -> Renderer:
    model = config.model
    return make_renderer(model.renderer, model.shapes, model.max_objects, model.image_size,
                         config.workers if workers is None else workers)


class SceneJob(TrainingJob):
    """The inverse-graphics network on its rendered scenes; held-out scene metrics on eval_images scenes."""

    kind = "graphics"

    def __init__(self, config: GraphicsConfig, renderer: Renderer, data: SceneData, device: torch.device,
                 shard: Shard = Shard()):
        self.config, self.data, self.device, self.shard = config, data, device, shard
        self.model = SceneAIR(config.model, renderer).to(device)
        self.estimator = make_scene_estimator(config.model, config.train).to(device)
        self.optimiser = make_optimiser(self.model, self.estimator, config.train, shard)
        mine = shard.indices(min(config.train.eval_images, len(data.test_images)))  # this rank's test scenes
        self.test_images, self.test_scenes = to_model_layout(data.test_images[mine], 3).to(device), data.test_scenes[mine]

    def batch(self, step: int) -> Batch:
        index = batch_indices(step, len(self.data.train_images), self.settings.batch_size, self.settings.seed, self.shard)
        return Batch(images=to_model_layout(self.data.train_images[index], 3).to(self.device),
                     truth=self.data.train_scenes[index].to(self.device))

    def schedule(self, step: int) -> float:
        self.model.count_prior.fill_(count_prior_at(step, self.config.model.count_prior, self.settings))
        return exploration_at(step, self.settings)

    def held_out_partials(self) -> dict[str, tuple[float, float]]:
        return scene_totals(self.model.infer(self.test_images), self.test_scenes, self.config.model.shapes)

    def progress_text(self, metrics: dict) -> str:
        shown = {"count_accuracy": "count", "identity_accuracy": "identity", "position_error": "position",
                 "rotation_error_degrees": "rotation"}
        return " ".join(f"{label} {metrics[key]:.3g}" for key, label in shown.items() if metrics.get(key) is not None)


def train_graphics(config: GraphicsConfig, out: str | Path, resume: bool = False, progress: bool = True) -> dict:
    """Train (or, with resume, continue) a run in `out`; returns its summary (also OUT/train_summary.json).
    Resuming, `config` must be the run's own but for its budget and where it computes. Under torchrun,
    every rank calls this with the same arguments; rank 0 renders the scenes, the others read them."""
    config.validate()
    device = resolve_device(config.train.device)
    with joined(device) as shard, Run(out, resume, shard) as run, memory_as_error():
        state = run.state_to_resume(config, GraphicsConfig.from_dict, "graphics", None) if resume else None
        if config.train.threads:
            torch.set_num_threads(config.train.threads)
        with build_renderer(config) as renderer:
            if not shard.leads:
                barrier(shard)  # rank 0 renders and saves the scenes first
            data = scene_data(config, renderer, run.directory)
            if shard.leads:
                barrier(shard)
            torch.manual_seed(config.train.seed)  # the same initial weights on every rank
            job = SceneJob(config, renderer, data, device, shard)
            if shard.world > 1:
                torch.manual_seed(shard.seed(config.train.seed))  # each rank draws its own samples
            return fit(job, run, state, progress)


@contextmanager
def open_run(directory: str | Path, workers: int = 0, device: str = "cpu"):
    """A trained run's config, network (with its renderer, closed on exit) and checkpoint state."""
    state = read_checkpoint(directory, kind="graphics")
    config = checkpoint_config(state, directory, GraphicsConfig.from_dict)
    with build_renderer(config, workers) as renderer:
        model = SceneAIR(config.model, renderer).to(resolve_device(device))
        model.load_state_dict(state["model"])
        yield config, model.eval(), state


def evaluate_graphics(directory: str | Path, optimise_images: int = 0, iterations: int = 100,
                      workers: int = 0, device: str = "cpu") -> dict:
    """Held-out metrics of a run and its inference time per image; with optimise_images > 0 (single
    objects), also those of direct optimisation on that many test images. Writes DIR/eval.json and
    DIR/figure.png."""
    directory = writable_run(directory)
    for name, value, low in (("optimise_images", optimise_images, 0), ("iterations", iterations, 1), ("workers", workers, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise AirsceneError(f"{name} is {value!r}: use a whole number >= {low}")
    with open_run(directory, workers, device) as (config, model, state):
        if optimise_images and not config.model.fixed_count:
            raise AirsceneError("--optimise-images is for single-object runs: the optimiser fits one object")
        data = scene_data(config, model.renderer, directory)
        images = to_model_layout(data.test_images, 3).to(model.count_prior.device)
        started = time.perf_counter()
        inferred = model.infer(images).to("cpu")
        seconds = (time.perf_counter() - started) / len(images)
        report = {"step": state["step"], "test_images": len(images), "seconds_per_image": seconds,
                  **scene_metrics(inferred, data.test_scenes, config.model.shapes)}
        if optimise_images:
            subset = slice(0, optimise_images)
            fitted, seconds = optimise_scenes(model.renderer, images[subset], iterations)
            report["optimisation"] = {"images": len(fitted), "iterations": iterations, "seconds_per_image": seconds,
                                      **scene_metrics(fitted, data.test_scenes[subset], config.model.shapes)}
            report["network_on_same_images"] = scene_metrics(inferred[subset], data.test_scenes[subset],
                                                             config.model.shapes)
        inference_figure(directory, config, model.renderer, data, inferred)
    write_json(directory / "eval.json", report, "evaluation")
    return report
