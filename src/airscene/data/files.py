"""Data set files: DIR/train.npz, DIR/test.npz and DIR/dataset.json, written byte-for-byte reproducibly
and validated on load."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
import shutil
import zipfile
from pathlib import Path
from typing import BinaryIO, Callable

import numpy as np

from airscene.data.scenes import OPTIONAL_ARRAYS, SceneSet
from airscene.errors import AirsceneError
from airscene.images import INTENSITIES
from airscene.storage import (WRITE_FAILURES, as_path, check_writable, listed, locked, ours_lock, outside, publish,
                              read_json, regular_file, write_failure, write_file, write_staged)

SPLITS = ("train", "test")
SETTINGS_FILE = "dataset.json"


def npz_writer(arrays: dict[str, np.ndarray]) -> Callable[[BinaryIO], None]:
    """Writes an .npz whose bytes depend only on the arrays (fixed zip timestamps, no pickles)."""
    def write(handle: BinaryIO) -> None:
        with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name, array in arrays.items():
                buffer = io.BytesIO()
                # np.require keeps a 0-d array 0-d (ascontiguousarray makes it 1-d, and its reader sees a list)
                np.lib.format.write_array(buffer, np.require(array, requirements="C"), allow_pickle=False)
                archive.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)), buffer.getvalue(),
                                 compress_type=zipfile.ZIP_DEFLATED)
    return write


def write_arrays(path: str | Path, arrays: dict[str, np.ndarray], what: str = "arrays") -> None:
    """An .npz, written atomically: a failed write leaves whatever was at `path` before."""
    write_file(path, npz_writer(arrays), what)


def scene_arrays(scenes: SceneSet) -> dict[str, np.ndarray]:
    """The arrays a split file holds: the images and whatever else is known of them."""
    return {"images": scenes.images, **{name: getattr(scenes, name) for name in scenes.known}}


def save_scenes(path: str | Path, scenes: SceneSet) -> None:
    write_arrays(path, scene_arrays(scenes), "data file")


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_dataset(directory: str | Path, train: SceneSet, test: SceneSet, settings: dict) -> None:
    """Replace a data set as a whole or not at all: both splits and dataset.json (which records the splits'
    SHA-256) are written in full beside their targets before any is renamed into place, dataset.json last,
    so a failed write leaves the old set, and a set mixed by a crash between the renames is refused on load."""
    directory = check_writable(directory, "data directory")
    kept = "the data set there is as it was" if (directory / SETTINGS_FILE).is_file() else "nothing was written there"
    with locked(directory, "data directory"):
        _publish_dataset(directory, train, test, settings, kept)


def _publish_dataset(directory: Path, train: SceneSet, test: SceneSet, settings: dict, kept: str) -> None:
    staged: dict[Path, Path] = {}
    try:
        for split, scenes in (("train", train), ("test", test)):
            target = directory / f"{split}.npz"
            staged[write_staged(target, npz_writer(scene_arrays(scenes)))] = target
        digests = {target.name: file_digest(temporary) for temporary, target in staged.items()}
        text = json.dumps({**settings, "files": digests}, indent=2, sort_keys=True) + "\n"
        staged[write_staged(directory / SETTINGS_FILE, lambda handle: handle.write(text.encode()))] = directory / SETTINGS_FILE
        publish(staged)
    except WRITE_FAILURES as error:
        for temporary in staged:
            temporary.unlink(missing_ok=True)
        raise write_failure(directory, "data set", error, kept) from None


def _leftover(entry: Path) -> bool:
    """What a data set's writer leaves while it works, or if killed: its lock and its temporaries."""
    return ours_lock(entry) if entry.name == ".lock" else bool(re.fullmatch(r"\..*\.partial", entry.name))


def holds_data_set(directory: Path) -> bool:
    """Whether `directory` holds an airscene data set: a dataset.json that is one's settings."""
    try:
        check_settings(read_json(directory / SETTINGS_FILE, "data set settings"), directory / SETTINGS_FILE)
    except AirsceneError:
        return False
    return True


