"""Scene generators: objects from any pool composed onto a canvas (Multi-MNIST, as in the paper, is the
MNIST pool's case), and sprites (filled shapes, overlapping or not)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from airscene.data.backgrounds import Backgrounds
from airscene.data.sources import ObjectPool
from airscene.errors import AirsceneError
from airscene.settings import shown

SPRITE_SHAPES = ("square", "triangle", "disc")
OPTIONAL_ARRAYS = ("counts", "boxes", "labels", "sources", "origins", "masks")
PLACEMENT_ATTEMPTS = 100  # scenes drawn again before a count is declared not to fit


@dataclass(kw_only=True)
class SceneSet:
    """Canvases and what is known of them. Object arrays are padded with -1 to K = the largest count; an
    unlabelled set (a user's own images) has only images, and origins where they were cut from files."""

    images: np.ndarray  # (M, H, W) or (M, H, W, 3) uint8
    counts: np.ndarray | None = None  # (M,) int64
    boxes: np.ndarray | None = None  # (M, K, 4) int64: x0, y0, x1, y1 in pixels, half-open, of each object's ink
    labels: np.ndarray | None = None  # (M, K) int64: object class (digit, sprite shape, ...)
    sources: np.ndarray | None = None  # (M, K) int64: index of the object in its pool (-1 for sprites)
    origins: np.ndarray | None = None  # (M, 3) int64: source file index, x and y of the canvas in it
    masks: np.ndarray | None = None  # (M, H, W) uint8: which object each pixel shows, 0 the background, k object k

    def __len__(self) -> int:
        return len(self.images)

    @property
    def known(self) -> tuple[str, ...]:
        """The names of the arrays this set holds besides its images."""
        return tuple(name for name in OPTIONAL_ARRAYS if getattr(self, name) is not None)

    def __getitem__(self, index) -> "SceneSet":
        return SceneSet(images=self.images[index], **{name: getattr(self, name)[index] for name in self.known})


def _labelled_scene_set(number: int, size: int, max_count: int, channels: int) -> SceneSet:
    shape = (number, size, size) if channels == 1 else (number, size, size, channels)
    pad = np.full((number, max_count), -1, dtype=np.int64)
    return SceneSet(images=np.zeros(shape, np.uint8), counts=np.zeros(number, np.int64),
                    boxes=np.full((number, max_count, 4), -1, dtype=np.int64), labels=pad.copy(), sources=pad.copy(),
                    masks=np.zeros((number, size, size), np.uint8))


def claim_pixels(owner: np.ndarray, share: np.ndarray, opacity: np.ndarray, x: int, y: int, label: int) -> None:
    """Draw object `label`'s opacity (h, w) in [0, 1] at (x, y) into a scene's instance map, in place: every
    earlier object's share of a pixel shrinks by what this one covers, and a pixel shows the object with the
    largest share of it, so occlusion is resolved as the compositing resolves it (draw_over)."""
    height, width = opacity.shape
    mine, theirs = owner[y:y + height, x:x + width], share[y:y + height, x:x + width]
    theirs *= 1 - opacity
    wins = opacity > theirs
    mine[wins], theirs[wins] = label, opacity[wins]


MAX_COUNT = 64  # objects in a scene: as many as a model's steps can be


def check_counts(counts) -> tuple[int, ...]:
    """The count set as a tuple of whole numbers from 0 to MAX_COUNT, or a one-line error."""
    try:
        counts = tuple(counts)
    except TypeError:
        counts = None
    if not counts or any(isinstance(c, (bool, np.bool_)) or not isinstance(c, (int, np.integer)) or not 0 <= c <= MAX_COUNT
                         for c in counts):
        raise AirsceneError(f"count set {shown(counts)} is invalid: give object counts from 0 to {MAX_COUNT} such as 0,1,2")
    return tuple(int(c) for c in counts)


def ink_box(image: np.ndarray) -> tuple[int, int, int, int]:
    """Half-open pixel box (x0, y0, x1, y1) around the non-zero pixels of an (h, w) or (h, w, C) image."""
    ink = image.any(axis=-1) if image.ndim == 3 else image > 0
    rows, columns = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    if len(rows) == 0:
        return 0, 0, 0, 0
    return int(columns[0]), int(rows[0]), int(columns[-1]) + 1, int(rows[-1]) + 1


def free_corners(occupied: np.ndarray, patch: tuple[int, int], ink: tuple[int, int, int, int]) -> np.ndarray:
    """(F, 2) x, y of every corner where an (h, w) patch lies inside the canvas and its ink box (x0, y0, x1,
    y1 within the patch) covers no occupied pixel: one summed-area table, so placement costs the same for
    the fortieth object as for the first."""
    size = occupied.shape[0]
    height, width = patch
    table = np.pad(occupied.astype(np.int32).cumsum(0).cumsum(1), ((1, 0), (1, 0)))  # (size + 1, size + 1)
    y, x = np.mgrid[0:size - height + 1, 0:size - width + 1]
    x0, y0, x1, y1 = x + ink[0], y + ink[1], x + ink[2], y + ink[3]
    covered = table[y1, x1] - table[y0, x1] - table[y1, x0] + table[y0, x0]
    free_y, free_x = np.nonzero(covered == 0)
    return np.stack([free_x, free_y], 1)


def check_scale_range(scale_range) -> tuple[float, float]:
    try:
        low, high = (float(value) for value in scale_range)
    except (TypeError, ValueError):
        low = high = math.nan
    if not (math.isfinite(low) and math.isfinite(high) and 0.05 <= low <= high <= 10):
        raise AirsceneError(f"--scale-range {scale_range} is invalid: give MIN,MAX with 0.05 <= MIN <= MAX <= 10")
    return low, high


def check_rotation(rotation) -> float:
    """The largest turn of an object, in degrees (0: none), or a clear error."""
    if isinstance(rotation, bool) or not isinstance(rotation, (int, float)) or not 0 <= rotation <= 45:
        raise AirsceneError(f"--rotation {rotation!r} is invalid: give the largest turn of an object in degrees, "
                            "0 (none) to 45")
    return float(rotation)


def _resampled_pixels(values: np.ndarray) -> np.ndarray:
    """An object image resampled in float32 (turned, scaled) back to uint8."""
    return np.clip(values, 0, 255).round().astype(np.uint8)


def _rotated(image: np.ndarray, rotation: float, rng: np.random.Generator) -> np.ndarray:
    """The object turned by an angle drawn uniformly within +-rotation degrees, in its own image (what turns
    out of it is cut: a digit, in the middle of its 28 x 28 image, stays whole up to about 30 degrees); a
    variation of the handwriting that the pool alone does not have."""
    if rotation == 0:
        return image
    from scipy.ndimage import rotate

    return _resampled_pixels(rotate(image.astype(np.float32), rng.uniform(-rotation, rotation), axes=(1, 0),
                                    reshape=False, order=1))


def _scaled(image: np.ndarray, scale_range: tuple[float, float] | None, rng: np.random.Generator) -> np.ndarray:
    if scale_range is None:
        return image
    from scipy.ndimage import zoom

    factor = rng.uniform(*scale_range)
    factors = (factor, factor, 1) if image.ndim == 3 else factor
    return _resampled_pixels(zoom(image.astype(np.float32), factors, order=1))


def _place_objects(pool: ObjectPool, count: int, size: int, scale_range, overlap: bool, rotation: float,
                   rng: np.random.Generator) -> list | None:
    """(pool index, image, (x, y), ink box in the canvas) for each object, their ink boxes disjoint unless
    `overlap`; None if this draw does not fit."""
    occupied = np.zeros((size, size), dtype=bool)
    placed = []
    for source in rng.integers(len(pool), size=count):
        image = _rotated(_scaled(pool.images[source], scale_range, rng), rotation, rng)
        ink = ink_box(image)
        if ink[2] == ink[0]:  # scaled to nothing
            return None
        corners = free_corners(occupied if not overlap else np.zeros_like(occupied), image.shape[:2], ink)
        if len(corners) == 0:
            return None
        x, y = (int(v) for v in corners[rng.integers(len(corners))])
        box = np.array([x + ink[0], y + ink[1], x + ink[2], y + ink[3]])
        occupied[box[1]:box[3], box[0]:box[2]] = True
        placed.append((int(source), image, (x, y), box))
    return placed


def draw_over(canvas: np.ndarray, image: np.ndarray, x: int, y: int) -> None:
    """Composite an object (uint8, on black: its brightest channel is its opacity) over the float canvas
    (H, W, C) at (x, y), in place: a digit's ink over a background, a later object over an earlier one."""
    patch = canvas[y:y + image.shape[0], x:x + image.shape[1]]
    colour = (image[..., None] if image.ndim == 2 else image).astype(np.float32) / 255
    patch[...] = colour + (1 - colour.max(-1, keepdims=True)) * patch


def compose_scenes(pool: ObjectPool, number: int, counts: tuple[int, ...] = (0, 1, 2), size: int = 50,
                   seed: int = 0, scale_range: tuple[float, float] | None = None, overlap: bool = False,
                   backgrounds: Backgrounds | None = None, rotation: float = 0.0, progress: bool = True) -> SceneSet:
    """Canvases of size x size holding a count drawn uniformly from `counts` of objects from the pool
    (each scaled by a factor from scale_range and turned by up to `rotation` degrees), each wholly inside the
    canvas, over a black canvas or one of `backgrounds`; their ink boxes do not overlap unless `overlap`, where
    a later object is drawn over an earlier one."""
    counts = check_counts(counts)
    scale_range = None if scale_range is None else check_scale_range(scale_range)
    rotation = check_rotation(rotation)
    largest = max(pool.images.shape[1:3]) * (scale_range[1] if scale_range else 1.0)
    if largest > size:
        raise AirsceneError(f"canvas size {size} is smaller than the objects ({largest:.0f} pixels): use "
                            f"--size >= {largest:.0f} or a smaller --scale-range")
    rng = np.random.default_rng(seed)
    scenes = _labelled_scene_set(number, size, max(counts), pool.channels)
    scene_counts = rng.choice(np.asarray(counts, dtype=np.int64), size=number)
    for index in tqdm(range(number), desc="scenes", unit="scene", disable=not progress, mininterval=0.5):
        count = int(scene_counts[index])
        for _attempt in range(PLACEMENT_ATTEMPTS):
            placed = _place_objects(pool, count, size, scale_range, overlap, rotation, rng)
            if placed is not None:
                break
        else:
            raise AirsceneError(f"cannot fit {count} non-overlapping objects on a {size}x{size} canvas, or the objects "
                                "vanish at this --scale-range: use a larger --size, smaller counts, or another --scale-range")
        canvas, share = _canvas(size, pool.channels, backgrounds, rng), np.zeros((size, size), np.float32)
        for slot, (source, image, (x, y), box) in enumerate(placed):
            draw_over(canvas, image, x, y)
            ink = (image if image.ndim == 2 else image.max(-1)).astype(np.float32) / 255  # its opacity, as draw_over's
            claim_pixels(scenes.masks[index], share, ink, x, y, slot + 1)
            scenes.boxes[index, slot] = box
            scenes.labels[index, slot] = pool.labels[source]
            scenes.sources[index, slot] = source
        scenes.counts[index] = count
        scenes.images[index] = _quantised(canvas)
    return scenes


def _canvas(size: int, channels: int, backgrounds: Backgrounds | None, rng: np.random.Generator) -> np.ndarray:
    """(size, size, channels) float: black, or a background drawn from `backgrounds`."""
    if backgrounds is None:
        return np.zeros((size, size, channels), np.float32)
    return np.ascontiguousarray(backgrounds.draw(size, channels, rng), dtype=np.float32)


def _quantised(canvas: np.ndarray) -> np.ndarray:
    pixels = np.clip(np.round(canvas * 255), 0, 255).astype(np.uint8)
    return pixels[..., 0] if pixels.shape[-1] == 1 else pixels


def shape_mask(shape: str, side: int) -> np.ndarray:
    """(side, side) bool mask of a square, an upward triangle or a disc filling its box."""
    centres = np.arange(side) + 0.5
    y, x = np.meshgrid(centres, centres, indexing="ij")
    if shape == "square":
        return np.ones((side, side), dtype=bool)
    if shape == "disc":
        radius = side / 2
        return (x - radius) ** 2 + (y - radius) ** 2 <= radius ** 2
    return np.abs(x - side / 2) <= y / 2 + 0.5  # widens linearly from the apex (top row) to the base


def check_sprite_settings(side_range, size: int, colour, overlap, min_visible=0.0) -> tuple[int, int]:
    """The sprites' side range as whole pixels that fit the canvas, colour and overlap as booleans, the
    visible fraction in [0, 1]."""
    try:
        low, high = side_range
    except (TypeError, ValueError):
        raise AirsceneError(f"sprite side range {side_range} is not MIN,MAX: give two pixel sizes, e.g. 10,20") from None
    if any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in (low, high)):
        raise AirsceneError(f"sprite side range {side_range} must be whole pixels, e.g. 10,20")
    for name, value in (("colour", colour), ("overlap", overlap)):
        if not isinstance(value, bool):
            raise AirsceneError(f"{name} is {value!r}: give True or False")
    if isinstance(min_visible, bool) or not isinstance(min_visible, (int, float)) or not 0 <= min_visible <= 1:
        raise AirsceneError(f"--min-visible {min_visible!r} is not a fraction: give a number from 0 to 1, e.g. 0.5")
    if not 1 <= low <= high <= size:
        raise AirsceneError(f"sprite side range {side_range} does not fit a {size}-pixel canvas: use 1 <= min <= max <= size")
    return int(low), int(high)


