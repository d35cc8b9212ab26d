"""The run directory: what a training run writes and reads back (config.json, metrics.jsonl and tensorboard/,
checkpoint.pt, train_summary.json, figures), locked against a second writer, written only by rank 0 and only in
a folder airscene made for a run. What goes into a checkpoint, and when, is the training loop's (runs.py)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from airscene.checkpoint import (CHECKPOINT_NAME, RUN_MARKER, checkpoint_config, made_before_the_marker,
                                 read_checkpoint, save_checkpoint)
from airscene.config import RESUMABLE, resumable_flags
from airscene.distributed import Shard
from airscene.errors import AirsceneError
from airscene.settings import differences
from airscene.storage import (append_line, as_path, check_writable, claim_directory, json_ready, lock_directory,
                              write_failure, write_json, write_text)

# Taken from the data at the start of training; a checkpoint written before they existed holds None for them.
FROM_THE_DATA = ("model.intensity", "model.image_scale")


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
            remove_file(leftover)
        events = self.directory / "tensorboard"
        if events.is_symlink() or (events.exists() and not events.is_dir()):
            remove_file(events)  # never write through a link someone else made
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
                                f"resume with the run's own settings (only {resumable_flags()} may change), or start "
                                "a new run with another --out")
        if requested.train.steps < state["step"]:
            raise AirsceneError(f"the run is at step {state['step']}, past --steps {requested.train.steps}: resume with "
                                f"--steps above {state['step']}, or evaluate the run as it is")
        if state.get("data") != data_digest:
            raise AirsceneError(f"the data set {getattr(requested, 'data', '')} is not the one the checkpoint was trained on "
                                "(its splits' digests differ): resume on that data set, or start a new run")
        return state

    def begin(self, config: dict) -> None:
        """A new run: config.json written, and what a run that died before its first checkpoint left cleared."""
        if self.shard.leads:
            write_json(self.directory / "config.json", config, "run config")
            remove_file(self.metrics_path)
            shutil.rmtree(self.directory / "tensorboard", ignore_errors=True)

    def keep_metrics_until(self, step: int) -> None:
        """A resumed run: the records past the checkpoint's step dropped (a run that died wrote them after it),
        in metrics.jsonl and in TensorBoard."""
        if not self.shard.leads:
            return
        records = [record for record in read_metrics(self.directory) if record["step"] <= step]
        write_text(self.metrics_path, "".join(json.dumps(record) + "\n" for record in records), "metrics")
        self.tensorboard_purge_step = step + 1

    def save(self, state: dict) -> None:
        """The checkpoint, written atomically (rank 0)."""
        if self.shard.leads:
            save_checkpoint(self.checkpoint, state)

    def kept(self) -> str:
        """What is safe on disk, for an error that stops the run."""
        return (f"the last good checkpoint {self.checkpoint} is intact" if self.checkpoint.is_file()
                else "no checkpoint had been written yet")

    def log(self, record: dict) -> None:
        """One record to metrics.jsonl (NaN written as null) and its numbers to TensorBoard (rank 0)."""
        if not self.shard.leads:
            return
        record = json_ready(record)
        kept = self.kept()
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


def claim_run_directory(directory: Path) -> None:
    """A run writes (and clears what a died run left) only in a folder airscene made for a run, a new or empty
    one, or a run directory from before the marker (checkpoint.made_before_the_marker)."""
    claim_directory(directory, RUN_MARKER, "run directory", lambda entries: made_before_the_marker(directory, entries))


def remove_file(path: Path) -> None:
    """Remove a file or link at `path` (a link's target is untouched); nothing if there is none."""
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as error:
        raise AirsceneError(f"cannot remove {path} ({error.strerror}): remove it yourself, or choose another --out") from None


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


def saved_config(directory: str | Path, from_dict, kind: str):
    """The config of the run in `directory`, from its checkpoint: the base that a resume's flags change."""
    path = Path(directory) / CHECKPOINT_NAME
    if not path.is_file():
        raise AirsceneError(f"nothing to resume: {path} does not exist; drop --resume to start a new run")
    return checkpoint_config(read_checkpoint(path, kind=kind), path, from_dict)
