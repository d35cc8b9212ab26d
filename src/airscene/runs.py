"""The one training loop, `fit`, and what it keeps in the run directory (airscene.rundir): its records, its
checkpoints and its summary. AIR (airscene.train) and inverse graphics (airscene.graphics.train) each describe
their model, data and estimator as a TrainingJob; nothing here knows which model it trains. Under torchrun
every rank runs `fit` on its share of each batch; the ranks agree on every decision (stop, skip), their
metrics are reduced exactly, and rank 0 alone writes the run directory (airscene.distributed)."""

from __future__ import annotations

import functools
import math
import signal
import time
from contextlib import contextmanager

import numpy as np
import torch
from tqdm import tqdm

from airscene.compiled import Compiled
from airscene.config import TrainConfig
from airscene.distributed import (STOP_REQUESTED, Shard, agree_on_settings, all_max, gather_objects, replicate,
                                  replicated_model)
from airscene.errors import AirsceneError, last_line
from airscene.estimators.base import Batch, Estimator
from airscene.model.trace import Trace
from airscene.rundir import Run
from airscene.schedules import learning_rate_factor, learning_rate_start
from airscene.storage import write_json

MAX_BAD_STEPS = 5  # consecutive non-finite losses or gradients before the run stops
# Several ranks agree whether to stop (a signal, the time) every this many steps: a collective read back on the
# host, which a step between them never waits for.
STOP_AGREEMENT_EVERY = 10


class TrainingJob:
    """What `fit` needs of a model: set `kind` ("air", "graphics"), `config` (a settings dataclass with
    to_dict and a `train: TrainConfig`), `model`, `estimator` and `optimiser` (on `device`), `shard` (this
    process's rank), and define the methods."""

    kind: str
    config: object
    model: torch.nn.Module
    estimator: Estimator
    optimiser: torch.optim.Optimizer
    device: torch.device = torch.device("cpu")
    shard: Shard = Shard()
    data_digest: str | None = None  # of the data set's splits, kept with each checkpoint

    @property
    def settings(self) -> TrainConfig:
        return self.config.train

    def batch(self, step: int) -> Batch:
        """This rank's share of the training batch of a step (the same at a resumed step as in an
        uninterrupted run), on the job's device."""
        raise NotImplementedError

    def schedule(self, step: int) -> float:
        """Apply the schedules of `step` that live in the model's state (the count prior) and return the
        exploration weight to draw with."""
        raise NotImplementedError

    def statistics(self, trace: Trace, batch: Batch) -> dict:
        """Extra float statistics of a training step (averaged into each training record)."""
        return {}

    def held_out_partials(self) -> dict[str, tuple[float, float]]:
        """Held-out metrics on this rank's share of the test images, as (total, weight) per metric: the loop
        adds them up over ranks and divides, so the result is the metric of all the test images."""
        raise NotImplementedError

    def progress_text(self, metrics: dict) -> str:
        """The progress bar's summary of the held-out metrics."""
        return ""


def batch_indices(step: int, size: int, batch_size: int, seed: int, shard: Shard = Shard()) -> np.ndarray:
    """This rank's images of a step: the global batch (batch_size per rank, times the world size) comes from a
    per-epoch permutation seeded by (seed, epoch), so resuming at any step sees exactly the batches an
    uninterrupted run would, and the ranks' shares are disjoint."""
    global_batch = batch_size * shard.world
    per_epoch = size // global_batch
    epoch, position = divmod(step, per_epoch)
    return shard.of_batch(epoch_order(seed, epoch, size)[position * global_batch:(position + 1) * global_batch]).copy()


@functools.lru_cache(maxsize=2)
def epoch_order(seed: int, epoch: int, size: int) -> np.ndarray:
    """The permutation of an epoch's images, drawn once an epoch (drawing it is most of a millisecond for
    60,000 images, 3% of a step); read-only, as the cache shares it (batch_indices hands out copies)."""
    order = np.random.default_rng([seed, epoch]).permutation(size)
    order.flags.writeable = False
    return order


