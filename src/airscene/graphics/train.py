"""Training and evaluation of an inverse-graphics run: the renderer, the rendered data, the network and
its estimator (or the supervised loss), with the same guarantees as AIR's loop (airscene.train): atomic
checkpoints, bit-for-bit resume, SIGINT/SIGTERM checkpoint and exit, non-finite steps skipped."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from airscene.checkpoint import read_checkpoint
from airscene.errors import AirsceneError
from airscene.graphics.config import GraphicsConfig
from airscene.graphics.data import SceneData, images_to_float, scene_data
from airscene.graphics.estimator import MarginalIdentity, ScoreFunction, supervised_loss
from airscene.graphics.evaluate import optimise_scenes, scene_metrics
from airscene.graphics.figures import inference_figure
from airscene.graphics.model import SceneAIR
from airscene.graphics.render import make_renderer
from airscene.train import Run, batch_indices, stop_requests


def build(config: GraphicsConfig, state: dict | None = None) -> tuple[SceneAIR, torch.nn.Module]:
    model = SceneAIR(config)
    if config.estimator_name == "marginal":
        estimator = MarginalIdentity()
    else:
        estimator = ScoreFunction(config.image_size, config.max_objects)
    if state is not None:
        model.load_state_dict(state["model"])
        estimator.load_state_dict(state["estimator"])
    return model, estimator


def load_run(directory: str | Path) -> tuple[GraphicsConfig, SceneAIR, dict]:
    """A trained run's config, network (no renderer attached) and checkpoint state."""
    state = read_checkpoint(directory)
    if "graphics" not in state:
        raise AirsceneError(f"{directory} is an AIR run, not an inverse-graphics one: use `airscene eval` on it")
    config = GraphicsConfig.from_dict(state["config"]).validate()
    model, _ = build(config, state)
    return config, model.eval(), state


def train_graphics(config: GraphicsConfig, out: str | Path, resume: bool = False, progress: bool = True) -> dict:
    """Train (or resume) a run; returns its summary (also written to OUT/train_summary.json)."""
    run = Run(out)
    run.check_resume(resume)
    state = None
    if resume:
        state = read_checkpoint(run.checkpoint)
        saved = GraphicsConfig.from_dict(state["config"])
        saved.steps, saved.minutes, saved.workers = config.steps, config.minutes, config.workers  # budgets may change
        config = saved
    config.validate()
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    with make_renderer(config.renderer, config.shapes, config.max_objects, config.image_size, config.workers) as renderer:
        data = scene_data(config, renderer, run.directory)
        model, estimator = build(config, state)
        model.renderer = renderer
        optimiser = torch.optim.Adam([{"params": model.parameters(), "lr": config.learning_rate},
                                      {"params": estimator.parameters(), "lr": config.baseline_learning_rate}])
        step, elapsed = run.start(state, config.to_dict(), optimiser)

        def checkpoint() -> None:
            run.save(config.to_dict(), model, estimator, optimiser, step, elapsed, graphics=True)

        def evaluate() -> dict:
            metrics = {"step": step, **held_out_metrics(model, data, config)}
            run.log({"kind": "eval", "seconds": round(elapsed, 2), **metrics})
            return metrics

        budget = config.minutes * 60 if config.minutes else math.inf
        window: dict[str, list[float]] = {}
        stop_reason, metrics = "steps", {}
        started = time.perf_counter() - elapsed
        with stop_requests() as requested, tqdm(total=config.steps, initial=step, disable=not progress, unit="step",
                                                dynamic_ncols=True) as bar:
            while step < config.steps:
                if elapsed >= budget or requested["signal"]:
                    stop_reason = requested["signal"] or "minutes"
                    break
                index = batch_indices(step, len(data.train_images), config.batch_size, config.seed)
                images = images_to_float(data.train_images[index])
                if config.supervised:
                    scenes, terms = model.propose(images, sample=False)
                    loss, stats = supervised_loss(scenes, terms["logits"], data.train_scenes[index], config.shapes)
                else:
                    exploration = min(1.0, max(0.0, 1 - (step - config.exploration_hold) / max(config.exploration_steps, 1)))
                    trace = model(images, exploration, identity_alternatives=estimator.identity_alternatives,
                                  yaw_proposals=config.yaw_proposals)
                    loss, stats = estimator(trace)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                gradient_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_norm)
                skipped = run.skip_non_finite(step, loss, gradient_norm)
                step += 1
                if skipped:
                    continue
                optimiser.step()
                elapsed = time.perf_counter() - started
                for key, value in {"loss": loss.item(), **stats}.items():
                    window.setdefault(key, []).append(value)
                if step % config.log_every == 0:
                    run.log({"kind": "train", "step": step, "seconds": round(elapsed, 2),
                             **{key: float(np.mean(values)) for key, values in window.items()}})
                    bar.set_postfix(loss=f"{np.mean(window['loss']):.1f}")
                    window = {}
                if step % config.eval_every == 0:
                    metrics = evaluate()
                    bar.set_description(describe(metrics))
                if step % config.checkpoint_every == 0:
                    checkpoint()
                bar.update(1)
        if metrics.get("step") != step:  # not already evaluated at this step
            metrics = evaluate()
        checkpoint()
    run.close()
    summary = {**metrics, "step": step, "seconds": round(elapsed, 1), "stopped_by": stop_reason}
    (run.directory / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def describe(metrics: dict) -> str:
    shown = {"count_accuracy": "count", "identity_accuracy": "identity", "position_error": "position",
             "rotation_error_degrees": "rotation"}
    return " ".join(f"{label} {metrics[key]:.3g}" for key, label in shown.items() if key in metrics)


def held_out_metrics(model: SceneAIR, data: SceneData, config: GraphicsConfig) -> dict:
    model.eval()
    metrics = scene_metrics(model.infer(images_to_float(data.test_images)), data.test_scenes, config.shapes)
    model.train()
    return metrics


def evaluate_graphics(directory: str | Path, optimise_images: int = 0, iterations: int = 100,
                      workers: int = 0) -> dict:
    """Held-out metrics of a run and its inference time per image; with optimise_images > 0 (single
    objects), also those of direct optimisation on that many test images. Writes DIR/eval.json and
    DIR/figure.png."""
    directory = Path(directory)
    config, model, state = load_run(directory)
    with make_renderer(config.renderer, config.shapes, config.max_objects, config.image_size, workers) as renderer:
        data = scene_data(config, renderer, directory)
        images = images_to_float(data.test_images)
        model.renderer = renderer
        started = time.perf_counter()
        inferred = model.infer(images)
        seconds = (time.perf_counter() - started) / len(images)
        report = {"step": state["step"], "test_images": len(images), "seconds_per_image": seconds,
                  **scene_metrics(inferred, data.test_scenes, config.shapes)}
        if optimise_images:
            if config.max_objects != 1:
                raise AirsceneError("--optimise-images is for single-object runs: the optimiser fits one object")
            subset = slice(0, optimise_images)
            fitted, seconds = optimise_scenes(renderer, images[subset], iterations)
            report["optimisation"] = {"images": optimise_images, "iterations": iterations, "seconds_per_image": seconds,
                                      **scene_metrics(fitted, data.test_scenes[subset], config.shapes)}
            report["network_on_same_images"] = scene_metrics(inferred[subset], data.test_scenes[subset], config.shapes)
        inference_figure(directory, config, renderer, data, inferred)
    (directory / "eval.json").write_text(json.dumps(report, indent=2) + "\n")
    return report

