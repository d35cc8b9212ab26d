"""Training AIR: its data, model, estimator and schedules as a TrainingJob of the one loop (airscene.runs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from airscene.config import Config
from airscene.data import load_dataset
from airscene.data.files import dataset_digest
from airscene.data.scenes import SceneSet
from airscene.distributed import Shard, joined, resolve_device
from airscene.errors import AirsceneError
from airscene.estimators import Batch, make_estimator
from airscene.estimators.elbo import greedy_counts
from airscene.evaluate import adjusted_rand_index, elbo_and_log_likelihood, infer_counts
from airscene.images import to_model_layout
from airscene.model import make_model, model_class
from airscene.model.trace import Trace
from airscene.rundir import Run
from airscene.runs import TrainingJob, batch_indices, fit, make_optimiser, memory_as_error
from airscene.schedules import count_prior_at, exploration_at
from airscene.storage import as_path, outside


def fit_model_to_data(config: Config, train: SceneSet, test: SceneSet, shard: Shard = Shard(),
                      data_settings: dict | None = None) -> None:
    """Take the canvas size and channels from the data, and how image files become its canvases (the reading
    of their values and their scale, as its dataset.json says the data set was imported), refusing settings
    that contradict them, and check that the data fits the model."""
    images, model = train.images, config.model
    if images.shape[1] != images.shape[2]:
        raise AirsceneError(f"data {config.data} has {images.shape[1]}x{images.shape[2]} images: AIR here needs square "
                            "canvases; crop them or import them with `airscene data import --size`")
    channels = 1 if images.ndim == 3 else images.shape[3]
    data_settings = data_settings or {}
    # An import from before --intensity read files by their type's range; generated data sets have no files.
    imported = data_settings.get("kind") == "import"
    intensity = data_settings.get("intensity", "full" if imported else model.intensity or "auto")
    for name, value in (("image_size", images.shape[1]), ("channels", channels), ("intensity", intensity),
                        ("image_scale", float(data_settings.get("scale") or 1.0))):
        if getattr(model, name) not in (None, value):
            raise AirsceneError(f"setting {name} = {getattr(model, name)} contradicts the data {config.data}, whose "
                                f"images have {name} {value}: drop --{name.replace('_', '-')}")
        setattr(model, name, value)
    if model.object_size is not None and max(model.object_size) > model.image_size:
        raise AirsceneError(f"setting object_size = {model.object_size} is larger than the data's {model.image_size}-pixel "
                            "canvases: give the objects' size in pixels of the canvas (see `airscene data import`'s "
                            "measured size)")
    if config.train.batch_size * shard.world > len(train):
        raise AirsceneError(f"batch size {config.train.batch_size} x {shard.world} process(es) exceeds the {len(train)} "
                            "training images: lower --batch-size or make more data")
    largest = max((int(split.counts.max(initial=0)) for split in (train, test) if split.counts is not None), default=0)
    model_class(model.model).fit_to_data(model, largest, config.train.batch_size, config.data)


def turned(images: torch.Tensor, symmetry: torch.Tensor) -> torch.Tensor:
    """Square images (B, C, S, S), each under one of the square's 8 symmetries (symmetry (B,) in 0..7:
    turned by symmetry % 4 quarter turns, mirrored first where symmetry >= 4)."""
    variants = torch.stack([torch.rot90(source, turns, (2, 3)) for source in (images, images.flip(3))
                            for turns in range(4)])  # (8, B, C, S, S)
    return variants[symmetry, torch.arange(len(images), device=images.device)]


def contrasted(images: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
    """Images (B, C, H, W) in [0, 1], each channel's distance from its own median (the background, where
    objects are few) multiplied by the image's gain (B,), kept in [0, 1]."""
    median = images.flatten(2).median(2).values[..., None, None]  # (B, C, 1, 1)
    return (median + gain.view(-1, 1, 1, 1) * (images - median)).clamp(0, 1)


