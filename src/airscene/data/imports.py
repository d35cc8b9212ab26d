"""A user's own images as a data set: a folder of image files, or an .npy / .npz array, cut or resized into
square canvases, split by source file into training and held-out images. Ground truth is optional: a CSV of
counts (and boxes) per file turns on the count metrics."""

from __future__ import annotations

import csv
import math
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from airscene.data.files import data_directory, save_dataset
from airscene.data.scenes import SceneSet
from airscene.errors import AirsceneError
from airscene.images import (MAX_PIXELS, STRETCH_PERCENTILES, as_array, channels_last, check_intensity,
                             image_files, intensity_range, is_colour, quantise, read_by_own_range, read_label_map,
                             read_raw_image, rescaled, to_model_layout, type_top)
from airscene.settings import check_value
from airscene.storage import as_path, regular_file

MEASURED_CANVASES = 200  # canvases the object-size suggestion looks at
MEASURED_SMOOTHING = 1.0  # pixels: the Gaussian it smooths them with before thresholding
MEASURED_AREA = 16  # pixels: smaller components are specks, not objects
MAX_LABELLED_OBJECTS = 10_000  # objects a labels file may give one image
MAX_CANVASES = 2_000_000  # canvases one import may cut
MAX_IMPORT_BYTES = 8 * 2**30  # of the canvases' pixels, held in memory until they are written
MASK_SUFFIXES = (".png", ".PNG", ".tif", ".TIF", ".tiff", ".TIFF")  # label maps must be lossless: never JPEG
MIN_CANVAS = 4  # pixels a side: the smallest canvas a data set may hold (data.files.validate_scenes)


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
    mask: np.ndarray | None = None  # (S, S) int64 instance labels cut from the source's label map, 0 the background


FAINT = 1 / 16  # an image read by its type's range that spans less of it than this imports nearly uniform


@dataclass(kw_only=True)
class Reading:
    """How an import read its source images' values onto [0, 1] (images.INTENSITIES), for its report."""

    intensity: str
    own_range: list = field(default_factory=list)  # [name, dtype, value read as 0, value read as 1] per image
    type_range: list = field(default_factory=list)  # [name, dtype, lowest value, highest value] per image
    faint: list = field(default_factory=list)  # names of images read by their type's range that span < FAINT of it

    def add(self, name: str, image: np.ndarray) -> None:
        """Record how image (H, W, C), in its own dtype, is read."""
        if read_by_own_range(image[None], self.intensity):
            low, high = intensity_range(image[None], self.intensity)[0]
            self.own_range.append([name, str(image.dtype), float(low), float(high)])
            return
        low, high = (float(image.min()), float(image.max())) if image.size else (0.0, 0.0)
        self.type_range.append([name, str(image.dtype), low, high])
        if high - low < FAINT * (type_top(image.dtype) or 1):
            self.faint.append(name)

    def summary(self) -> dict:
        """What dataset.json keeps: the reading, and the images read each way (a few, for a large import)."""
        return dict(intensity=self.intensity, percentiles=list(STRETCH_PERCENTILES), own_range=self.own_range[:MAX_LISTED],
                    own_range_images=len(self.own_range), type_range_images=len(self.type_range),
                    type_range=self.type_range[:MAX_LISTED], faint=self.faint[:MAX_LISTED], faint_images=len(self.faint))


MAX_LISTED = 20  # images named per kind of reading in dataset.json


def source_images(source: Path, masks: Path | None = None) -> tuple[list[str], Callable[[int], np.ndarray]]:
    """The names of the source images of a folder of image files (but those in `masks`, if it lies inside it)
    or an .npy / .npz array of images, and a function giving image i as (H, W, C) in its own dtype, read when
    asked for (a folder of photographs need not fit in memory at once)."""
    if source.is_dir():
        files = [path for path in image_files(source) if masks is None or masks.resolve() not in path.resolve().parents]
        if not files:
            raise AirsceneError(f"{source} holds no image files (PNG, JPEG, TIFF, BMP, ...): give a folder of images")
        return [str(path.relative_to(source)) for path in files], lambda index: read_raw_image(files[index])
    array = saved_array(source, "images")
    what = f"the images of {source}"
    if array.ndim not in (3, 4) or not len(array) or array.dtype.kind not in "biuf":
        raise AirsceneError(f"{what} are an array of shape {array.shape} and dtype {array.dtype}: give a non-empty "
                            "batch (N, H, W), (N, C, H, W) or (N, H, W, C) of numbers")

    def image(index: int) -> np.ndarray:  # one at a time: a large array is never read whole
        return channels_last(as_array(array[index:index + 1], what), None, "auto", what)[0]

    return [str(index) for index in range(len(array))], image