@contextlib.contextmanager
def data_directory(directory: str | Path, force: bool = False, reads: tuple = ()):
    """The data set directory a command is about to fill, checked before any work: a new or empty folder, or
    (with `force`) one holding an airscene data set; never anyone else's folder, nor one that the command reads
    from (`reads`: its source files or folders) or that lies inside one. A folder it created is removed again
    if the work fails."""
    directory = as_path(directory, "data directory")
    if not isinstance(force, bool):
        raise AirsceneError(f"force is {force!r}: give True or False")
    outside(directory, reads, "--out")
    existed = directory.exists()
    if existed and directory.is_dir():
        entries = sorted(entry.name for entry in directory.iterdir() if not _leftover(entry))
        data_set = bool(entries) and holds_data_set(directory)
        if data_set and not force:
            raise AirsceneError(f"data directory {directory} already holds a data set: pass --force to replace it, or "
                                "choose a new --out")
        if entries and not data_set:
            raise AirsceneError(f"data directory {directory} holds files that are not an airscene data set "
                                f"({listed(entries)}): "
                                "airscene writes only into a new or empty folder, or over its own data set; choose a "
                                "new --out")
    made = directory  # the outermost folder this command creates: the data set's, or a parent of it
    while not made.parent.exists():
        made = made.parent
    check_writable(directory, "data directory")
    try:
        yield directory
    except BaseException:
        if not existed and directory.is_dir() and all(_leftover(entry) for entry in directory.iterdir()):
            shutil.rmtree(made, ignore_errors=True)
        raise


def _fail(path: Path, problem: str) -> AirsceneError:
    return AirsceneError(f"data file {path} {problem}: regenerate it with `airscene data`")


def load_scenes(path: str | Path) -> SceneSet:
    """Read and validate one split; every inconsistency is reported in one line naming the file. Only the
    images are required: a user's own images may come with no ground truth at all."""
    path = Path(path)
    if not path.exists():
        raise AirsceneError(f"data file {path} is missing: make the data set with `airscene data`")
    regular_file(path, "data file")
    try:
        with np.load(path, allow_pickle=False) as archive:
            if "images" not in archive.files:
                raise _fail(path, "lacks the array images")
            arrays = {name: archive[name] for name in ("images", *OPTIONAL_ARRAYS) if name in archive.files}
    except AirsceneError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise _fail(path, f"is not a readable .npz ({type(error).__name__})") from None
    scenes = SceneSet(**arrays)
    validate_scenes(scenes, path)
    return scenes


def validate_scenes(scenes: SceneSet, path: Path) -> None:
    images = scenes.images
    if images.dtype != np.uint8 or images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] != 3):
        raise _fail(path, f"has images of dtype {images.dtype} and shape {images.shape}, "
                          "expected uint8 (M, H, W) or (M, H, W, 3)")
    number, height, width = images.shape[:3]
    if min(height, width) < 4:
        raise _fail(path, f"has {height}x{width} images: AIR needs canvases of at least 4x4 pixels")
    ranks = {"counts": 1, "boxes": 3, "labels": 2, "sources": 2, "origins": 2}
    if scenes.masks is not None and (scenes.masks.dtype != np.uint8 or scenes.masks.shape != images.shape[:3]):
        raise _fail(path, f"has masks of dtype {scenes.masks.dtype} and shape {scenes.masks.shape}, expected uint8 "
                          f"label maps of shape {images.shape[:3]}")
    for name in (name for name in scenes.known if name != "masks"):
        array = getattr(scenes, name)
        if array.dtype != np.int64 or array.ndim != ranks[name] or array.shape[0] != number:
            raise _fail(path, f"has {name} of dtype {array.dtype} and shape {array.shape}, "
                              f"expected int64 with {ranks[name]} dimensions and {number} rows")
    if scenes.origins is not None and (scenes.origins.shape[1] != 3 or (scenes.origins < 0).any()):
        raise _fail(path, f"has origins of shape {scenes.origins.shape}, expected (M, 3) of file index, x, y >= 0")
    per_object = [name for name in ("boxes", "labels", "sources") if getattr(scenes, name) is not None]
    if per_object and scenes.counts is None:
        raise _fail(path, f"has {', '.join(per_object)} but no counts")
    if scenes.counts is not None:
        _validate_objects(scenes, path, per_object, width, height)