def sprites(number: int, counts: tuple[int, ...] = (0, 1, 2), size: int = 50, seed: int = 0,
            side_range: tuple[int, int] = (10, 20), colour: bool = False, overlap: bool = True,
            min_visible: float = 0.0, backgrounds: Backgrounds | None = None, progress: bool = True) -> SceneSet:
    """Squares, triangles and discs of random size, brightness (or colour) and position, over black or one
    of `backgrounds`. With overlap, later shapes occlude earlier ones (the paper's appendix H), each left
    with at least `min_visible` of its area in view; without, their boxes are disjoint. Boxes are each
    shape's whole extent."""
    counts = check_counts(counts)
    low, high = check_sprite_settings(side_range, size, colour, overlap, min_visible)
    rng = np.random.default_rng(seed)
    channels = 3 if colour else 1
    scenes = _labelled_scene_set(number, size, max(counts), channels)
    scene_counts = rng.choice(np.asarray(counts, dtype=np.int64), size=number)
    for index in tqdm(range(number), desc="sprites", unit="scene", disable=not progress, mininterval=0.5):
        for _attempt in range(PLACEMENT_ATTEMPTS):
            drawn = _draw_sprites(int(scene_counts[index]), size, (low, high), channels, overlap, min_visible, rng)
            if drawn is not None:
                break
        else:
            raise AirsceneError(f"cannot fit {scene_counts[index]} sprites on a {size}x{size} canvas, each "
                                f"{'disjoint' if not overlap else f'at least {min_visible:g} visible'}: use a larger "
                                "--size, smaller counts, a smaller --side-range or a lower --min-visible")
        canvas, share = _canvas(size, channels, backgrounds, rng), np.zeros((size, size), np.float32)
        for slot, (kind, (x, y, side), ink) in enumerate(drawn):
            shape = shape_mask(SPRITE_SHAPES[kind], side)
            canvas[y:y + side, x:x + side][shape] = ink / 255
            claim_pixels(scenes.masks[index], share, shape.astype(np.float32), x, y, slot + 1)
            scenes.boxes[index, slot] = (x, y, x + side, y + side)
            scenes.labels[index, slot] = kind
        scenes.counts[index] = scene_counts[index]
        scenes.images[index] = _quantised(canvas)
    return scenes


