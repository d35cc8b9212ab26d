"""Checkpoints: config + weights + optimiser + RNG state, written atomically, read with clear errors."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from airscene.config import Config
from airscene.errors import AirsceneError

CHECKPOINT_FORMAT = 1
CHECKPOINT_NAME = "checkpoint.pt"


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Write to a temporary file, flush it to disk, then rename: a kill at any moment leaves either the
    previous checkpoint or the new one, never a half-written file."""
    path = Path(path)
    temporary = path.with_name(path.name + ".partial")
    try:
        with open(temporary, "wb") as handle:
            torch.save({"format": CHECKPOINT_FORMAT, **state}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise AirsceneError(f"cannot write checkpoint {path} ({error.strerror}): free disk space or choose a "
                            "writable run directory; the previous checkpoint is intact") from None


def read_checkpoint(path: str | Path) -> dict:
    """The saved state of a run directory's (or a file's) checkpoint, with one-line errors for every way
    it can be missing, truncated or foreign."""
    path = Path(path)
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
    return state


def load_checkpoint(path: str | Path) -> tuple[dict, Config]:
    """The saved state of an AIR run and its validated Config."""
    state = read_checkpoint(path)
    if "graphics" in state:
        raise AirsceneError(f"checkpoint {path} is an inverse-graphics run: use `airscene graphics` commands on it")
    return state, Config.from_dict(state["config"]).validate()
