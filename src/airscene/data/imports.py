"""A user's own images as a data set: a folder of image files, or an .npy / .npz array, cut or resized into
square canvases, split by source file into training and held-out images. Ground truth is optional: a CSV of
counts (and boxes) per file turns on the count metrics."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from airscene.data.files import save_dataset
from airscene.data.scenes import SceneSet
from airscene.errors import AirsceneError
from airscene.images import as_array, image_files, is_colour, quantise, read_image, to_model_layout
from airscene.storage import as_path, check_writable, regular_file

MEASURED_CANVASES = 200  # canvases the object-size suggestion looks at


@dataclass(kw_only=True)
class Truth:
    """What a labels CSV says of one source image."""

    count: int
    boxes: np.ndarray | None  # (count, 4) float pixel boxes x0, y0, x1, y1 in the source image, or None


@dataclass(kw_only=True)
class Canvas:
    """One square canvas cut from a source image: (S, S, 3) uint8, where it came from, and its truth."""

    pixels: np.ndarray
    origin: tuple[int, int, int]  # source index, x, y (in the source image after --scale)
    truth: Truth | None


def source_images(source: Path) -> tuple[list[str], Callable[[int], np.ndarray]]:
    """The names of the source images of a folder of image files or an .npy / .npz array of images, and a
    function giving image i as (H, W, C) floats, read when asked for (a folder of photographs need not fit
    in memory at once)."""
    if source.is_dir():
        files = image_files(source)
        if not files:
            raise AirsceneError(f"{source} holds no image files (PNG, JPEG, TIFF, BMP, ...): give a folder of images")
        return [str(path.relative_to(source)) for path in files], lambda index: read_image(files[index])
    if source.suffix not in (".npy", ".npz") or not source.is_file():
        raise AirsceneError(f"{source} is neither a folder of images nor an .npy or .npz file: check the path")
    try:
        with np.load(source, allow_pickle=False) as loaded:
            array = np.asarray(loaded if source.suffix == ".npy" else loaded[_images_key(loaded, source)])
    except (OSError, ValueError, EOFError) as error:
        raise AirsceneError(f"{source} is not a readable {source.suffix} file ({type(error).__name__})") from None
    images = to_model_layout(as_array(array, f"the images of {source}"), 3, what=f"the images of {source}")
    return [str(index) for index in range(len(images))], lambda index: images[index].permute(1, 2, 0).numpy()


def _images_key(archive, source: Path) -> str:
    if "images" in archive.files:
        return "images"
    if len(archive.files) == 1:
        return archive.files[0]
    raise AirsceneError(f"{source} holds arrays {', '.join(archive.files)}: name the images' array 'images'")


def read_labels(path: Path, names: list[str]) -> dict[str, Truth]:
    """A CSV with a header `file,count[,boxes]`: one row per source image (its file name inside the folder,
    or its index in the array), boxes as "x0 y0 x1 y1; x0 y0 x1 y1 ..." in the image's pixels."""
    try:
        with open(regular_file(path, "labels file"), newline="") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise AirsceneError(f"labels file {path} cannot be read ({type(error).__name__}): give a CSV file") from None
    if not rows or not {"file", "count"} <= set(rows[0]):
        raise AirsceneError(f"labels file {path} has no header `file,count[,boxes]`: add one")
    truths, known = {}, set(names)
    for line, row in enumerate(rows, start=2):
        where = f"labels file {path}, line {line}"
        if row["file"] not in known:
            raise AirsceneError(f"{where}: {row['file']!r} is not one of the source images; name them as inside the source")
        try:
            count = int(row["count"])
            boxes = None
            if "boxes" in row:  # the column is there: an empty cell is an image without objects
                boxes = np.array([[float(v) for v in box.split()] for box in (row["boxes"] or "").split(";")
                                  if box.strip()], dtype=np.float64).reshape(-1, 4)
        except (TypeError, ValueError):
            raise AirsceneError(f"{where}: count must be a whole number and boxes 'x0 y0 x1 y1; ...'") from None
        if count < 0 or (boxes is not None and len(boxes) != count):
            raise AirsceneError(f"{where}: the count {count} is negative or not the number of boxes")
        truths[row["file"]] = Truth(count=count, boxes=boxes)
    missing = [name for name in names if name not in truths]
    if missing:
        raise AirsceneError(f"labels file {path} has no row for {len(missing)} source image(s) such as {missing[0]!r}: "
                            "label every image, or import without --labels")
    return truths