def _draw_sprites(count: int, size: int, sides: tuple[int, int], channels: int, overlap: bool,
                  min_visible: float, rng: np.random.Generator) -> list | None:
    """(shape, (x, y, side), colour) for each sprite, boxes disjoint unless `overlap`, each at least
    `min_visible` in view under the later ones; None if this draw does not fit."""
    occupied = np.zeros((size, size), dtype=bool)
    drawn = []
    for _ in range(count):
        kind = int(rng.integers(len(SPRITE_SHAPES)))
        side = int(rng.integers(sides[0], sides[1] + 1))
        if overlap:
            x, y = (int(v) for v in rng.integers(0, size - side + 1, size=2))
        else:
            corners = free_corners(occupied, (side, side), (0, 0, side, side))
            if len(corners) == 0:
                return None
            x, y = (int(v) for v in corners[rng.integers(len(corners))])
            occupied[y:y + side, x:x + side] = True
        drawn.append((kind, (x, y, side), rng.integers(96, 256, size=channels).astype(np.uint8)))
    if overlap and min_visible > 0 and min(visible_fractions(drawn, size), default=1.0) < min_visible:
        return None
    return drawn


def visible_fractions(drawn: list, size: int) -> list[float]:
    """The share of each sprite's area left in view once the sprites after it are drawn over it."""
    owner = np.full((size, size), -1)
    for slot, (kind, (x, y, side), _ink) in enumerate(drawn):
        owner[y:y + side, x:x + side][shape_mask(SPRITE_SHAPES[kind], side)] = slot
    return [float((owner == slot).sum() / shape_mask(SPRITE_SHAPES[kind], side).sum())
            for slot, (kind, (_x, _y, side), _ink) in enumerate(drawn)]


