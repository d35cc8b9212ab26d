"""Scene generators: Multi-MNIST (non-overlapping digits, as in the paper) and overlapping sprites."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from airscene.data.sources import DigitPool
from airscene.errors import AirsceneError

SPRITE_SHAPES = ("square", "triangle", "disc")
PLACEMENT_CANDIDATES = 64  # positions tried at once per object
PLACEMENT_ROUNDS = 20  # rounds of candidates before the whole scene is drawn again


@dataclass
class SceneSet:
    """Images with per-object ground truth; object arrays are padded with -1 to K = the largest count."""

    images: np.ndarray  # (M, H, W) or (M, H, W, 3) uint8
    counts: np.ndarray  # (M,) int64
    boxes: np.ndarray  # (M, K, 4) int64: x0, y0, x1, y1 in pixels, half-open, of each object's ink
    labels: np.ndarray  # (M, K) int64: digit class or sprite shape
    sources: np.ndarray  # (M, K) int64: index of the digit in its pool (-1 for sprites)

    def __len__(self) -> int:
        return len(self.counts)


def _empty_scene_set(number: int, height: int, width: int, max_count: int, channels: int = 1) -> SceneSet:
    shape = (number, height, width) if channels == 1 else (number, height, width, channels)
    pad = np.full((number, max_count), -1, dtype=np.int64)
    return SceneSet(np.zeros(shape, np.uint8), np.zeros(number, np.int64),
                    np.full((number, max_count, 4), -1, dtype=np.int64), pad.copy(), pad.copy())


def _check_counts(counts: tuple[int, ...]) -> None:
    if not counts or any(isinstance(c, bool) or not isinstance(c, (int, np.integer)) or not 0 <= c <= 1000 for c in counts):
        raise AirsceneError(f"count set {counts} is invalid: give object counts from 0 to 1000 such as 0,1,2")


def ink_box(image: np.ndarray) -> tuple[int, int, int, int]:
    """Half-open pixel box (x0, y0, x1, y1) around the non-zero pixels of an (h, w) image."""
    rows = np.flatnonzero(image.any(axis=1))
    columns = np.flatnonzero(image.any(axis=0))
    if len(rows) == 0:
        return 0, 0, 0, 0
    return int(columns[0]), int(rows[0]), int(columns[-1]) + 1, int(rows[-1]) + 1


def _boxes_overlap(candidates: np.ndarray, placed: list[np.ndarray]) -> np.ndarray:
    """(P,) bool: does each of the (P, 4) candidate boxes overlap any placed box."""
    overlap = np.zeros(len(candidates), dtype=bool)
    for box in placed:
        overlap |= ((candidates[:, 0] < box[2]) & (box[0] < candidates[:, 2])
                    & (candidates[:, 1] < box[3]) & (box[1] < candidates[:, 3]))
    return overlap


def _scaled_digit(digit: np.ndarray, scale_range: tuple[float, float] | None, rng: np.random.Generator) -> np.ndarray:
    if scale_range is None:
        return digit
    from scipy.ndimage import zoom

    factor = rng.uniform(*scale_range)
    return np.clip(zoom(digit.astype(np.float32), factor, order=1), 0, 255).round().astype(np.uint8)


def multi_mnist(pool: DigitPool, number: int, counts: tuple[int, ...] = (0, 1, 2), size: int = 50,
                seed: int = 0, scale_range: tuple[float, float] | None = None, progress: bool = True) -> SceneSet:
    """Canvases of size x size holding a count drawn uniformly from `counts` of digits whose ink boxes
    do not overlap; each digit's whole patch lies inside the canvas."""
    _check_counts(counts)
    if scale_range is not None and not (len(scale_range) == 2 and all(np.isfinite(scale_range))
                                        and 0 < scale_range[0] <= scale_range[1] <= 10):
        raise AirsceneError(f"--scale-range {scale_range} is invalid: give MIN,MAX with 0 < MIN <= MAX <= 10")
    digit_height, digit_width = pool.images.shape[1:]
    largest = max(digit_height, digit_width) * (scale_range[1] if scale_range else 1.0)
    if largest > size:
        raise AirsceneError(f"canvas size {size} is smaller than the digits ({largest:.0f} pixels): use --size >= {largest:.0f}")
    rng = np.random.default_rng(seed)
    scenes = _empty_scene_set(number, size, size, max(counts))
    scene_counts = rng.choice(np.asarray(counts, dtype=np.int64), size=number)
    for index in tqdm(range(number), desc="multi-mnist", unit="scene", disable=not progress, mininterval=0.5):
        count = int(scene_counts[index])
        for _attempt in range(1000):
            placed = _place_digits(pool, count, size, scale_range, rng)
            if placed is not None:
                break
        else:
            raise AirsceneError(f"cannot fit {count} non-overlapping digits on a {size}x{size} canvas: "
                                "use a larger --size or smaller counts")
        canvas = scenes.images[index]
        for slot, (source, digit, (x, y), box) in enumerate(placed):
            patch = canvas[y:y + digit.shape[0], x:x + digit.shape[1]]
            np.maximum(patch, digit, out=patch)
            scenes.boxes[index, slot] = box
            scenes.labels[index, slot] = pool.labels[source]
            scenes.sources[index, slot] = source
        scenes.counts[index] = count
    return scenes


