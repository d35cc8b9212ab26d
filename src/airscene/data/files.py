"""Data set files: DIR/train.npz, DIR/test.npz and DIR/dataset.json, written byte-for-byte reproducibly
and validated on load."""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np

from airscene.data.scenes import SceneSet
from airscene.errors import AirsceneError

SPLITS = ("train", "test")
ARRAYS = ("images", "counts", "boxes", "labels", "sources")
SETTINGS_FILE = "dataset.json"


def write_arrays(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    """An .npz whose bytes depend only on the arrays (fixed zip timestamps), written atomically: a failed
    write leaves no partial file and whatever was at `path` before."""
    path = Path(path)
    temporary = path.with_name(path.name + ".partial")
    try:
        with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name, array in arrays.items():
                buffer = io.BytesIO()
                np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
                archive.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)), buffer.getvalue(),
                                 compress_type=zipfile.ZIP_DEFLATED)
        os.replace(temporary, path)
    except OSError:
        temporary.unlink(missing_ok=True)
        raise


def save_scenes(path: str | Path, scenes: SceneSet) -> None:
    write_arrays(path, {name: getattr(scenes, name) for name in ARRAYS})


def save_dataset(directory: str | Path, train: SceneSet, test: SceneSet, settings: dict) -> None:
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        save_scenes(directory / "train.npz", train)
        save_scenes(directory / "test.npz", test)
        (directory / SETTINGS_FILE).write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")
    except OSError as error:
        raise AirsceneError(f"cannot write the data set to {directory} ({error.strerror}): "
                            "choose a writable --out with free space") from None


def _fail(path: Path, problem: str) -> AirsceneError:
    return AirsceneError(f"data file {path} {problem}: regenerate it with `airscene data`")


def load_scenes(path: str | Path) -> SceneSet:
    """Read and validate one split; every inconsistency is reported in one line naming the file."""
    path = Path(path)
    if not path.is_file():
        raise AirsceneError(f"data file {path} is missing: make the data set with `airscene data multi-mnist --out {path.parent}`")
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [name for name in ARRAYS if name not in archive.files]
            if missing:
                raise _fail(path, f"lacks the arrays {', '.join(missing)}")
            arrays = {name: archive[name] for name in ARRAYS}
    except AirsceneError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise _fail(path, f"is not a readable .npz ({type(error).__name__})") from None
    scenes = SceneSet(**arrays)
    validate_scenes(scenes, path)
    return scenes


def validate_scenes(scenes: SceneSet, path: Path) -> None:
    images, counts, boxes, labels, sources = (getattr(scenes, name) for name in ARRAYS)
    if images.dtype != np.uint8 or images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] != 3):
        raise _fail(path, f"has images of dtype {images.dtype} and shape {images.shape}, "
                          "expected uint8 (M, H, W) or (M, H, W, 3)")
    number, height, width = images.shape[:3]
    for name, array, rank in (("counts", counts, 1), ("boxes", boxes, 3), ("labels", labels, 2), ("sources", sources, 2)):
        if array.dtype != np.int64 or array.ndim != rank or array.shape[0] != number:
            raise _fail(path, f"has {name} of dtype {array.dtype} and shape {array.shape}, "
                              f"expected int64 with {rank} dimensions and {number} rows")
    slots = boxes.shape[1]
    if boxes.shape[2] != 4 or labels.shape[1] != slots or sources.shape[1] != slots:
        raise _fail(path, f"has boxes {boxes.shape}, labels {labels.shape}, sources {sources.shape} that disagree")
    if number and (counts.min() < 0 or counts.max() > slots):
        raise _fail(path, f"has counts outside 0..{slots}")
    present = np.arange(slots)[None, :] < counts[:, None]  # (M, K)
    if np.any((boxes[..., 0] >= 0) != present) or np.any((labels >= 0) != present):
        raise _fail(path, "has counts that disagree with its boxes or labels")
    real = boxes[present]
    if len(real) and (np.any(real[:, 0] >= real[:, 2]) or np.any(real[:, 1] >= real[:, 3])
                      or np.any(real[:, 2] > width) or np.any(real[:, 3] > height)):
        raise _fail(path, f"has boxes that are empty or leave the {width}x{height} canvas")


def load_dataset(directory: str | Path) -> tuple[SceneSet, SceneSet, dict]:
    """Both splits and the generator settings of a data set directory."""
    directory = Path(directory)
    if not directory.is_dir():
        raise AirsceneError(f"data directory {directory} does not exist: make it with `airscene data multi-mnist --out {directory}`")
    settings_path = directory / SETTINGS_FILE
    try:
        settings = json.loads(settings_path.read_text())
    except FileNotFoundError:
        raise AirsceneError(f"data directory {directory} has no {SETTINGS_FILE}: regenerate it with `airscene data`") from None
    except json.JSONDecodeError:
        raise AirsceneError(f"{settings_path} is not valid JSON: regenerate the data set with `airscene data`") from None
    train, test = (load_scenes(directory / f"{split}.npz") for split in SPLITS)
    if train.images.shape[1:] != test.images.shape[1:]:
        raise AirsceneError(f"data directory {directory} has train images {train.images.shape[1:]} and test images "
                            f"{test.images.shape[1:]}: regenerate both splits together")
    return train, test, settings