def saved_array(path: Path, what: str) -> np.ndarray:
    """The array of an .npy file (memory-mapped: read as it is indexed) or an .npz archive (key `what`, or its
    only array)."""
    if path.suffix not in (".npy", ".npz") or not path.is_file():
        raise AirsceneError(f"{path} is neither a folder of {what} nor an .npy or .npz file: check the path")
    try:
        if path.suffix == ".npy":
            return np.load(path, allow_pickle=False, mmap_mode="r")
        with np.load(path, allow_pickle=False) as loaded:
            return loaded[_array_key(loaded, path, what)]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as error:
        raise AirsceneError(f"{path} is not a readable {path.suffix} file ({type(error).__name__}): give an "
                            "array saved by numpy") from None


def source_masks(masks: Path, source: Path, names: list[str]) -> Callable[[int, tuple[int, int]], np.ndarray]:
    """A function giving source image i's label map (H, W) int64, checked against the image's (H, W): from the
    folder `masks` (the file of the image's relative path with a .png, .tif or .tiff suffix) for a folder of
    images, or from an .npy / .npz array (N, H, W) of integers for an array of images."""
    if source.is_dir():
        if not masks.is_dir():
            raise AirsceneError(f"--masks {masks} is not a folder: with a folder of images, give a folder of label maps "
                                "named as the images")

        def from_folder(index: int, shape: tuple[int, int]) -> np.ndarray:
            stem = Path(names[index]).with_suffix("")
            candidates = {stem.with_name(stem.name + suffix) for suffix in MASK_SUFFIXES}
            found = sorted({(masks / name).resolve(): masks / name for name in candidates
                            if (masks / name).is_file()}.values())  # a.png and a.PNG may be one file
            if len(found) != 1:
                raise AirsceneError(f"--masks {masks} has {'no' if not found else 'more than one'} label map for source "
                                    f"image {names[index]!r} (looked for {stem}.png, .tif or .tiff): give exactly one for "
                                    "every image, or import without --masks")
            return read_label_map(found[0], shape)

        return from_folder
    if masks.is_dir():
        raise AirsceneError(f"--masks {masks} is a folder, but the images are an array: give an .npy or .npz array of "
                            "label maps (N, H, W)")
    array = saved_array(masks, "masks")
    if array.ndim != 3 or len(array) != len(names) or array.dtype.kind not in "iub":
        raise AirsceneError(f"the masks of {masks} are an array of shape {array.shape} and dtype {array.dtype}: give "
                            f"({len(names)}, H, W) integer label maps, one per image")

    def from_array(index: int, shape: tuple[int, int]) -> np.ndarray:
        raw = np.asarray(array[index])
        low, high = (raw.min(), raw.max()) if raw.size else (0, 0)
        if raw.shape != tuple(shape) or low < 0 or high >= 2**31:
            raise AirsceneError(f"mask {index} of {masks} is {raw.shape} with labels from {low} to {high}: give label "
                                f"maps of the images' size {tuple(shape)}, 0 the background, k < 2^31 object k")
        return raw.astype(np.int64)  # a copy: a memory-mapped .npy is read-only

    return from_array


def _array_key(archive, path: Path, name: str) -> str:
    """The key of the array named `name` in an .npz archive, or of its only array."""
    if not archive.files:
        raise AirsceneError(f"{path} holds no arrays: save the {name} in it")
    if name in archive.files:
        return name
    if len(archive.files) == 1:
        return archive.files[0]
    raise AirsceneError(f"{path} holds arrays {', '.join(archive.files)}: name the {name} array '{name}'")