def _place_digits(pool: DigitPool, count: int, size: int, scale_range: tuple[float, float] | None,
                  rng: np.random.Generator) -> list | None:
    """Digits and positions with disjoint ink boxes, or None if this draw does not fit."""
    placed, boxes = [], []
    for source in rng.integers(len(pool), size=count):
        digit = _scaled_digit(pool.images[source], scale_range, rng)
        ink = np.asarray(ink_box(digit))
        for _round in range(PLACEMENT_ROUNDS):
            corners = rng.integers(0, [size - digit.shape[1] + 1, size - digit.shape[0] + 1],
                                   size=(PLACEMENT_CANDIDATES, 2))  # (P, 2): x, y of the patch
            candidates = ink[None, :] + np.concatenate([corners, corners], axis=1)  # (P, 4)
            free = np.flatnonzero(~_boxes_overlap(candidates, boxes))
            if len(free):
                choice = free[0]
                boxes.append(candidates[choice])
                placed.append((int(source), digit, tuple(int(v) for v in corners[choice]), candidates[choice]))
                break
        else:
            return None
    return placed


def _shape_mask(shape: str, side: int) -> np.ndarray:
    """(side, side) bool mask of a square, an upward triangle or a disc filling its box."""
    centres = np.arange(side) + 0.5
    y, x = np.meshgrid(centres, centres, indexing="ij")
    if shape == "square":
        return np.ones((side, side), dtype=bool)
    if shape == "disc":
        radius = side / 2
        return (x - radius) ** 2 + (y - radius) ** 2 <= radius ** 2
    return np.abs(x - side / 2) <= y / 2 + 0.5  # widens linearly from the apex (top row) to the base


def sprites(number: int, counts: tuple[int, ...] = (0, 1, 2), size: int = 50, seed: int = 0,
            side_range: tuple[int, int] = (10, 20), colour: bool = False, progress: bool = True) -> SceneSet:
    """Squares, triangles and discs of random size, brightness (or colour) and position; later shapes
    occlude earlier ones (the paper's appendix H). Boxes are each shape's whole extent."""
    _check_counts(counts)
    if len(side_range) != 2:
        raise AirsceneError(f"sprite side range {side_range} is not MIN,MAX: give two pixel sizes, e.g. 10,20")
    low, high = side_range
    if not 1 <= low <= high <= size:
        raise AirsceneError(f"sprite side range {side_range} does not fit a {size}-pixel canvas: use 1 <= min <= max <= size")
    rng = np.random.default_rng(seed)
    channels = 3 if colour else 1
    scenes = _empty_scene_set(number, size, size, max(counts), channels)
    scene_counts = rng.choice(np.asarray(counts, dtype=np.int64), size=number)
    for index in tqdm(range(number), desc="sprites", unit="scene", disable=not progress, mininterval=0.5):
        canvas = scenes.images[index]
        for slot in range(int(scene_counts[index])):
            kind = int(rng.integers(len(SPRITE_SHAPES)))
            side = int(rng.integers(low, high + 1))
            x, y = (int(v) for v in rng.integers(0, size - side + 1, size=2))
            mask = _shape_mask(SPRITE_SHAPES[kind], side)
            ink = rng.integers(96, 256, size=channels).astype(np.uint8)
            region = canvas[y:y + side, x:x + side]
            region[mask] = ink if colour else ink[0]
            scenes.boxes[index, slot] = (x, y, x + side, y + side)
            scenes.labels[index, slot] = kind
        scenes.counts[index] = scene_counts[index]
    return scenes
