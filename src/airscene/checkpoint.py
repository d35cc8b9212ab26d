"""Checkpoints: config + weights + optimiser + RNG state, written atomically with a digest of their content,
read with clear errors (a truncated, foreign or damaged file is refused, never half-loaded)."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import torch

from airscene.config import Config
from airscene.errors import AirsceneError
from airscene.storage import as_path, check_writable, holds_marker, write_file

CHECKPOINT_FORMAT = 2
CHECKPOINT_NAME = "checkpoint.pt"
RUN_MARKER = ".airscene-run"  # in every run directory airscene made: what makes a folder plainly its own


def resumable(directory: str | Path) -> bool:
    """The one resume rule of the commands that resume on their own (`airscene run`, `train --seeds`): a run
    directory holding a checkpoint is continued, any other is started."""
    return (Path(directory) / CHECKPOINT_NAME).is_file()
KINDS = ("air", "graphics")


def _feed(digest, value) -> None:
    """Hash a nested state (dicts, lists, tensors, numbers, strings) by structure and content."""
    if isinstance(value, dict):
        digest.update(b"{")
        for key in sorted(value, key=str):
            digest.update(repr(key).encode())
            _feed(digest, value[key])
        digest.update(b"}")
    elif isinstance(value, (list, tuple)):
        digest.update(b"[")
        for item in value:
            _feed(digest, item)
        digest.update(b"]")
    elif isinstance(value, torch.Tensor):
        tensor = value.detach().cpu().contiguous()
        digest.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    elif isinstance(value, int) and value.bit_length() > 64:
        digest.update(hex(value).encode())  # repr refuses integers of over 4,300 digits
    else:
        digest.update(repr(value).encode())


def content_digest(state: dict) -> str:
    """SHA-256 of everything a checkpoint holds but its digest."""
    digest = hashlib.sha256()
    _feed(digest, {key: value for key, value in state.items() if key != "digest"})
    return digest.hexdigest()


MAX_STEP = 10**9  # as TrainConfig.steps
MAX_DEPTH = 12  # a run's state nests 5 deep (the optimiser's per-parameter state); deeper is not a run's


def _depth_and_layouts(value, depth: int = 0) -> tuple[int, bool]:
    """How deep `value` nests (stopping past MAX_DEPTH), and whether every tensor in it is dense."""
    if depth > MAX_DEPTH:
        return depth, True
    if isinstance(value, torch.Tensor):
        return depth, value.layout == torch.strided
    items = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else ()
    deepest, dense = depth, True
    for item in items:
        below, ok = _depth_and_layouts(item, depth + 1)
        deepest, dense = max(deepest, below), dense and ok
    return deepest, dense


def malformed(state: dict) -> str | None:
    """What is wrong with a checkpoint's parts, or None: every part a run writes, of the right type, and
    weights that are numbers."""
    if state.get("kind") not in KINDS:
        return "its kind is unknown"
    expected = {"config": dict, "model": dict, "estimator": dict, "optimizer": dict, "rng": list, "step": int,
                "elapsed_seconds": (int, float)}
    for name, kind in expected.items():
        if not isinstance(state.get(name), kind) or isinstance(state.get(name), bool):
            return f"its {name} is missing or not a {kind.__name__ if isinstance(kind, type) else 'number'}"
    depth, dense = _depth_and_layouts(state)
    if depth > MAX_DEPTH or not dense:
        return "it nests deeper than a run's state, or holds sparse tensors"
    progress = state.get("progress", {})
    if not (isinstance(progress, dict) and isinstance(progress.get("metrics", {}), dict)
            and isinstance(progress.get("averages", {}), dict)
            and all(isinstance(values, list) and all(isinstance(value, (int, float)) for value in values)
                    for values in progress.get("averages", {}).values())):
        return "its progress is not the metrics and running means a run saves"
    if not (0 <= state["step"] <= MAX_STEP and math.isfinite(state["elapsed_seconds"]) and state["elapsed_seconds"] >= 0):
        return "its step or elapsed time is out of range"
    for part in ("model", "estimator"):
        for name, tensor in state[part].items():
            if not isinstance(tensor, torch.Tensor) or tensor.layout != torch.strided:
                return f"its {part} entry {name} is not a dense tensor"
            if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                return f"its {part} entry {name} holds non-finite numbers"
    groups = state["optimizer"].get("param_groups", [])
    if not isinstance(groups, list) or not all(isinstance(group, dict) and isinstance(group.get("lr"), (int, float))
                                               and math.isfinite(group["lr"]) and group["lr"] >= 0 for group in groups):
        return "its optimiser's learning rates are not finite numbers"
    if not {"state", "param_groups"} <= set(state["optimizer"]) or not all(
            isinstance(generator, dict) and isinstance(generator.get("cpu"), torch.Tensor) for generator in state["rng"]):
        return "its optimiser or random state is malformed"
    return None


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Atomic: a kill or a full disk at any moment leaves either the previous checkpoint or the new one."""
    state = {"format": CHECKPOINT_FORMAT, **state}
    state["digest"] = content_digest(state)
    write_file(path, lambda handle: torch.save(state, handle), "checkpoint",
               kept="the previous checkpoint is intact" if Path(path).is_file() else "no checkpoint was written")