# The seven tetrominoes in each of their distinct orientations (19 in all), as (row, column) blocks.
TETROMINO_BASES = {"I": ((0, 0), (0, 1), (0, 2), (0, 3)), "O": ((0, 0), (0, 1), (1, 0), (1, 1)),
                   "T": ((0, 0), (0, 1), (0, 2), (1, 1)), "S": ((0, 1), (0, 2), (1, 0), (1, 1)),
                   "Z": ((0, 0), (0, 1), (1, 1), (1, 2)), "J": ((0, 0), (1, 0), (1, 1), (1, 2)),
                   "L": ((0, 2), (1, 0), (1, 1), (1, 2))}
TETROMINO_COLOURS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [255, 0, 255], [0, 255, 255]],
                             np.uint8)


def _turned(blocks: tuple) -> tuple:
    """The blocks a quarter turn on, moved to the top left, in a canonical order."""
    turned = [(column, -row) for row, column in blocks]
    top, left = min(row for row, _ in turned), min(column for _, column in turned)
    return tuple(sorted((row - top, column - left) for row, column in turned))


def tetromino_shapes() -> list[np.ndarray]:
    """The 19 distinct orientations of the seven tetrominoes, each a bool mask of its blocks (rows, columns)."""
    shapes: list[tuple] = []
    for blocks in TETROMINO_BASES.values():
        turned = tuple(sorted(blocks))
        for _ in range(4):
            if turned not in shapes:
                shapes.append(turned)
            turned = _turned(turned)
    masks = []
    for blocks in shapes:
        mask = np.zeros((max(r for r, _ in blocks) + 1, max(c for _, c in blocks) + 1), bool)
        mask[tuple(zip(*blocks))] = True
        masks.append(mask)
    return masks