def make_optimiser(model: torch.nn.Module, estimator: torch.nn.Module, config: TrainConfig,
                   shard: Shard = Shard()) -> torch.optim.Adam:
    """Adam for the model and, at its own rate, for the estimator's parameters (nvil's baseline), both
    scaled for the world size's larger global batch as learning_rate_scaling says. The fused kernel
    updates all parameters in one pass: a third of the for-loop version's time here."""
    factor = {"none": 1.0, "linear": shard.world, "sqrt": shard.world ** 0.5}[config.learning_rate_scaling]
    rates = (config.learning_rate * factor, config.baseline_learning_rate * factor)
    # initial_lr (torch's own key for it) is what the decay scales, kept in the optimiser's state_dict
    return torch.optim.Adam([{"params": parameters, "lr": rate, "initial_lr": rate}
                             for parameters, rate in zip((model.parameters(), estimator.parameters()), rates)],
                            fused=True)


def schedule_learning_rates(optimiser: torch.optim.Optimizer, start: float, spent: float, config: TrainConfig) -> None:
    """Set each parameter group's rate for the share of the budget `spent`: the decay's factor for both of
    make_optimiser's groups, times `start` (the fast start's multiple) for the first, the model's. An optimiser
    resumed from before the decay existed has no initial_lr: its rate is still the initial one."""
    decay = learning_rate_factor(spent, config)
    for group, factor in zip(optimiser.param_groups, (start * decay, decay)):
        group["lr"] = group.setdefault("initial_lr", group["lr"]) * factor


def start(run: Run, state: dict | None, job: TrainingJob) -> tuple[int, float]:
    """The step and elapsed seconds to go on from. Resuming: `state`'s, with the model, the estimator, the
    optimiser and the RNG restored and the run's records past its step dropped. A new run: zeros, begun."""
    if state is None:
        run.begin(job.config.to_dict())
        return 0, 0.0
    try:
        job.model.load_state_dict(state["model"])
        job.estimator.load_state_dict(state["estimator"])
        job.optimiser.load_state_dict(state["optimizer"])
        restore_random_state(state["rng"], job, state["step"])
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as error:
        raise AirsceneError(f"checkpoint {run.checkpoint} does not fit this run ({last_line(error)}): it is damaged, or from "
                            "another airscene version; start a new run") from None
    run.keep_metrics_until(state["step"])
    return state["step"], state["elapsed_seconds"]


def save(run: Run, job: TrainingJob, step: int, elapsed: float, progress: dict) -> None:
    """A checkpoint of everything `start` and the model's loader need to resume bit for bit: the (identical)
    weights and optimiser of rank 0, every rank's random state (gathered: a collective), the data set's digest,
    and `progress` (the last held-out metrics and the training records' running means), so that a resumed run
    writes the records an uninterrupted one would."""
    generators = gather_objects(random_state(job.device), job.shard)
    run.save({"kind": job.kind, "config": job.config.to_dict(), "model": job.model.state_dict(),
              "estimator": job.estimator.state_dict(), "optimizer": job.optimiser.state_dict(), "rng": generators,
              "step": step, "elapsed_seconds": elapsed, "data": job.data_digest, "progress": progress})