class AIRJob(TrainingJob):
    """AIR on a data set of scenes: batches by a seeded per-epoch permutation, the count prior and the
    exploration by their schedules; on the first eval_images test scenes, held-out count accuracy where the
    data has counts, the test ELBO where it has none."""

    kind = "air"

    def __init__(self, config: Config, train: SceneSet, test: SceneSet, device: torch.device, shard: Shard = Shard()):
        self.config, self.train, self.device, self.shard = config, train, device, shard
        # The training images (uint8, the model's layout) and counts live on the device, so that a step's batch
        # is an index there and never a blocking upload.
        images = torch.from_numpy(train.images)
        self.train_images = (images[:, None] if images.ndim == 3 else images.permute(0, 3, 1, 2)).contiguous().to(device)
        self.train_counts = None if train.counts is None else torch.from_numpy(train.counts).to(device)
        self.model = make_model(config.model).to(device)
        self.estimator = make_estimator(config).to(device)
        self.optimiser = make_optimiser(self.model, self.estimator, config.train, shard)
        mine = shard.indices(min(config.train.eval_images, len(test)))  # this rank's share of the test scenes
        size, channels = config.model.image_size, config.model.channels
        self.test_images = (to_model_layout(test.images[mine], channels).to(device) if len(mine)
                            else torch.zeros(0, channels, size, size, device=device))  # a set with no test split
        self.test_counts = None if test.counts is None else test.counts[mine]
        self.test_masks = None if test.masks is None else test.masks[mine]

    def batch(self, step: int) -> Batch:
        index = batch_indices(step, len(self.train), self.settings.batch_size, self.settings.seed, self.shard)
        index = torch.from_numpy(index).to(self.device, non_blocking=True)
        images = self.train_images[index].float() / 255  # as images.to_model_layout divides uint8
        if self.settings.augment == "turns":  # drawn from (seed, step, rank): a resumed run turns them alike
            symmetry = np.random.default_rng([self.settings.seed, step, self.shard.rank]).integers(0, 8, len(images))
            images = turned(images, torch.from_numpy(symmetry).to(self.device, non_blocking=True))
        if self.settings.augment_contrast > 0:  # its own stream of (seed, step, rank), so the turns stay as they were
            spread = np.log1p(self.settings.augment_contrast)
            gain = np.exp(np.random.default_rng([self.settings.seed, step, self.shard.rank, 1]).uniform(
                -spread, spread, len(images)))
            images = contrasted(images, torch.from_numpy(gain).float().to(self.device, non_blocking=True))
        return Batch(images=images, truth=None if self.train_counts is None else self.train_counts[index])

    def schedule(self, step: int) -> float:
        self.model.count_prior.fill_(count_prior_at(step, self.config.model.count_prior, self.settings))
        return exploration_at(step, self.settings)

    def statistics(self, trace: Trace, batch: Batch) -> dict:
        statistics = {"count_prior": self.model.count_prior.detach().clone()}
        if batch.truth is not None:
            counts = greedy_counts(trace).view(len(batch.truth), -1)[:, 0]  # each image's first trace
            statistics["train_count_accuracy"] = (counts == batch.truth).float().mean()
        return statistics

    def held_out_partials(self) -> dict[str, tuple[float, float]]:
        if len(self.test_images) == 0:
            return {}
        metrics = {}
        if self.test_masks is not None:  # FG-ARI, as object-centric models are compared
            with torch.no_grad():
                labels = torch.cat([self.model.pixel_shares(self.model.most_probable(chunk)).argmax(1).cpu()
                                    for chunk in self.test_images.split(100)])
            scores = adjusted_rand_index(self.test_masks, labels.numpy(), foreground=True)
            metrics["test_fg_ari"] = (float(np.nansum(scores)), int(np.isfinite(scores).sum()))
        if self.test_counts is not None:
            correct = infer_counts(self.model, self.test_images) == self.test_counts
            return {**metrics, "test_count_accuracy": (float(correct.sum()), len(correct))}
        elbo, _ = elbo_and_log_likelihood(self.model, self.test_images, samples=1)
        return {**metrics, "test_elbo": (float(elbo.sum()), len(elbo))}

    def progress_text(self, metrics: dict) -> str:
        for key, label in (("test_count_accuracy", "test acc {:.3f}"), ("test_elbo", "test elbo {:.1f}")):
            if metrics.get(key) is not None:
                return label.format(metrics[key])
        return ""


def train(config: Config, out: str | Path, resume: bool = False, progress: bool = True) -> dict:
    """Train (or, with resume, continue) a run in `out`; returns the final summary. Resuming, `config` must
    be the run's own but for its budget (steps, minutes) and device. Under torchrun, every rank calls this
    with the same arguments (README, "Where the compute is")."""
    if not isinstance(config, Config):
        raise AirsceneError(f"config is a {type(config).__name__}: give an airscene.Config (Config.from_dict reads a dict)")
    config.validate()
    device = resolve_device(config.train.device)
    outside(as_path(out, "run directory"), [config.data], "--out")  # a run never goes inside the data it reads
    train_set, test_set, data_settings = load_dataset(config.data)  # before the run directory exists: a bad --data leaves nothing
    with joined(device) as shard, memory_as_error():
        fit_model_to_data(config, train_set, test_set, shard, data_settings)
        with Run(out, resume, shard) as run:
            data_digest = dataset_digest(config.data)
            state = run.state_to_resume(config, Config.from_dict, "air", data_digest) if resume else None
            if config.train.threads:
                torch.set_num_threads(config.train.threads)
            torch.manual_seed(config.train.seed)  # the same initial weights on every rank
            job = AIRJob(config, train_set, test_set, device, shard)
            job.data_digest = data_digest
            if shard.world > 1:
                torch.manual_seed(shard.seed(config.train.seed))  # each rank draws its own samples
            return fit(job, run, state, progress)