def tetrominoes(number: int, seed: int = 0, size: int = 35, block: int = 5, count: int = 3,
                progress: bool = True) -> SceneSet:
    """A look-alike of the Tetrominoes of DeepMind's multi_object_datasets: `count` tetrominoes of `block`-pixel
    blocks, each one of the 19 shape-orientations in one of 6 colours, on black, their boxes disjoint (the
    original's pieces may interlock). labels: the shape-orientation."""
    shapes = [np.kron(mask, np.ones((block, block), bool)) for mask in tetromino_shapes()]
    rng = np.random.default_rng(seed)
    scenes = _labelled_scene_set(number, size, count, 3)
    for index in tqdm(range(number), desc="tetrominoes", unit="scene", disable=not progress, mininterval=0.5):
        for _attempt in range(PLACEMENT_ATTEMPTS):
            occupied, placed = np.zeros((size, size), bool), []
            for _ in range(count):
                kind = int(rng.integers(len(shapes)))
                height, width = shapes[kind].shape
                corners = free_corners(occupied, (height, width), (0, 0, width, height))
                if not len(corners):
                    break
                x, y = (int(v) for v in corners[rng.integers(len(corners))])
                occupied[y:y + height, x:x + width] = True
                placed.append((kind, x, y))
            if len(placed) == count:
                break
        else:
            raise AirsceneError(f"cannot fit {count} tetrominoes of {block}-pixel blocks on a {size}x{size} canvas: use "
                                "a larger --size")
        for slot, (kind, x, y) in enumerate(placed):
            height, width = shapes[kind].shape
            scenes.images[index, y:y + height, x:x + width][shapes[kind]] = TETROMINO_COLOURS[rng.integers(6)]
            scenes.masks[index, y:y + height, x:x + width][shapes[kind]] = slot + 1
            scenes.boxes[index, slot] = (x, y, x + width, y + height)
            scenes.labels[index, slot] = kind
        scenes.counts[index] = count
    return scenes


