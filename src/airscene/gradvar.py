"""Variance of each estimator's gradient on one fixed, trained model: the measurement behind the choice of
estimator (cf. Table 1 of the report "Experiments with AIR: a generative model for scenes", Drelich 2019).

The model's parameters and one batch are fixed; each estimator draws `samples` independent traces of the
batch and backpropagates its loss. We report the total variance (the trace of the gradient's covariance,
E ||g - E g||^2) for the presence head, the row of the inference network's head that outputs the
presence logit, where the estimators differ; and, for reference, for the glimpse decoder, whose gradient
is reparameterised under every estimator (the report's "backprop" row).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from airscene.checkpoint import load_checkpoint, writable_run
from airscene.config import Config
from airscene.data import load_dataset
from airscene.errors import AirsceneError
from airscene.estimators import NVIL, VIMCO, BaselineNetwork, Batch, Enumerate, Estimator, Relaxed
from airscene.images import to_model_layout
from airscene.infer import model_from_checkpoint
from airscene.model import AIR
from airscene.storage import write_json
from airscene.viz import gradient_variance_chart


def estimators_to_compare(config: Config, baseline_state: dict | None) -> dict[str, Estimator]:
    """Every estimator as it is at the end of training. NVIL's signal is not normalised here: that divides
    the gradient by a running scale (a step size, not a variance reduction) and would flatter it."""
    t = config.train
    with_baseline = NVIL(BaselineNetwork(config.model), normalise_signal=False)
    if baseline_state is not None:
        with_baseline.load_state_dict(baseline_state)
    return {
        "score function, no baseline": NVIL(None, normalise_signal=False),
        "nvil (score function + neural baseline)": with_baseline,
        f"vimco (K = {t.vimco_samples})": VIMCO(t.vimco_samples),
        "relaxed (Concrete)": Relaxed(t.temperature_end, t.temperature_end, 1),
        "relaxed, straight-through": Relaxed(t.temperature_end, t.temperature_end, 1, straight_through=True),
        "enumerate": Enumerate(),
    }


def fit_baseline(model: AIR, nvil: NVIL, images: np.ndarray, steps: int, batch_size: int, seed: int) -> None:
    """Train NVIL's baseline on a fixed model (for runs trained by another estimator, which have none):
    the model runs without gradients, so only the baseline's MSE is minimised."""
    generator = np.random.default_rng(seed)
    optimiser = torch.optim.Adam(nvil.baseline.parameters(), lr=1e-3)
    for _ in range(steps):
        batch = to_model_layout(images[generator.choice(len(images), min(batch_size, len(images)), replace=False)],
                                model.config.channels).to(model.count_prior.device)
        with torch.no_grad():
            trace = model(batch, "sample")
        loss, _ = nvil(model, trace)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()


def presence_head_gradient(model: AIR) -> torch.Tensor:
    head = model.infer_step.head
    return torch.cat([head.weight.grad[0], head.bias.grad[:1]]).cpu()


def decoder_gradient(model: AIR) -> torch.Tensor:
    return torch.cat([parameter.grad.flatten() for parameter in model.decode.parameters()]).cpu()


def gradient_variance(model: AIR, estimator: Estimator, images: torch.Tensor, samples: int) -> dict:
    """Total variance over `samples` draws of the gradient of the estimator's loss on a fixed batch."""
    presence, decoder = [], []
    for _ in range(samples):
        model.zero_grad(set_to_none=True)
        loss, _ = estimator(model, estimator.draw(model, Batch(images=images), 0.0, 0))
        loss.backward()
        presence.append(presence_head_gradient(model))
        decoder.append(decoder_gradient(model))
    presence, decoder = torch.stack(presence), torch.stack(decoder)  # (samples, P)
    return {"presence_head_variance": presence.var(0).sum().item(),
            "presence_head_mean_norm": presence.mean(0).norm().item(),
            "decoder_variance": decoder.var(0).sum().item()}


def measure(run: str | Path, data: str | None = None, samples: int = 1000, batch_size: int = 64,
            baseline_steps: int = 1000, seed: int = 0, device: str = "cpu") -> dict:
    """Load a run, fix one held-out batch, and measure every estimator's gradient variance on it."""
    for name, value, low, high in (("samples", samples, 2, 100_000), ("batch_size", batch_size, 1, 65_536),
                                   ("baseline_steps", baseline_steps, 0, 10**6), ("seed", seed, 0, 2**32 - 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
            raise AirsceneError(f"{name} is {value!r}: use a whole number from {low} to {high}")
    state, config = load_checkpoint(run)
    model = model_from_checkpoint(state, config, run, device)
    if not model.enumerates_count:
        raise AirsceneError(f"run {run} is a grid model: gradvar compares AIR's estimators of the count, which a "
                            "grid does not have; use it on an air or dair run")
    train_set, test_set, _ = load_dataset(data or config.data)
    if batch_size > len(test_set):
        raise AirsceneError(f"batch size {batch_size} exceeds the {len(test_set)} test images of {data or config.data}: "
                            "lower --batch-size")
    batch = np.random.default_rng(seed).choice(len(test_set), batch_size, replace=False)
    images = to_model_layout(test_set.images[batch], config.model.channels, config.model.image_size).to(model.count_prior.device)
    baseline_state = state["estimator"] if config.train.estimator == "nvil" else None
    estimators = {name: estimator.to(images.device) for name, estimator in estimators_to_compare(config, baseline_state).items()}
    torch.manual_seed(seed)
    if baseline_state is None:
        fit_baseline(model, estimators["nvil (score function + neural baseline)"], train_set.images,
                     baseline_steps, batch_size, seed)
    results = {name: gradient_variance(model, estimator, images, samples) for name, estimator in estimators.items()}
    return {"checkpoint_step": state["step"], "trained_with": config.train.estimator, "samples": samples,
            "batch_size": batch_size, "baseline_fitted_steps": 0 if baseline_state else baseline_steps,
            "count_prior": model.count_prior.item(), "estimators": results}


def measure_run(run: str | Path, data: str | None = None, **options) -> tuple[dict, list[Path]]:
    """`measure`, written to RUN/gradvar.json and drawn in RUN/gradvar.png; returns the results and the files."""
    directory = writable_run(run)
    results = measure(run, data, **options)
    write_json(directory / "gradvar.json", results, "gradient variances")
    return results, [directory / "gradvar.json", gradient_variance_chart(results, directory / "gradvar.png")]