def random_state(device: torch.device) -> dict:
    """This process's random generators: the CPU's, and the CUDA device's where the job runs on one."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_random_state(saved: list[dict], job: TrainingJob, step: int) -> None:
    """Each rank continues its own random stream; a run resumed with another world size (or on another kind
    of device) cannot, and draws fresh streams from its seed and the step instead."""
    shard = job.shard
    mine = saved[shard.rank] if len(saved) == shard.world else None
    if mine is None or (job.device.type == "cuda") != ("cuda" in mine):
        torch.manual_seed(shard.seed(job.settings.seed) + step)
        return
    torch.set_rng_state(mine["cpu"])
    if "cuda" in mine:
        torch.cuda.set_rng_state(mine["cuda"], job.device)


@contextmanager
def memory_as_error():
    """An allocation that fails (a network or a batch too large for the machine) as one line, not a traceback
    from deep inside torch."""
    try:
        yield
    except (MemoryError, RuntimeError) as error:
        if not isinstance(error, MemoryError) and not any(
                words in str(error).lower() for words in ("can't allocate memory", "out of memory")):
            raise
        raise AirsceneError("training ran out of memory (the networks or the batch ask for more than this machine "
                            "has): lower --batch-size, --hidden-size, --embedding-size, --glimpse-hidden-size or "
                            "--glimpse-size; a checkpoint written before is intact") from None


@contextmanager
def stop_requests():
    """SIGINT, SIGTERM and SIGHUP set a flag instead of killing the run, so the loop can checkpoint and exit."""
    requested = {"signal": None}

    def handler(number, _frame):
        requested["signal"] = signal.Signals(number).name
        STOP_REQUESTED.set()  # a rank waiting for the others in a collective gives up after a grace period

    previous = {number: signal.signal(number, handler) for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    STOP_REQUESTED.clear()
    try:
        yield requested
    finally:
        STOP_REQUESTED.clear()
        for number, old in previous.items():
            signal.signal(number, old)


class StepAverages:
    """The training statistics of the steps since the last training record. A step's arrive unread (0-d
    tensors on the device, or numbers) and are read back together when the record is written or a checkpoint
    saved, so a step never waits for the device; read, they are kept as numbers (saved with a checkpoint, so
    that a record spanning a resume averages the same steps)."""

    def __init__(self, values: dict[str, list[float]] | None = None):
        self.values: dict[str, list[float]] = dict(values or {})
        # (step, its statistics that are numbers, the keys of those that are tensors, those stacked), not yet read
        self.pending: list[tuple[int, dict, list[str], torch.Tensor | None]] = []
        self.bad_steps = 0  # non-finite steps in a row
        self.skipped_steps = 0

    def add(self, step: int, statistics: dict) -> None:
        """Keep a step's statistics; its tensors are copied into one at once, and the step's own are let go
        (under CUDA graphs the next step's replay overwrites them)."""
        keys = [key for key, value in statistics.items() if isinstance(value, torch.Tensor)]
        numbers = {key: value for key, value in statistics.items() if key not in keys}
        self.pending.append((step, numbers, keys, torch.stack([statistics[key].float() for key in keys]) if keys else None))

    def read(self, run: Run) -> dict[str, list[float]]:
        """Read the pending steps back in one transfer, account for each in order (count_step), and keep the
        statistics of the steps taken."""
        tensors = [values for *_, values in self.pending if values is not None]
        read = iter(torch.cat(tensors).tolist() if tensors else [])
        for step, numbers, keys, _ in self.pending:
            row = {**numbers, **{key: next(read) for key in keys}}
            skipped, gradient_norm = bool(row.pop("skipped")), row.pop("gradient_norm")
            self.count_step(run, step, skipped, row["loss"], gradient_norm)
            for key, value in ({} if skipped else row).items():
                if value is not None:
                    self.values.setdefault(key, []).append(float(value))
        self.pending = []
        return self.values

    def count_step(self, run: Run, step: int, skipped: bool, loss: float, gradient_norm: float) -> None:
        """A skipped step (its loss or gradient not finite, so the update left everything as it was) is logged,
        and after MAX_BAD_STEPS of them in a row the run stops."""
        if not skipped:
            self.bad_steps = 0
            return
        self.bad_steps += 1
        self.skipped_steps += 1
        run.log({"kind": "skipped", "step": step, "loss": loss, "gradient_norm": gradient_norm})
        if self.bad_steps >= MAX_BAD_STEPS:
            raise AirsceneError(f"training stopped at step {step}: {self.bad_steps} non-finite losses or gradients "
                                f"in a row; {run.kept()}. Lower --learning-rate or --clip-norm")

    def pop(self, run: Run) -> dict:
        """The means since the last pop, averaged over ranks (whose batches are of one size)."""
        means = {key: float(np.mean(values)) for key, values in self.read(run).items()}
        ranks = gather_objects(means, run.shard)
        self.values = {}
        keys = sorted({key for means in ranks for key in means})
        return {key: float(np.mean([means[key] for means in ranks if key in means])) for key in keys}


def combine(partials: list[dict[str, tuple[float, float]]]) -> dict:
    """Metrics as (total, weight) from each rank -> total / weight of all of them (None where no weight)."""
    totals: dict[str, list[float]] = {}
    for partial in partials:
        for name, (total, weight) in partial.items():
            totals.setdefault(name, [0.0, 0.0])
            totals[name][0] += total
            totals[name][1] += weight
    return {name: (total / weight if weight else None) for name, (total, weight) in sorted(totals.items())}


def draw_and_estimate(job: TrainingJob, model, estimator, batch: Batch, exploration: float | torch.Tensor,
                      step: int):
    """A step's forward pass, drawn as its estimator needs it, and the estimator's (loss, statistics), with the
    trace: the part of a step that --compile compiles (autograd compiles its backward with it). `model` and
    `estimator` are the job's, replicated across ranks."""
    # bf16: the forward pass in bfloat16 (autocast); the estimator's sums (likelihoods over thousands of
    # pixels, the ELBO) in float32.
    with torch.autocast(job.device.type, dtype=torch.bfloat16, enabled=job.settings.precision == "bf16"):
        trace = job.estimator.draw(model, batch, exploration, step)
    loss, statistics = estimator(model, trace)
    return loss, statistics, trace


def train_step(job: TrainingJob, step: int, model, estimator, forward=draw_and_estimate) -> dict:
    """One update of the model (and the estimator's own parameters), left undone on the device if any rank's
    loss or gradient is not finite; its statistics, unread (StepAverages): the loss, the learning rate, the
    estimator's and the job's, and whether it was `skipped` with the `gradient_norm` a skipped step logs.
    `forward` is draw_and_estimate, or it compiled (airscene.compiled)."""
    exploration = job.schedule(step)
    job.estimator.schedule(step)
    batch = job.batch(step)
    kept = [buffer.clone() for buffer in job.estimator.buffers()]  # what the forward pass moves (NVIL's moments)
    loss, statistics, trace = forward(job, model, estimator, batch, exploration, step)
    job.optimiser.zero_grad(set_to_none=True)
    loss.backward()
    gradient_norm = torch.nn.utils.clip_grad_norm_(job.model.parameters(), job.settings.clip_norm)
    skipped = all_max((~(torch.isfinite(loss) & torch.isfinite(gradient_norm))).float(), job.shard)
    # The fused Adam reads found_inf on the device, as under a GradScaler: where it is 1 the parameters, the
    # moments and the step counts stay as they were, and the host never has to look.
    job.optimiser.found_inf = skipped
    job.optimiser.step()
    for buffer, before in zip(job.estimator.buffers(), kept):
        buffer.copy_(torch.where(skipped > 0, before, buffer))
    return {"loss": loss.detach(), "learning_rate": job.optimiser.param_groups[0]["lr"], **statistics,
            **job.statistics(trace, batch), "skipped": skipped, "gradient_norm": gradient_norm.detach()}


def log_held_out(job: TrainingJob, run: Run, step: int, elapsed: float) -> dict:
    """The held-out metrics of all ranks' shares, combined; logged by rank 0."""
    job.model.eval()
    metrics = {"step": step, **combine(gather_objects(job.held_out_partials(), job.shard))}
    job.model.train()
    run.log({"kind": "eval", "seconds": round(elapsed, 2), **metrics})
    return metrics


def should_stop(requested: dict, elapsed: float, budget: float, shard: Shard) -> tuple[str | None, float]:
    """Why to stop before the next step (a signal, or the time) and the elapsed seconds the learning-rate decay
    follows. Several ranks agree on both (a signal any of them got; the slowest's time) in one collective;
    one process decides alone, without touching a tensor."""
    signal_names = (None, "SIGINT", "SIGTERM", "SIGHUP")
    signal = signal_names.index(requested["signal"])
    if shard.world > 1:
        signal, elapsed = all_max(torch.tensor([float(signal), elapsed], dtype=torch.float64), shard).tolist()
    if signal > 0:
        return signal_names[int(signal)], elapsed
    return ("minutes" if elapsed >= budget else None), elapsed


def fit(job: TrainingJob, run: Run, state: dict | None = None, progress: bool = True) -> dict:
    """Train `job` in `run` from `state` (a checkpoint's, to resume) or from scratch, until its step or
    minute budget is spent or a signal (SIGINT, SIGTERM, SIGHUP) asks it to stop; checkpoint, and return
    (and write to RUN/train_summary.json) the held-out metrics, the step, the seconds and what stopped it.
    Signals are caught for the whole of it, the final evaluation and checkpoint included."""
    t, shard = job.settings, job.shard
    with stop_requests() as requested:
        # Ranks that differ in anything but where they compute would train two runs as one, or wait for ever.
        agree_on_settings(job.config.to_dict(), job.data_digest, shard, local=("train.device", "train.threads"))
        step, elapsed = start(run, state, job)
        saved = (state or {}).get("progress", {})
        averages, metrics, stopped_by = StepAverages(saved.get("averages")), saved.get("metrics", {}), "steps"
        model, estimator = replicated_model(job.model, shard, job.device), replicate(job.estimator, shard, job.device)
        forward = Compiled(draw_and_estimate, t.compile, job.device)
        budget = t.minutes * 60 if t.minutes else math.inf
        fast_start = job.config.reads("train.learning_rate_start")  # AIR's and DAIR's, not the grid's
        started, agreed = time.perf_counter() - elapsed, elapsed
        with tqdm(total=t.steps, initial=step, disable=not progress or not shard.leads, unit="step",
                  dynamic_ncols=True) as bar:
            while step < t.steps:
                if shard.world == 1 or step % STOP_AGREEMENT_EVERY == 0:  # ranks agree every few steps
                    reason, agreed = should_stop(requested, elapsed, budget, shard)
                    if reason:
                        stopped_by = reason
                        break
                multiple = learning_rate_start(step, t) if fast_start else 1.0
                schedule_learning_rates(job.optimiser, multiple, max(step / t.steps, agreed / budget), t)
                averages.add(step, train_step(job, step, model, estimator, forward))
                step += 1
                elapsed = time.perf_counter() - started
                bar.update(1)
                if step % t.log_every == 0 or step == t.steps:
                    record = averages.pop(run)
                    run.log({"kind": "train", "step": step, "seconds": round(elapsed, 2), **record})
                    bar.set_postfix(loss=f"{record.get('loss', math.nan):.1f}")
                if step % t.eval_every == 0:
                    metrics = log_held_out(job, run, step, elapsed)
                    bar.set_description(job.progress_text(metrics))
                if step % t.checkpoint_every == 0:
                    save(run, job, step, elapsed, {"metrics": metrics, "averages": averages.read(run)})
        # A signal stops at once; the budget's end is evaluated, as the last step is.
        if stopped_by in ("steps", "minutes") and metrics.get("step") != step:
            metrics = log_held_out(job, run, step, elapsed)
        save(run, job, step, elapsed, {"metrics": metrics, "averages": averages.read(run)})
        summary = {**metrics, "step": step, "seconds": round(elapsed, 1), "stopped_by": requested["signal"] or stopped_by,
                   "skipped_steps": averages.skipped_steps, "checkpoint": str(run.checkpoint)}
        if shard.leads:
            write_json(run.directory / "train_summary.json", summary, "training summary")
    return summary