DSPRITE_SHAPES = ("square", "ellipse", "heart")


def dsprite_mask(shape: str, size: int, x: float, y: float, scale: float, angle: float) -> np.ndarray:
    """(size, size) bool: a dSprites shape (square, ellipse, heart) of `scale` pixels, centred at (x, y), turned by
    `angle` radians, evaluated at the pixel centres."""
    rows, columns = np.mgrid[0:size, 0:size] + 0.5
    dx, dy = (columns - x) / scale, (rows - y) / scale
    u, v = np.cos(angle) * dx + np.sin(angle) * dy, -np.sin(angle) * dx + np.cos(angle) * dy
    if shape == "square":
        return (np.abs(u) <= 0.5) & (np.abs(v) <= 0.5)
    if shape == "ellipse":
        return (u / 0.5) ** 2 + (v / 0.25) ** 2 <= 1
    u, v = u * 2.4, -v * 2.4 + 0.25  # the heart curve (u^2 + v^2 - 1)^3 <= u^2 v^3, point down
    return (u ** 2 + v ** 2 - 1) ** 3 <= u ** 2 * v ** 3


def multi_dsprites(number: int, counts: tuple[int, ...] = (1, 2, 3, 4), size: int = 64, seed: int = 0,
                   background: str = "colour", min_visible: float = 0.2, progress: bool = True) -> SceneSet:
    """A look-alike of Multi-dSprites (DeepMind's multi_object_datasets): squares, ellipses and hearts of random
    colour, scale (a fifth to two fifths of the canvas), rotation and position, each drawn over the earlier ones,
    on a random uniform colour ("colour": the colored_on_colored variant) or on grey; each keeps at least
    `min_visible` of its area in view. labels: the shape."""
    counts = check_counts(counts)
    if background not in ("colour", "grey"):
        raise AirsceneError(f"background {background!r} is neither colour nor grey: give one of them")
    rng = np.random.default_rng(seed)
    scenes = _labelled_scene_set(number, size, max(counts), 3)
    scene_counts = rng.choice(np.asarray(counts, dtype=np.int64), size=number)
    for index in tqdm(range(number), desc="dsprites", unit="scene", disable=not progress, mininterval=0.5):
        for _attempt in range(PLACEMENT_ATTEMPTS):
            kinds = rng.integers(len(DSPRITE_SHAPES), size=scene_counts[index])
            scales = rng.uniform(0.2, 0.4, size=len(kinds)) * size
            centres = rng.uniform(0.15, 0.85, size=(len(kinds), 2)) * size
            shapes = [dsprite_mask(DSPRITE_SHAPES[kind], size, x, y, scale, rng.uniform(0, 2 * np.pi))
                      for kind, scale, (x, y) in zip(kinds, scales, centres)]
            owner, share = np.zeros((size, size), np.uint8), np.zeros((size, size), np.float32)
            for slot, shape in enumerate(shapes):
                claim_pixels(owner, share, shape.astype(np.float32), 0, 0, slot + 1)
            if all(shape.any() and (owner == slot + 1).sum() >= min_visible * shape.sum() for slot, shape in
                   enumerate(shapes)):
                break
        else:
            raise AirsceneError(f"cannot draw {scene_counts[index]} sprites each at least {min_visible:g} in view: "
                                "lower the counts")
        tone = rng.integers(0, 256, size=3) if background == "colour" else np.full(3, 128)
        scenes.images[index] = tone
        for slot, (kind, shape) in enumerate(zip(kinds, shapes)):
            scenes.images[index][owner == slot + 1] = rng.integers(0, 256, size=3)
            rows, columns = np.nonzero(shape)
            scenes.boxes[index, slot] = (columns.min(), rows.min(), columns.max() + 1, rows.max() + 1)
            scenes.labels[index, slot] = kind
        scenes.masks[index] = owner
        scenes.counts[index] = len(shapes)
    return scenes