def read_checkpoint(path: str | Path, kind: str | None = None) -> dict:
    """The saved state of a run directory's (or a file's) checkpoint, with one-line errors for every way
    it can be missing, truncated, damaged or foreign; `kind` ("air", "graphics") if only one will do."""
    path = as_path(path, "checkpoint")
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise AirsceneError(f"checkpoint {path} does not exist: give a run directory or its checkpoint.pt")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for truncated or foreign files
        raise AirsceneError(f"checkpoint {path} is truncated or not an airscene checkpoint "
                            f"({type(error).__name__}): resume from an intact one or retrain") from None
    if not isinstance(state, dict) or "config" not in state or "model" not in state:
        raise AirsceneError(f"checkpoint {path} is not an airscene checkpoint: give the checkpoint.pt of a run")
    if state.get("format") != CHECKPOINT_FORMAT:
        raise AirsceneError(f"checkpoint {path} has format {state.get('format')}, this airscene reads "
                            f"{CHECKPOINT_FORMAT}: use the airscene version that wrote it, or retrain")
    try:
        intact = state.get("digest") == content_digest(state)
    except (RuntimeError, RecursionError, TypeError, ValueError, NotImplementedError):  # sparse or absurdly nested parts
        intact = False
    if not intact:
        raise AirsceneError(f"checkpoint {path} is damaged: its content does not match the digest it was saved with; "
                            "restore it from a copy or retrain")
    problem = malformed(state)
    if problem:
        raise AirsceneError(f"checkpoint {path} is damaged ({problem}): restore it from a copy or retrain")
    if kind is not None and state["kind"] != kind:
        command = "`airscene graphics` commands" if state["kind"] == "graphics" else "the AIR commands (eval, infer, viz)"
        raise AirsceneError(f"checkpoint {path} is an {'inverse-graphics' if state['kind'] == 'graphics' else 'AIR'} "
                            f"run: use {command} on it")
    return state


def checkpoint_config(state: dict, path: str | Path, from_dict):
    """A checkpoint's config, validated by `from_dict` (Config.from_dict, GraphicsConfig.from_dict), its
    errors naming the checkpoint."""
    try:
        return from_dict(state["config"])
    except AirsceneError as error:
        raise AirsceneError(f"checkpoint {path}: {error}") from None


def load_checkpoint(path: str | Path) -> tuple[dict, Config]:
    """The saved state of an AIR run and its validated Config."""
    state = read_checkpoint(path, kind="air")
    return state, checkpoint_config(state, path, Config.from_dict)


def writable_run(run: str | Path) -> Path:
    """The directory of a run given as the directory or its checkpoint, checked to be a run directory airscene
    made and writable (and not full) before a command writes its results into it; nothing is created for a path
    that does not exist."""
    run = as_path(run, "run")
    if not run.exists():
        raise AirsceneError(f"run {run} does not exist: give a run directory or its checkpoint.pt")
    directory = run_directory(run)
    # Whose folder it is is asked first: proving it writable leaves a temporary file in it for a moment.
    if (not holds_marker(directory, RUN_MARKER, "run directory")
            and not made_before_the_marker(directory, [entry.name for entry in directory.iterdir()])):
        raise AirsceneError(f"{directory} is not a run directory airscene made (no {RUN_MARKER}, and no config.json and "
                            "metrics.jsonl beside its checkpoint): airscene writes results only into its own run "
                            "directories; give the directory the run was trained into")
    return check_writable(directory, "run directory", create=False)


def made_before_the_marker(directory: Path, entries: list[str]) -> bool:
    """Whether `directory`, holding `entries` (names), is a run directory from an airscene before RUN_MARKER: an
    intact airscene checkpoint beside the config and the records every training writes (a checkpoint copied into a
    folder of one's own is not a run)."""
    return ({CHECKPOINT_NAME, "config.json", "metrics.jsonl"} <= set(entries)
            and bool(read_checkpoint(directory / CHECKPOINT_NAME)))


def run_directory(run: str | Path) -> Path:
    """The directory of a run given as the directory or its checkpoint."""
    run = Path(run)
    return run if run.is_dir() else run.parent