def _resized(image: torch.Tensor, factor: float) -> torch.Tensor:
    """(C, H, W) scaled by factor (antialiased)."""
    height, width = max(1, round(image.shape[1] * factor)), max(1, round(image.shape[2] * factor))
    return F.interpolate(image[None], size=(height, width), mode="bilinear", antialias=True, align_corners=False)[0]


def _truth_in(truth: Truth | None, factor: float, x: int, y: int, side: int, whole: bool) -> Truth | None:
    """A source's truth for the canvas at (x, y) of `side` pixels in the source scaled by factor: the
    objects whose box centre lies in it, boxes clipped to it. Counts alone survive only whole images."""
    if truth is None:
        return None
    if truth.boxes is None:
        if not whole:
            raise AirsceneError("a labels file with counts but no boxes cannot say how many objects each tile or crop "
                                "holds: add boxes, or import whole square images (no --tile, square sources)")
        return truth
    boxes = truth.boxes * factor - np.array([x, y, x, y])
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    inside = ((centres >= 0) & (centres < side)).all(1)
    return Truth(count=int(inside.sum()), boxes=np.clip(boxes[inside], 0, side))


def canvases(index: int, image: np.ndarray, truth: Truth | None, scale: float | None, size: int | None,
             tile: int | None, stride: int | None) -> list[Canvas]:
    """The square canvases of one source image (as RGB; grey ones are made grey at the end): scaled, then
    resized (shorter side to `size`, centred crop), cut into tiles, or taken whole if already square."""
    pixels = to_model_layout(image[None], 3, layout="channels_last")[0]  # (3, H, W)
    factor = scale or 1.0
    if scale:
        pixels = _resized(pixels, scale)
    height, width = pixels.shape[1:]
    if tile:
        corners = [(x, y) for y in range(0, height - tile + 1, stride) for x in range(0, width - tile + 1, stride)]
        cuts = [(x, y, tile, _truth_in(truth, factor, x, y, tile, whole=False)) for x, y in corners]
    elif size:
        shrink = size / min(height, width)
        pixels, factor = _resized(pixels, shrink), factor * shrink
        x, y = (pixels.shape[2] - size) // 2, (pixels.shape[1] - size) // 2
        cuts = [(x, y, size, _truth_in(truth, factor, x, y, size, whole=height == width))]
    elif height != width:
        raise AirsceneError(f"source image {index} is {width}x{height}, not square: give --size to resize and crop, "
                            "or --tile to cut it into square canvases")
    else:
        cuts = [(0, 0, height, _truth_in(truth, factor, 0, 0, height, whole=True))]
    rgb = quantise(pixels[None])[0]  # (H, W, 3) uint8
    return [Canvas(pixels=rgb[y:y + side, x:x + side], origin=(index, x, y), truth=truth) for x, y, side, truth in cuts]


def scene_set(parts: list[Canvas], side: int, channels: int, labelled: bool) -> SceneSet:
    """Canvases of one split as a SceneSet (the truth's arrays only where labels were given)."""
    images = np.stack([part.pixels for part in parts]) if parts else np.zeros((0, side, side, 3), np.uint8)
    images = images[..., 0] if channels == 1 else images
    origins = np.array([part.origin for part in parts], np.int64).reshape(-1, 3)
    if not labelled:
        return SceneSet(images=images, origins=origins)
    counts = np.array([part.truth.count for part in parts], np.int64)
    scenes = SceneSet(images=images, origins=origins, counts=counts)
    if all(part.truth.boxes is not None for part in parts):
        boxes = np.full((len(parts), max(1, int(counts.max(initial=0))), 4), -1, np.int64)
        for row, part in enumerate(parts):
            box = np.round(part.truth.boxes).astype(np.int64)
            box[:, 2:] = np.maximum(box[:, 2:], box[:, :2] + 1)  # at least a pixel
            boxes[row, :part.truth.count] = np.minimum(box, side)
        scenes.boxes = boxes
    return scenes


