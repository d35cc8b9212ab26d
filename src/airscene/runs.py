"""The one training loop, `fit`, and the run directory it writes: config, metrics (JSONL and TensorBoard),
checkpoint, summary. AIR (airscene.train) and inverse graphics (airscene.graphics.train) each describe
their model, data and estimator as a TrainingJob; nothing here knows which model it trains. Under torchrun
every rank runs `fit` on its share of each batch; the ranks agree on every decision (stop, skip), their
metrics are reduced exactly, and rank 0 alone writes the run directory (airscene.distributed)."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from airscene.checkpoint import CHECKPOINT_NAME, checkpoint_config, read_checkpoint, save_checkpoint
from airscene.config import TrainConfig
from airscene.distributed import (STOP_REQUESTED, Shard, agree_on_settings, all_max, gather_objects, replicate,
                                  replicated_model)
from airscene.errors import AirsceneError
from airscene.estimators.base import Batch, Estimator
from airscene.model.trace import Trace
from airscene.schedules import learning_rate_factor, learning_rate_start
from airscene.settings import differences
from airscene.storage import (append_line, as_path, check_writable, claim_directory, json_ready, lock_directory,
                              write_failure, write_json, write_text)

MAX_BAD_STEPS = 5  # consecutive non-finite losses or gradients before the run stops
# Several ranks agree whether to stop (a signal, the time) every this many steps: a collective read back on the
# host, which a step between them never waits for.
STOP_AGREEMENT_EVERY = 10
# What a resumed run may change: its budget and where it computes; anything else would be another run.
RESUMABLE = ("train.steps", "train.minutes", "train.threads", "train.device", "workers")
# Taken from the data at the start of training; a checkpoint written before they existed holds None for them.
FROM_THE_DATA = ("model.intensity", "model.image_scale")


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

    def evaluate(self) -> dict[str, tuple[float, float]]:
        """Held-out metrics on this rank's share of the test images, as (total, weight) per metric: the loop
        adds them up over ranks and divides, so the result is the metric of all the test images."""
        raise NotImplementedError

    def describe(self, metrics: dict) -> str:
        """The progress bar's summary of the held-out metrics."""
        return ""