def read_labels(path: Path, names: list[str]) -> dict[str, Truth]:
    """A CSV with a header `file,count[,boxes]`: one row per source image (its file name inside the folder,
    or its index in the array), boxes as "x0 y0 x1 y1; x0 y0 x1 y1 ..." in the image's pixels."""
    try:
        with open(regular_file(path, "labels file"), newline="", encoding="utf-8-sig") as handle:  # a BOM is no header
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
        if row["file"] in truths:
            raise AirsceneError(f"{where}: {row['file']!r} has a row already: give one row per image")
        if None in row or None in row.values():
            raise AirsceneError(f"{where}: the row has {'more' if None in row else 'fewer'} cells than the header")
        try:
            count = int(_plain(row["count"], WHOLE))
            boxes = None
            if "boxes" in row:  # the column is there: an empty cell is an image without objects
                boxes = np.array([[float(_plain(v, DECIMAL)) for v in box.split()] for box in row["boxes"].split(";")
                                  if box.strip()], dtype=np.float64).reshape(-1, 4)
        except ValueError:
            raise AirsceneError(f"{where}: count must be a whole number and boxes 'x0 y0 x1 y1; ...', in plain digits "
                                "(0-9, '.', '-', 'e')") from None
        if not 0 <= count <= MAX_LABELLED_OBJECTS or (boxes is not None and len(boxes) != count):
            raise AirsceneError(f"{where}: the count {count} is not from 0 to {MAX_LABELLED_OBJECTS}, or not the number "
                                "of boxes")
        if boxes is not None and not (np.isfinite(boxes).all() and (boxes[:, :2] < boxes[:, 2:]).all()
                                      and (boxes >= 0).all()):
            raise AirsceneError(f"{where}: boxes must be finite pixels x0 y0 x1 y1 with 0 <= x0 < x1 and 0 <= y0 < y1")
        truths[row["file"]] = Truth(count=count, boxes=boxes)
    missing = [name for name in names if name not in truths]
    if missing:
        raise AirsceneError(f"labels file {path} has no row for {len(missing)} source image(s) such as {missing[0]!r}: "
                            "label every image, or import without --labels")
    return truths


WHOLE = re.compile(r"\s*\d+\s*", re.ASCII)
DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", re.ASCII)


def _plain(text: str, form: re.Pattern) -> str:
    """`text` if it is a number written in plain ASCII digits (int() and float() also take other scripts' digits
    and underscores), else a ValueError."""
    if not form.fullmatch(text):
        raise ValueError(text)
    return text


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