def suggest_object_size(images: np.ndarray) -> dict:
    """An estimate of the objects' size from up to MEASURED_CANVASES canvases: the luminance is thresholded
    by Otsu's method, and each 8-connected component of 4 or more pixels is an object; its size is the
    longer side of its box. Suggests the 10th to 90th percentile as --object-size, and the 95th percentile
    of components per canvas as --max-objects. Reliable for objects on a plain background only."""
    from scipy import ndimage

    sample = images[:MEASURED_CANVASES].astype(np.float32) / 255
    grey = sample @ np.array([0.299, 0.587, 0.114], np.float32) if sample.ndim == 4 else sample
    threshold = otsu_threshold(grey)
    sides, per_canvas = [], []
    for canvas in grey:
        labelled, _ = ndimage.label(canvas > threshold, structure=np.ones((3, 3)))
        found = [box for box, area in zip(ndimage.find_objects(labelled), np.bincount(labelled.ravel())[1:]) if area >= 4]
        sides += [max(rows.stop - rows.start, columns.stop - columns.start) for rows, columns in found]
        per_canvas.append(len(found))
    measured = {"method": f"connected components (8-connected, >= 4 pixels) of the luminance above Otsu's threshold "
                          f"{threshold:.3f}, in {len(grey)} canvases", "objects": len(sides)}
    if sides:
        measured.update(object_size=[float(np.percentile(sides, 10)), float(np.percentile(sides, 90))],
                        max_objects=int(np.ceil(np.percentile(per_canvas, 95))))
    return measured


def otsu_threshold(values: np.ndarray) -> float:
    """The threshold between two classes of values in [0, 1] that maximises their between-class variance
    (Otsu's method)."""
    histogram, edges = np.histogram(values, bins=256, range=(0, 1))
    weight = histogram.cumsum() / max(histogram.sum(), 1)
    means = (histogram * edges[:-1]).cumsum() / max(histogram.sum(), 1)
    between = (means[-1] * weight - means) ** 2 / np.clip(weight * (1 - weight), 1e-12, None)
    return float(edges[int(np.argmax(between[:-1])) + 1])


def import_images(source: str | Path, out: str | Path, size: int | None = None, tile: int | None = None,
                  stride: int | None = None, scale: float | None = None, colour: bool | None = None,
                  test_fraction: float = 0.1, seed: int = 0, labels: str | Path | None = None) -> dict:
    """Import SOURCE (a folder of images, or an .npy / .npz array) as the data set OUT; returns its settings,
    with the measured object size (`suggest_object_size`) and the sources smaller than a tile (skipped).
    Held-out canvases come from held-out source files."""
    source = as_path(source, "image source")
    _check_import_options(size, tile, stride, scale, test_fraction, seed)
    check_writable(out, "data directory")
    names, image = source_images(source)
    truths = read_labels(Path(labels), names) if labels else {}
    order = np.random.default_rng(seed).permutation(len(names))
    held_out = set(order[:round(test_fraction * len(names))].tolist()) if len(names) > 1 else set()
    splits: dict[str, list[Canvas]] = {"train": [], "test": []}
    skipped = []
    for index in range(len(names)):
        parts = canvases(index, image(index), truths.get(names[index]), scale, size, tile, stride or tile)
        splits["test" if index in held_out else "train"] += parts
        if not parts:
            skipped.append(names[index])
    if not splits["train"]:
        raise AirsceneError(f"no training canvases came out of {source}: lower --test-fraction, or --tile to the images' size")
    sides = sorted({part.pixels.shape[0] for split in splits.values() for part in split})
    if len(sides) > 1:
        raise AirsceneError(f"the source images give canvases of sizes {sides}: give --size or --tile so that every "
                            "canvas has one size")
    if colour is None:
        colour = any(is_colour(part.pixels) for split in splits.values() for part in split)
    channels = 3 if colour else 1
    train, test = (scene_set(splits[split], sides[0], channels, bool(truths)) for split in ("train", "test"))
    settings = dict(kind="import", format_version=2, source=str(source), size=size, tile=tile, stride=stride or tile,
                    scale=scale, channels=channels, test_fraction=test_fraction, seed=seed,
                    labels=str(labels) if labels else None, source_files=names, train=len(train), test=len(test),
                    skipped_sources=skipped, measured=suggest_object_size(train.images))
    save_dataset(out, train, test, settings)
    return settings


def _check_import_options(size, tile, stride, scale, test_fraction, seed) -> None:
    if size and tile:
        raise AirsceneError("give --size (resize each image to one canvas) or --tile (cut it into canvases), not both")
    for name, value, low in (("size", size, 4), ("tile", tile, 4), ("stride", stride, 1), ("seed", seed, 0)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not low <= value <= 4096):
            raise AirsceneError(f"--{name} is {value!r}: use a whole number from {low} to 4096")
    if stride and not tile:
        raise AirsceneError("--stride is the step between tiles: give it with --tile")
    if scale is not None and not 0.01 <= scale <= 100:
        raise AirsceneError(f"--scale is {scale}: give a resizing factor from 0.01 to 100")
    if not 0 <= test_fraction < 1:
        raise AirsceneError(f"--test-fraction is {test_fraction}: give the held-out share of the source images, in [0, 1)")