def batch_indices(step: int, size: int, batch_size: int, seed: int, shard: Shard = Shard()) -> np.ndarray:
    """This rank's images of a step: the global batch (batch_size per rank, times the world size) comes from a
    per-epoch permutation seeded by (seed, epoch), so resuming at any step sees exactly the batches an
    uninterrupted run would, and the ranks' shares are disjoint."""
    global_batch = batch_size * shard.world
    per_epoch = size // global_batch
    epoch, position = divmod(step, per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(size)
    return shard.of_batch(order[position * global_batch:(position + 1) * global_batch])


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


def schedule_learning_rates(optimiser: torch.optim.Optimizer, step: int, spent: float, config: TrainConfig) -> None:
    """Set each parameter group's rate for `step` and the share of the budget `spent`: the decay's factor for both
    of make_optimiser's groups, times the start's for the first, the model's (schedules). An optimiser resumed
    from before the decay existed has no initial_lr: its rate is still the initial one."""
    decay = learning_rate_factor(spent, config)
    for group, factor in zip(optimiser.param_groups, (learning_rate_start(step, config) * decay, decay)):
        group["lr"] = group.setdefault("initial_lr", group["lr"]) * factor


class Run:
    """A run directory, locked against a second writer for as long as the Run is open: config.json,
    metrics.jsonl and tensorboard/, checkpoint.pt, train_summary.json and figures. Only rank 0 writes it;
    every rank reads the checkpoint it resumes from."""

    def __init__(self, directory: str | Path, resume: bool, shard: Shard = Shard()):
        self.shard = shard
        self.directory = check_writable(directory, "run directory") if shard.leads else as_path(directory, "run directory")
        self.checkpoint = self.directory / CHECKPOINT_NAME
        self.metrics_path = self.directory / "metrics.jsonl"
        if shard.leads:
            claim_run_directory(self.directory)
        self._lock = lock_directory(self.directory, "run directory") if shard.leads else None
        self._writer = None
        self.tensorboard_purge_step = None  # resuming: TensorBoard drops the events a died run wrote past it
        self.bad_steps = 0  # non-finite steps in a row
        self.skipped_steps = 0
        if self.checkpoint.exists() and not self.checkpoint.is_file():
            self.close()
            raise AirsceneError(f"{self.checkpoint} is not a file: remove it, or choose another --out")
        if resume and not self.checkpoint.is_file():
            self.close()
            raise AirsceneError(f"nothing to resume: {self.checkpoint} does not exist; drop --resume to start a new run")
        if not resume and self.checkpoint.is_file():
            self.close()
            raise AirsceneError(f"run directory {self.directory} already holds a checkpoint: pass --resume to continue "
                                "it, or choose a new --out")
        if shard.leads:
            self._clear_leftovers()

    def _clear_leftovers(self) -> None:
        """Temporaries a killed writer left (.NAME.*.partial), and non-files at names the run writes."""
        for leftover in self.directory.glob(".*.partial"):
            _remove(leftover)
        events = self.directory / "tensorboard"
        if events.is_symlink() or (events.exists() and not events.is_dir()):
            _remove(events)  # never write through a link someone else made
        for name in ("metrics.jsonl", "config.json", "train_summary.json"):
            path = self.directory / name
            if path.exists() and not path.is_file() and not path.is_symlink():
                raise AirsceneError(f"{path} is not a file: remove it, or choose another --out")

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, *exception) -> None:
        self.close()

    def state_to_resume(self, requested, from_dict, kind: str, data_digest: str | None = None) -> dict:
        """The checkpoint's state, if its config is `requested` but for the budget (steps, minutes) and where
        it computes, and its data set (by digest) the same; any other difference is refused with the list."""
        state = read_checkpoint(self.checkpoint, kind=kind)
        saved = checkpoint_config(state, self.checkpoint, from_dict)
        if getattr(saved, "data", None) and Path(saved.data).resolve() == Path(requested.data).resolve():
            saved.data = requested.data  # the same directory, however it is written
        changed = [line for line in differences(saved, requested) if line.split(":")[0] not in RESUMABLE
                   and not any(line.startswith(f"{name}: None -> ") for name in FROM_THE_DATA)]
        if changed:
            raise AirsceneError(f"resuming would train another configuration than the checkpoint's ({'; '.join(changed)}): "
                                "resume with the run's own settings (only --steps, --minutes, --threads, --device and "
                                "--workers may change), or start a new run with another --out")
        if state.get("data") != data_digest:
            raise AirsceneError(f"the data set {getattr(requested, 'data', '')} is not the one the checkpoint was trained on "
                                "(its splits' digests differ): resume on that data set, or start a new run")
        return state

    def start(self, state: dict | None, job: TrainingJob) -> tuple[int, float]:
        """The step and elapsed seconds to go on from. Resuming: `state`'s, with the optimiser and the RNG
        restored and the metrics past its step dropped (they were written after the checkpoint by a run that
        died). A new run: zeros; config.json is written and what a run that died before its first
        checkpoint left is cleared."""
        if state is None:
            if self.shard.leads:
                write_json(self.directory / "config.json", job.config.to_dict(), "run config")
                _remove(self.metrics_path)
                shutil.rmtree(self.directory / "tensorboard", ignore_errors=True)
            return 0, 0.0
        try:
            job.model.load_state_dict(state["model"])
            job.estimator.load_state_dict(state["estimator"])
            job.optimiser.load_state_dict(state["optimizer"])
            restore_random_state(state["rng"], job, state["step"])
        except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as error:
            first = (str(error).strip().splitlines() or [type(error).__name__])[-1].strip()[:200]
            raise AirsceneError(f"checkpoint {self.checkpoint} does not fit this run ({first}): it is damaged, or from "
                                "another airscene version; start a new run") from None
        if self.shard.leads:
            self._keep_metrics_until(state["step"])
        return state["step"], state["elapsed_seconds"]

    def _keep_metrics_until(self, step: int) -> None:
        records = [record for record in read_metrics(self.directory) if record["step"] <= step]
        write_text(self.metrics_path, "".join(json.dumps(record) + "\n" for record in records), "metrics")
        self.tensorboard_purge_step = step + 1

    def save(self, job: TrainingJob, step: int, elapsed: float, progress: dict) -> None:
        """An atomic checkpoint of everything `start` and the model's loader need to resume bit for bit:
        the (identical) weights and optimiser of rank 0, every rank's random state, the data set's digest,
        and `progress` (the last held-out metrics and the training records' running means), so that a
        resumed run writes the records an uninterrupted one would."""
        generators = gather_objects(random_state(job.device), self.shard)
        if self.shard.leads:
            save_checkpoint(self.checkpoint, {
                "kind": job.kind, "config": job.config.to_dict(), "model": job.model.state_dict(),
                "estimator": job.estimator.state_dict(), "optimizer": job.optimiser.state_dict(),
                "rng": generators, "step": step, "elapsed_seconds": elapsed, "data": job.data_digest,
                "progress": progress})

    def count_step(self, step: int, skipped: bool, loss: float, gradient_norm: float) -> None:
        """Account for a step as it is read back: a skipped one (its loss or gradient not finite, so the update
        left everything as it was) is logged, and after MAX_BAD_STEPS of them in a row the run stops."""
        if not skipped:
            self.bad_steps = 0
            return
        self.bad_steps += 1
        self.skipped_steps += 1
        self.log({"kind": "skipped", "step": step, "loss": loss, "gradient_norm": gradient_norm})
        if self.bad_steps >= MAX_BAD_STEPS:
            kept = (f"the last good checkpoint {self.checkpoint} is intact" if self.checkpoint.is_file()
                    else "no checkpoint had been written yet")
            raise AirsceneError(f"training stopped at step {step}: {self.bad_steps} non-finite losses or gradients "
                                f"in a row; {kept}. Lower --learning-rate or --clip-norm")

    def log(self, record: dict) -> None:
        """One record to metrics.jsonl (NaN written as null) and its numbers to TensorBoard (rank 0)."""
        if not self.shard.leads:
            return
        record = json_ready(record)
        kept = f"the checkpoint {self.checkpoint} is intact" if self.checkpoint.is_file() else "nothing was checkpointed yet"
        append_line(self.metrics_path, json.dumps(record), "metrics", kept + "; resume with --resume")
        try:
            if self._writer is None:
                from torch.utils.tensorboard import SummaryWriter

                self._writer = SummaryWriter(str(self.directory / "tensorboard"), purge_step=self.tensorboard_purge_step)
            for key, value in record.items():
                if key not in ("step", "kind") and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self._writer.add_scalar(f"{record['kind']}/{key}", value, record["step"])
        except OSError as error:
            raise write_failure(self.directory / "tensorboard", "TensorBoard events", error, kept) from None

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None