def _validate_objects(scenes: SceneSet, path: Path, per_object: list[str], width: int, height: int) -> None:
    counts = scenes.counts
    slots = {getattr(scenes, name).shape[1] for name in per_object}
    if len(slots) > 1 or (scenes.boxes is not None and scenes.boxes.shape[2] != 4):
        raise _fail(path, "has boxes, labels and sources of shapes that disagree: "
                          + ", ".join(f"{name} {getattr(scenes, name).shape}" for name in per_object))
    limit = slots.pop() if slots else None
    if len(counts) and (counts.min() < 0 or (limit is not None and counts.max() > limit)):
        raise _fail(path, f"has counts outside 0..{limit if limit is not None else 'N'}")
    if scenes.masks is not None and len(counts) and (scenes.masks.max((1, 2)) > counts).any():
        raise _fail(path, "has masks naming objects beyond their scenes' counts")
    if not per_object:
        return
    present = np.arange(limit)[None, :] < counts[:, None]  # (M, K)
    for name in ("boxes", "labels"):
        marks = getattr(scenes, name)
        if marks is not None and np.any(((marks[..., 0] if name == "boxes" else marks) >= 0) != present):
            raise _fail(path, f"has counts that disagree with its {name}")
    real = scenes.boxes[present] if scenes.boxes is not None else np.zeros((0, 4), np.int64)
    if len(real) and (np.any(real[:, 0] >= real[:, 2]) or np.any(real[:, 1] >= real[:, 3])
                      or np.any(real[:, :2] < 0) or np.any(real[:, 2] > width) or np.any(real[:, 3] > height)):
        raise _fail(path, f"has boxes that are empty or leave the {width}x{height} canvas")


def check_settings(settings, path: Path) -> None:
    """dataset.json must be a mapping that names the data set's kind and format (1 or 2); from format 2 on it
    records both splits' digests by their names."""
    if not isinstance(settings, dict):
        raise AirsceneError(f"{path} holds a {type(settings).__name__}, not the settings of a data set: regenerate the "
                            "data set with `airscene data`")
    files = settings.get("files", {})
    version = settings.get("format_version", 1)
    if not isinstance(settings.get("kind"), str) or isinstance(version, bool) or version not in (1, 2):
        raise AirsceneError(f"{path} does not name a data set's kind and format (1 or 2): regenerate the data set with "
                            "`airscene data`")
    intensity, scale = settings.get("intensity", "auto"), settings.get("scale")
    if intensity not in INTENSITIES or not (scale is None or (isinstance(scale, (int, float)) and not isinstance(scale, bool)
                                                              and 0.01 <= scale <= 100)):
        raise AirsceneError(f"{path} has an intensity {intensity!r} or a scale {scale!r} that no import writes: import "
                            "the images again with `airscene data import`")
    if (not isinstance(files, dict) or not set(files) <= {f"{split}.npz" for split in SPLITS}
            or not all(isinstance(v, str) for v in files.values())
            or (isinstance(version, int) and version >= 2 and set(files) != {f"{split}.npz" for split in SPLITS})):
        raise AirsceneError(f"{path} has a malformed or missing 'files' entry (the digests of train.npz and test.npz): "
                            "regenerate the data set with `airscene data`")


def load_dataset(directory: str | Path) -> tuple[SceneSet, SceneSet, dict]:
    """Both splits and the generator settings of a data set directory."""
    directory = as_path(directory, "data directory")
    if not directory.is_dir():
        raise AirsceneError(f"data directory {directory} does not exist (a relative path is read from the current "
                            f"directory): make it with `airscene data`, or give --data")
    settings_path = directory / SETTINGS_FILE
    if not settings_path.exists():
        raise AirsceneError(f"data directory {directory} has no {SETTINGS_FILE}: regenerate it with `airscene data`")
    settings = read_json(settings_path, "data set settings")
    check_settings(settings, settings_path)
    for name, digest in settings.get("files", {}).items():
        if (directory / name).is_file() and file_digest(directory / name) != digest:
            raise AirsceneError(f"data file {directory / name} is not the one {settings_path} was written with (a "
                                "damaged file, or splits of two data sets): regenerate the data set with `airscene data`")
    train, test = (load_scenes(directory / f"{split}.npz") for split in SPLITS)
    if train.images.shape[1:] != test.images.shape[1:]:
        raise AirsceneError(f"data directory {directory} has train images {train.images.shape[1:]} and test images "
                            f"{test.images.shape[1:]}: regenerate both splits together")
    return train, test, settings


def dataset_digest(directory: str | Path) -> str | None:
    """A digest of a data set's splits, as its dataset.json records them (None for sets without digests): what
    a checkpoint remembers, so that a run is never resumed on another data set of the same name."""
    files = read_json(Path(directory) / SETTINGS_FILE, "data set settings").get("files")
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest() if files else None