def _resized_labels(labels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(H, W) label map resized to `size` by the nearest pixel: labels are names, never blended."""
    return F.interpolate(labels[None, None].double(), size=size, mode="nearest-exact")[0, 0].long()


def canvas_labels(labels: np.ndarray) -> np.ndarray:
    """A canvas's cut of a label map, its objects renumbered 1, 2, ... in the order of their labels, as uint8."""
    values, inverse = np.unique(labels, return_inverse=True)
    if (values > 0).sum() > 255:
        raise AirsceneError(f"a canvas holds {(values > 0).sum()} labelled objects, more than a data set's 255: "
                            "give --tile or --size so that each canvas holds fewer")
    renumbered = np.arange(len(values)) + (0 if values[0] == 0 else 1)  # 0 stays the background
    return renumbered[inverse].reshape(labels.shape).astype(np.uint8)


def canvases(index: int, image: np.ndarray, truth: Truth | None, scale: float | None, size: int | None,
             tile: int | None, stride: int | None, mask: np.ndarray | None = None, name: str | None = None,
             intensity: str = "auto") -> list[Canvas]:
    """The square canvases of one source image (H, W, C) in its own dtype, its values read as `intensity`
    says (as RGB; grey ones are made grey at the end): scaled, then resized (shorter side to `size`, centred
    crop), cut into tiles, or taken whole if already square; its label map `mask` (H, W), if given, resized by
    the nearest pixel and cut with it. `name`: the source's, for messages (its index where it has none)."""
    name = str(index) if name is None else name
    factor = scale or 1.0
    scaled = [round(side * factor) for side in image.shape[:2]]
    if math.prod(scaled) > MAX_PIXELS:
        raise AirsceneError(f"--scale {scale} makes source image {name} {scaled[1]}x{scaled[0]} pixels, more than "
                            f"airscene holds ({MAX_PIXELS:,}): lower --scale, or cut the image with --tile first")
    pixels = to_model_layout(image[None], 3, what=f"the pixels of source image {name}", layout="channels_last",
                             intensity=intensity)[0]  # (3, H, W)
    labels = None if mask is None else torch.from_numpy(mask)  # (H, W)
    if scale:
        pixels = rescaled(pixels[None], scale)[0]
    height, width = pixels.shape[1:]
    if tile:
        tiles = (max(0, height - tile) // stride + 1) * (max(0, width - tile) // stride + 1) if min(height, width) >= tile else 0
        if tiles > MAX_CANVASES:  # counted before a list of them is built
            raise AirsceneError(f"source image {name} would give {tiles:,} tiles, more than the {MAX_CANVASES:,} canvases "
                                "an import holds: raise --stride or --tile, or lower --scale")
        corners = [(x, y) for y in range(0, height - tile + 1, stride) for x in range(0, width - tile + 1, stride)]
        cuts = [(x, y, tile, _truth_in(truth, factor, x, y, tile, whole=False)) for x, y in corners]
    elif size:
        shrink = size / min(height, width)
        pixels, factor = rescaled(pixels[None], shrink)[0], factor * shrink
        x, y = (pixels.shape[2] - size) // 2, (pixels.shape[1] - size) // 2
        cuts = [(x, y, size, _truth_in(truth, factor, x, y, size, whole=height == width))]
    elif height != width:
        raise AirsceneError(f"source image {name} is {width}x{height}, not square: give --size to resize and crop, "
                            "or --tile to cut it into square canvases")
    else:
        cuts = [(0, 0, height, _truth_in(truth, factor, 0, 0, height, whole=True))]
    rgb = quantise(pixels[None])[0]  # (H, W, 3) uint8
    if labels is not None:
        labels = _resized_labels(labels, tuple(pixels.shape[1:])).numpy()  # (H, W), as the pixels now are
    return [Canvas(pixels=rgb[y:y + side, x:x + side], origin=(index, x, y), truth=truth,
                   mask=None if labels is None else canvas_labels(labels[y:y + side, x:x + side]))
            for x, y, side, truth in cuts]


def scene_set(parts: list[Canvas], side: int, channels: int, labelled: bool) -> SceneSet:
    """Canvases of one split as a SceneSet (the truth's arrays only where labels were given)."""
    images = np.stack([part.pixels for part in parts]) if parts else np.zeros((0, side, side, 3), np.uint8)
    images = images[..., 0] if channels == 1 else images
    origins = np.array([part.origin for part in parts], np.int64).reshape(-1, 3)
    masks = None
    if parts and all(part.mask is not None for part in parts):
        masks = np.stack([part.mask for part in parts])
    if not labelled:
        return SceneSet(images=images, origins=origins, masks=masks)
    counts = np.array([part.truth.count for part in parts], np.int64)
    scenes = SceneSet(images=images, origins=origins, counts=counts, masks=masks)
    if all(part.truth.boxes is not None for part in parts):
        boxes = np.full((len(parts), max(1, int(counts.max(initial=0))), 4), -1, np.int64)
        for row, part in enumerate(parts):
            box = np.round(part.truth.boxes).astype(np.int64)
            box[:, 2:] = np.maximum(box[:, 2:], box[:, :2] + 1)  # at least a pixel
            boxes[row, :part.truth.count] = np.minimum(box, side)
        scenes.boxes = boxes
    return scenes


def suggest_object_size(images: np.ndarray) -> dict:
    """An estimate of the objects' size from up to MEASURED_CANVASES canvases: the luminance, smoothed (a
    Gaussian of MEASURED_SMOOTHING pixels, so that a textured object or a noisy background does not break
    into specks), is thresholded by Otsu's method, the objects taken to be the side of it that covers fewer
    pixels (a background covers most of an image: coins on cloth are brighter than it, sweets on a white table
    darker), and their holes filled (a coin's dark engraving is still the coin); each 8-connected component of
    MEASURED_AREA or more pixels is an object, and its size is the longer side of its box, measured on the
    components that do not touch their canvas's edge (a tile cuts objects, and a cut object measures small), or
    on all where none is whole. Suggests the 10th to 90th percentile as --object-size and the 95th percentile of
    components per canvas as --max-objects, and says whether the objects are darker than their background.
    Reliable for objects that stand out from a plainer background by brightness."""
    from scipy import ndimage

    sample = images[:MEASURED_CANVASES].astype(np.float32) / 255
    grey = sample @ np.array([0.299, 0.587, 0.114], np.float32) if sample.ndim == 4 else sample
    smooth = ndimage.gaussian_filter(grey, (0, MEASURED_SMOOTHING, MEASURED_SMOOTHING))
    threshold = otsu_threshold(smooth)
    bright = (smooth > threshold).mean() <= 0.5
    objects = smooth > threshold if bright else smooth <= threshold  # (M, H, W)
    whole, cut, per_canvas = [], [], []
    for canvas in objects:
        labelled, _ = ndimage.label(ndimage.binary_fill_holes(canvas), structure=np.ones((3, 3)))
        found = [box for box, area in zip(ndimage.find_objects(labelled), np.bincount(labelled.ravel())[1:])
                 if box is not None and area >= MEASURED_AREA]
        for rows, columns in found:
            inside = rows.start > 0 and columns.start > 0 and rows.stop < canvas.shape[0] and columns.stop < canvas.shape[1]
            (whole if inside else cut).append(max(rows.stop - rows.start, columns.stop - columns.start))
        per_canvas.append(len(found))
    sides = whole or cut
    measured = {"method": f"connected components (8-connected, >= {MEASURED_AREA} pixels, holes filled, those "
                          "inside their canvas) of the luminance smoothed by a Gaussian of "
                          f"{MEASURED_SMOOTHING:g} pixel {'above' if bright else 'at or below'} Otsu's threshold "
                          f"{threshold:.3f} (the side covering fewer pixels), in {len(grey)} "
                          "canvases", "objects": len(sides), "darker_than_background": not bright}
    if sides:
        measured.update(object_size=[float(np.percentile(sides, 10)), float(np.percentile(sides, 90))],
                        typical=float(np.median(sides)), max_objects=int(np.ceil(np.percentile(per_canvas, 95))))
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
                  test_fraction: float = 0.1, seed: int = 0, labels: str | Path | None = None,
                  masks: str | Path | None = None, intensity: str = "auto", force: bool = False) -> dict:
    """Import SOURCE (a folder of images, or an .npy / .npz array) as the data set OUT (an existing one is
    replaced only with `force`); returns its settings, with the measured object size (`suggest_object_size`),
    how the pixels were read (`reading`: intensity, images.INTENSITIES) and the sources smaller than a tile
    (skipped). Held-out canvases come from held-out source files. `masks`: each image's instance label map
    (source_masks), cut with it into the canvases' true masks."""
    source = as_path(source, "image source")
    intensity = check_intensity(intensity)
    size, tile, stride, scale, test_fraction, seed = _check_import_options(size, tile, stride, scale, test_fraction, seed)
    if colour is not None and not isinstance(colour, bool):
        raise AirsceneError(f"colour is {colour!r}: give True, False or None (colour if any image is)")
    labels = None if labels is None else as_path(labels, "labels file")
    masks = None if masks is None else as_path(masks, "masks")
    if masks is not None and masks.resolve() == source.resolve():
        raise AirsceneError(f"--masks {masks} is the image folder itself: put the label maps in a folder of their own "
                            "(a subfolder such as masks/ will do)")
    with data_directory(out, force, reads=(source,) + (() if masks is None else (masks,))):
        names, image = source_images(source, masks)
        truths = read_labels(labels, names) if labels else {}
        label_map = None if masks is None else source_masks(masks, source, names)
        order = np.random.default_rng(seed).permutation(len(names))
        held_out = set(order[:round(test_fraction * len(names))].tolist()) if len(names) > 1 else set()
        splits: dict[str, list[Canvas]] = {"train": [], "test": []}
        skipped, pixels, reading = [], 0, Reading(intensity=intensity)
        for index in range(len(names)):
            picture, truth = image(index), truths.get(names[index])
            reading.add(names[index], picture)
            _check_boxes_inside(truth, picture.shape, labels, names[index])
            mask = None if label_map is None else label_map(index, picture.shape[:2])
            parts = canvases(index, picture, truth, scale, size, tile, stride or tile, mask, names[index], intensity)
            splits["test" if index in held_out else "train"] += parts
            pixels += sum(part.pixels.size for part in parts)
            if sum(map(len, splits.values())) > MAX_CANVASES or pixels > MAX_IMPORT_BYTES:
                raise AirsceneError(f"the import would hold more than {MAX_CANVASES:,} canvases or "
                                    f"{MAX_IMPORT_BYTES / 2**30:g} GiB of pixels by source image {names[index]!r}: "
                                    "raise --stride, lower --scale, or import fewer images at a time")
            if not parts:
                skipped.append(names[index])
        if not splits["train"]:
            raise AirsceneError(f"no training canvases came out of {source}: lower --test-fraction, or --tile to the "
                                "images' size")
        side = _canvas_side(splits)
        if colour is None:
            colour = any(is_colour(part.pixels) for split in splits.values() for part in split)
        channels = 3 if colour else 1
        train, test = (scene_set(splits[split], side, channels, bool(truths)) for split in ("train", "test"))
        settings = dict(kind="import", format_version=2, source=str(source), size=size, tile=tile,
                        stride=stride or tile, scale=scale, channels=channels, test_fraction=test_fraction, seed=seed,
                        labels=str(labels) if labels else None, masks=str(masks) if masks else None,
                        intensity=intensity, reading=reading.summary(), source_files=names, train=len(train),
                        test=len(test), skipped_sources=skipped, measured=suggest_object_size(train.images))
        save_dataset(out, train, test, settings)
    return settings


def _canvas_side(splits: dict[str, list[Canvas]]) -> int:
    """The one side every canvas of an import has, large enough for AIR."""
    sides = sorted({part.pixels.shape[0] for split in splits.values() for part in split})
    if len(sides) > 1:
        raise AirsceneError(f"the source images give canvases of sizes {sides}: give --size or --tile so that every "
                            "canvas has one size")
    if sides[0] < MIN_CANVAS:
        raise AirsceneError(f"the source images give {sides[0]}x{sides[0]} canvases, smaller than the {MIN_CANVAS}x"
                            f"{MIN_CANVAS} AIR needs: give --size or --scale to enlarge them")
    return sides[0]


def _check_boxes_inside(truth: Truth | None, shape: tuple[int, ...], labels: Path | None, name: str) -> None:
    """A labels file's boxes must lie in their source image's pixels."""
    height, width = shape[:2]
    if truth is not None and truth.boxes is not None and len(truth.boxes) and (
            (truth.boxes[:, 2] > width).any() or (truth.boxes[:, 3] > height).any()):
        raise AirsceneError(f"labels file {labels}: a box of {name!r} leaves its {width}x{height} pixels: give boxes "
                            "inside the image, in its pixels")


def _check_import_options(size, tile, stride, scale, test_fraction, seed) -> tuple:
    """The import's options, validated as settings are (a numpy number will do; text will not)."""
    if size and tile:
        raise AirsceneError("give --size (resize each image to one canvas) or --tile (cut it into canvases), not both")
    whole = int | None
    size, tile = (check_value(name, value, whole, {"minimum": MIN_CANVAS, "maximum": 4096})
                  for name, value in (("size", size), ("tile", tile)))
    stride = check_value("stride", stride, whole, {"minimum": 1, "maximum": 4096})
    seed = check_value("seed", seed, int, {"minimum": 0, "maximum": 2**32 - 1})
    scale = check_value("scale", scale, float | None, {"minimum": 0.01, "maximum": 100})
    test_fraction = check_value("test_fraction", test_fraction, float, {"minimum": 0.0, "below": 1.0})
    if stride and not tile:
        raise AirsceneError("--stride is the step between tiles: give it with --tile")
    return size, tile, stride, scale, test_fraction, seed