RUN_MARKER = ".airscene-run"  # in every run directory airscene made: what makes a folder plainly its own


def claim_run_directory(directory: Path) -> None:
    """A run writes (and clears what a died run left) only in a folder airscene made for a run, a new or empty
    one, or one holding an intact airscene checkpoint (a run from before the marker)."""
    def made_earlier(entries: list[str]) -> bool:
        return CHECKPOINT_NAME in entries and bool(read_checkpoint(directory / CHECKPOINT_NAME))  # refuses a foreign one

    claim_directory(directory, RUN_MARKER, "run directory", made_earlier)


def _remove(path: Path) -> None:
    """Remove a file or link at `path` (a link's target is untouched); nothing if there is none."""
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as error:
        raise AirsceneError(f"cannot remove {path} ({error.strerror}): remove it yourself, or choose another --out") from None


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


def read_metrics(run: str | Path) -> list[dict]:
    """The records of RUN/metrics.jsonl, each a mapping with a `kind` and a whole `step`; a line cut short by
    a kill or a full disk, or anything else that is not such a record, is skipped."""
    path = Path(run) / "metrics.jsonl"
    records = []
    if path.is_file() and not path.is_symlink():
        for line in path.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, RecursionError):
                continue
            if (isinstance(record, dict) and isinstance(record.get("kind"), str) and isinstance(record.get("step"), int)
                    and not isinstance(record["step"], bool)):
                records.append(record)
    return records


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
        self.pending: list[tuple[int, dict]] = []  # (step, its statistics), not yet read

    def add(self, step: int, statistics: dict) -> None:
        self.pending.append((step, statistics))

    def read(self, run: Run) -> dict[str, list[float]]:
        """Read the pending steps back in one transfer, let `run` account for each in order (Run.count_step),
        and keep the statistics of the steps taken."""
        tensors = [value for _, statistics in self.pending for value in statistics.values() if isinstance(value, torch.Tensor)]
        numbers = iter(torch.stack([value.float() for value in tensors]).tolist() if tensors else [])
        for step, statistics in self.pending:
            row = {key: next(numbers) if isinstance(value, torch.Tensor) else value for key, value in statistics.items()}
            skipped, gradient_norm = bool(row.pop("skipped")), row.pop("gradient_norm")
            run.count_step(step, skipped, row["loss"], gradient_norm)
            for key, value in ({} if skipped else row).items():
                if value is not None:
                    self.values.setdefault(key, []).append(float(value))
        self.pending = []
        return self.values

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


def train_step(job: TrainingJob, step: int, model, estimator) -> dict:
    """One update of the model (and the estimator's own parameters), left undone on the device if any rank's
    loss or gradient is not finite; its statistics, unread (StepAverages): the loss, the learning rate, the
    estimator's and the job's, and whether it was `skipped` with the `gradient_norm` a skipped step logs.
    `model` and `estimator` are the job's, replicated across ranks."""
    exploration = job.schedule(step)
    batch = job.batch(step)
    kept = [buffer.clone() for buffer in job.estimator.buffers()]  # what the forward pass moves (NVIL's moments)
    # bf16: the forward pass in bfloat16 (autocast); the estimator's sums (likelihoods over thousands of
    # pixels, the ELBO) in float32.
    with torch.autocast(job.device.type, dtype=torch.bfloat16, enabled=job.settings.precision == "bf16"):
        trace = job.estimator.draw(model, batch, exploration, step)
    loss, statistics = estimator(model, trace)
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


def evaluate(job: TrainingJob, run: Run, step: int, elapsed: float) -> dict:
    """The held-out metrics of all ranks' shares, combined; logged by rank 0."""
    job.model.eval()
    metrics = {"step": step, **combine(gather_objects(job.evaluate(), job.shard))}
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
        step, elapsed = run.start(state, job)
        saved = (state or {}).get("progress", {})
        averages, metrics, stopped_by = StepAverages(saved.get("averages")), saved.get("metrics", {}), "steps"
        model, estimator = replicated_model(job.model, shard, job.device), replicate(job.estimator, shard, job.device)
        budget = t.minutes * 60 if t.minutes else math.inf
        started, agreed = time.perf_counter() - elapsed, elapsed
        with tqdm(total=t.steps, initial=step, disable=not progress or not shard.leads, unit="step",
                  dynamic_ncols=True) as bar:
            while step < t.steps:
                if shard.world == 1 or step % STOP_AGREEMENT_EVERY == 0:  # ranks agree every few steps
                    reason, agreed = should_stop(requested, elapsed, budget, shard)
                    if reason:
                        stopped_by = reason
                        break
                schedule_learning_rates(job.optimiser, step, max(step / t.steps, agreed / budget), t)
                averages.add(step, train_step(job, step, model, estimator))
                step += 1
                elapsed = time.perf_counter() - started
                bar.update(1)
                if step % t.log_every == 0 or step == t.steps:
                    record = averages.pop(run)
                    run.log({"kind": "train", "step": step, "seconds": round(elapsed, 2), **record})
                    bar.set_postfix(loss=f"{record.get('loss', math.nan):.1f}")
                if step % t.eval_every == 0:
                    metrics = evaluate(job, run, step, elapsed)
                    bar.set_description(job.describe(metrics))
                if step % t.checkpoint_every == 0:
                    run.save(job, step, elapsed, {"metrics": metrics, "averages": averages.read(run)})
        # A signal stops at once; the budget's end is evaluated, as the last step is.
        if stopped_by in ("steps", "minutes") and metrics.get("step") != step:
            metrics = evaluate(job, run, step, elapsed)
        run.save(job, step, elapsed, {"metrics": metrics, "averages": averages.read(run)})
        summary = {**metrics, "step": step, "seconds": round(elapsed, 1), "stopped_by": requested["signal"] or stopped_by,
                   "skipped_steps": run.skipped_steps, "checkpoint": str(run.checkpoint)}
        if shard.leads:
            write_json(run.directory / "train_summary.json", summary, "training summary")
    return summary


def saved_config(directory: str | Path, from_dict, kind: str):
    """The config of the run in `directory`, from its checkpoint: the base that a resume's flags change."""
    path = Path(directory) / CHECKPOINT_NAME
    if not path.is_file():
        raise AirsceneError(f"nothing to resume: {path} does not exist; drop --resume to start a new run")
    return checkpoint_config(read_checkpoint(path, kind=kind), path, from_dict)
