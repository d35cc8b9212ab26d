"""Images in, the model's layout out: the one reader of image files and the one converter of image arrays,
which every command and the API use. Whatever the file format, bit depth, channels or layout, one scene
becomes the same float image: values in [0, 1], grey as the luminance of colour, transparency composited over
black. How values become [0, 1] is the intensity reading (INTENSITIES): by the type's range (uint8 / 255,
uint16 / 65535, float as it is), or by each image's own percentiles, as microscopy tools stretch a 12-bit
camera's frame before anything else reads it."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from airscene.errors import AirsceneError
from airscene.storage import as_path, regular_file

MAX_PIXELS = 64 * 1024 * 1024  # per image file: larger ones are refused before they are decoded
LUMINANCE = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R 601, as PIL's convert("L")


INTENSITIES = {
    "auto": "each image's own percentiles where its type's range would leave it nearly black (integers wider than "
            "8 bits all below 1/16 of their range, as a 12-bit camera writes 16-bit files) or has none (floats "
            "outside [0, 1]), the type's range otherwise",
    "image": "each image's own percentiles, whatever its type",
    "full": "the type's range: uint8 / 255, uint16 / 65535, float as it is (in [0, 1])",
}
STRETCH_PERCENTILES = (0.1, 99.9)  # an image's values read as 0 and as 1 where it is read by its own range
TYPE_RANGE = {"b": 1, "u1": 255, "u2": 65535, "f": 1}  # the value read as 1 by the type's range


def type_top(dtype: np.dtype) -> float | None:
    """The value read as 1 by the type's range (None for a type without one, such as int32)."""
    return TYPE_RANGE.get(dtype.kind if dtype.kind in "bf" else f"{dtype.kind}{dtype.itemsize}")


def check_intensity(intensity: str) -> str:
    if intensity not in INTENSITIES:
        raise AirsceneError(f"intensity {intensity!r} is unknown: use {', '.join(INTENSITIES)}")
    return intensity


def read_by_own_range(images: np.ndarray, intensity: str) -> bool:
    """Whether a batch of images is read by each image's own percentiles under `intensity`: a 12-bit camera's
    frame in a 16-bit file uses 1/16 of its type's range, and read by the type's range it is nearly black;
    a 16-bit image that uses its range is read as its 8-bit copy would be."""
    if images.dtype == np.bool_:  # 0 and 1 are already the range
        return False
    if check_intensity(intensity) != "auto":
        return intensity == "image"
    if images.dtype.kind == "f":
        return bool(images.size) and bool(np.nanmin(images) < 0 or np.nanmax(images) > 1)
    if images.dtype.kind not in "iu" or images.dtype.itemsize == 1:
        return False
    top, colour = type_top(images.dtype), _colour(images)
    return top is None or (bool(colour.size) and int(colour.max()) * 16 < top + 1)


def _colour(images: np.ndarray) -> np.ndarray:
    """(..., C) -> the colour channels, without alpha (C of 2 or 4): alpha is no brightness."""
    return images[..., :-1] if images.shape[-1] in (2, 4) else images


def intensity_range(images: np.ndarray, intensity: str) -> np.ndarray:
    """(B, H, W, C) images in their own dtype -> (B, 2) float64: the values read as 0 and as 1 (the colour
    channels' STRETCH_PERCENTILES where read by their own range, else 0 and the type's top). An image whose
    percentiles meet (nearly all of it one value) is read from its lowest to its highest value, and one of a
    single value by its type's range (or as 0, for a type without one): never divided by nothing."""
    by_type = np.tile([0.0, type_top(images.dtype) or 1], (len(images), 1))
    if not read_by_own_range(images, intensity):
        return by_type
    colour = _colour(images).reshape(len(images), -1)
    ranges = np.percentile(colour, STRETCH_PERCENTILES, axis=1).T.astype(np.float64)  # (B, 2)
    met = ranges[:, 1] <= ranges[:, 0]
    if met.any():
        ranges[met] = np.stack([colour[met].min(1), colour[met].max(1)], 1).astype(np.float64)
        single = ranges[:, 1] <= ranges[:, 0]
        ranges[single] = by_type[single] if type_top(images.dtype) else np.stack(
            [ranges[single, 0], ranges[single, 0] + 1], 1)
    return ranges


def _float_image(array: np.ndarray, what: str, intensity: str = "full") -> np.ndarray:
    """(B, H, W, C) of any supported dtype -> float32 in [0, 1], checked, read as `intensity` says."""
    if array.dtype.kind not in "biuf":
        raise AirsceneError(f"{what} have dtype {array.dtype}: give uint8 (0-255), uint16 (0-65535), bool, or float")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise AirsceneError(f"{what} contain NaN or infinite pixels: replace them first")
    if read_by_own_range(array, intensity):
        low, high = np.moveaxis(intensity_range(array, intensity), 1, 0).reshape(2, -1, *[1] * (array.ndim - 1))
        with np.errstate(over="ignore", invalid="ignore"):  # values near float64's limits: halved first
            stretched = (array.astype(np.float64) / 2 - low / 2) / (high / 2 - low / 2)
        stretched = np.clip(np.nan_to_num(stretched, nan=0.0), 0, 1).astype(np.float32)
        if array.shape[-1] in (2, 4):  # alpha keeps its own type's reading
            stretched[..., -1:] = _float_image(array[..., -1:], what)
        return stretched
    top = type_top(array.dtype)
    if top is None:
        raise AirsceneError(f"{what} have dtype {array.dtype}, which has no range read as [0, 1]: give uint8 "
                            "(0-255), uint16 (0-65535), bool or float in [0, 1], or read each image by its own range "
                            "(intensity 'image')")
    array = array.astype(np.float32) / top
    if array.size and (array.min() < 0 or array.max() > 1):
        raise AirsceneError(f"{what} are float in [{array.min():.8g}, {array.max():.8g}], not [0, 1]: divide uint8-range "
                            "values by 255 (or pass them as uint8), clip them, or read each image by its own range "
                            "(intensity 'image')")
    return array


def _to_channels(array: np.ndarray, channels: int) -> np.ndarray:
    """(..., C) float with C in 1..4 -> (..., channels): alpha composited over black, colour to grey by
    luminance, grey to colour by repetition."""
    have = array.shape[-1]
    if have in (2, 4):  # grey + alpha, RGBA
        array = array[..., :-1] * array[..., -1:]
        have -= 1
    if have == channels:
        return array
    if channels == 1:
        if (array == array[..., :1]).all():  # grey saved as colour: exactly its grey
            return array[..., :1]
        return (array @ LUMINANCE)[..., None]
    return np.repeat(array, channels, axis=-1)


def channels_last(array: np.ndarray, image_size: int | None, layout: str, what: str) -> np.ndarray:
    """(B, H, W), (B, C, H, W) or (B, H, W, C), C in 1..4 -> (B, H, W, C). layout "auto" tells the two
    4-d layouts apart by which axis can hold channels (and, for tiny images, by the model's size)."""
    if array.ndim == 3:
        return array[..., None]
    first, last = array.shape[1] in (1, 2, 3, 4), array.shape[-1] in (1, 2, 3, 4)
    if layout == "auto" and first and last:  # tiny images: the model's size decides, if it can
        size = (image_size, image_size)
        first, last = tuple(array.shape[2:]) == size, tuple(array.shape[1:3]) == size
        if first == last:
            raise AirsceneError(f"{what} have shape {array.shape}, which could be (B, C, H, W) or (B, H, W, C): "
                                "say which with layout='channels_first' or 'channels_last'")
    if layout != "channels_last" and first:
        return np.moveaxis(array, 1, -1)
    if layout != "channels_first" and last:
        return array
    raise AirsceneError(f"{what} have shape {array.shape}: give (B, H, W), (B, C, H, W) or (B, H, W, C) with C = 1, 3 "
                        "(or 2, 4 with alpha)")


def as_array(images, what: str = "images") -> np.ndarray:
    """A numpy view of images given as an array, a dense tensor (uint8, bool, integer or floating, bfloat16
    and float16 included) or a list."""
    if isinstance(images, torch.Tensor):
        if images.layout != torch.strided or images.is_meta or images.is_quantized:
            raise AirsceneError(f"{what} are a {images.layout} tensor: give a dense tensor (tensor.to_dense())")
        tensor = images.detach().cpu()
        if tensor.is_floating_point() and tensor.dtype not in (torch.float32, torch.float64):
            tensor = tensor.float()  # bfloat16, float16 and the float8 types, which numpy lacks
        try:
            return tensor.numpy()
        except (TypeError, RuntimeError):
            raise AirsceneError(f"{what} have the tensor dtype {tensor.dtype}: give uint8, uint16 or float") from None
    if isinstance(images, np.ma.MaskedArray):
        raise AirsceneError(f"{what} are a masked array: fill its masked pixels first (array.filled(0))")
    try:
        array = np.asarray(images)
    except (ValueError, TypeError):
        raise AirsceneError(f"{what} are a ragged list (images of different shapes): give images of one size") from None
    if array.dtype == object:
        raise AirsceneError(f"{what} are a ragged list or hold non-numbers: give an array of images of one size")
    return array


def to_model_layout(images, channels: int, image_size: int | None = None, what: str = "images",
                    layout: str = "auto", intensity: str = "full") -> torch.Tensor:
    """Images (a batch: (B, H, W), (B, C, H, W) or (B, H, W, C); uint8, uint16, bool or float in [0, 1], or
    any numbers read by their own range; grey, grey + alpha, RGB or RGBA) -> float32 (B, channels, H, W) in
    [0, 1]. With image_size, images of another size are refused: AIR's scale prior is in canvas units, so a
    resized scene is a different one. layout: "auto", "channels_first" or "channels_last" for 4-d batches;
    intensity: how values become [0, 1] (INTENSITIES)."""
    if layout not in ("auto", "channels_first", "channels_last"):
        raise AirsceneError(f"layout {layout!r} is unknown: use auto, channels_first or channels_last")
    if channels not in (1, 3):
        raise AirsceneError(f"channels is {channels!r}: models read 1 (grey) or 3 (RGB) channels")
    array = as_array(images, what)
    if array.size == 0:
        raise AirsceneError(f"no {what} given: pass a non-empty batch of shape (B, H, W), (B, C, H, W) or (B, H, W, C)")
    if array.ndim == 2:
        raise AirsceneError(f"{what} have shape {array.shape}, a single image: add a batch axis, e.g. images[None]")
    if array.ndim not in (3, 4):
        raise AirsceneError(f"{what} have shape {array.shape}: give (B, H, W), (B, C, H, W) or (B, H, W, C)")
    array = channels_last(array, image_size, layout, what)
    if image_size is not None and array.shape[1:3] != (image_size, image_size):
        raise AirsceneError(f"{what} are {array.shape[1]}x{array.shape[2]} but the model was trained on "
                            f"{image_size}x{image_size}: resize or crop them to {image_size}x{image_size}")
    array = _to_channels(_float_image(array, what, intensity), channels)
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(array, -1, 1)))


def rescaled(images: torch.Tensor, factor: float) -> torch.Tensor:
    """(B, C, H, W) in [0, 1] resized by `factor` (bilinear, antialiased), as `data import --scale` resizes its
    sources; still in [0, 1] (the filter's float sums put a white pixel a rounding error above 1)."""
    height, width = max(1, round(images.shape[2] * factor)), max(1, round(images.shape[3] * factor))
    return F.interpolate(images, size=(height, width), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)


def read_image(path: str | Path, size: int | None = None, intensity: str = "auto") -> np.ndarray:
    """One image file (PNG, JPEG, TIFF, BMP, ...; 1-, 8-, 16-bit or float; grey, RGB, RGBA or palette) ->
    float32 (H, W, C) in [0, 1], C = 1 (grey), 2 (grey + alpha), 3 (RGB) or 4 (RGBA), turned as its EXIF
    orientation says, its values read as `intensity` says. With `size`, an image of another size is refused
    before it is decoded."""
    raw = read_raw_image(path, size)
    return _float_image(raw[None], f"the pixels of {path}", intensity)[0]


def read_raw_image(path: str | Path, size: int | None = None) -> np.ndarray:
    """One image file as read_image reads it, but (H, W, C) in its own dtype (uint8, uint16, bool or float32)."""
    path = regular_file(as_path(path, "image file"), "image file")

    def check_size(image) -> None:
        if size is not None and image.size != (size, size):
            raise AirsceneError(f"image file {path} is {image.width}x{image.height} but the model was trained on "
                                f"{size}x{size}: resize or crop it to {size}x{size}")

    return _read_file(path, "image file", _decoded, check_size)


def read_label_map(path: str | Path, shape: tuple[int, int]) -> np.ndarray:
    """A label-map image file (0 the background, k object k; grey or palette, 8 or 16 bits) of `shape` (H, W),
    turned as its EXIF orientation says -> (H, W) int64."""
    path = regular_file(as_path(path, "mask file"), "mask file")

    def check_size(image) -> None:
        if (image.height, image.width) != tuple(shape):
            raise AirsceneError(f"mask file {path} is {image.width}x{image.height} but its image is {shape[1]}x{shape[0]}: "
                                "give each image a label map of its own size")

    def labels(image) -> np.ndarray:
        if image.mode not in ("1", "L", "P", "I", "I;16", "I;16B", "I;16L"):
            raise AirsceneError(f"mask file {path} is not a label map (its pixels are {image.mode}: colour, alpha or "
                                "fractions): give single-channel whole-number PNGs or TIFFs, grey or palette, whose "
                                "values number the objects, 0 the background")
        array = np.asarray(image).astype(np.int64)
        if array.min(initial=0) < 0:
            raise AirsceneError(f"mask file {path} holds negative labels: number the objects from 1, 0 the background")
        return array

    return _read_file(path, "mask file", labels, check_size, formats="PNG or TIFF label maps")


def _read_file(path: Path, what: str, decode, check=None, formats: str = "PNG, JPEG, TIFF or BMP files"):
    """Open image file `path`, refuse it if too large or of several frames, turn it as its EXIF orientation
    says, `check` the PIL image (raising AirsceneError), and return decode(image); unreadable: one line."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the size is checked here, in one line
            image = Image.open(path)
        with image:
            if image.width * image.height > MAX_PIXELS:
                raise AirsceneError(f"{what} {path} is {image.width}x{image.height} pixels, more than airscene "
                                    f"decodes ({MAX_PIXELS:,}): crop it, or cut it into tiles first")
            if getattr(image, "n_frames", 1) > 1:
                raise AirsceneError(f"{what} {path} holds {image.n_frames} frames: give one image per file")
            turned = ImageOps.exif_transpose(image)
            if check is not None:
                check(turned)
            return decode(turned)
    except Image.DecompressionBombError:  # Pillow refuses a huge image as it opens it, before the check above
        raise AirsceneError(f"{what} {path} has more pixels than airscene decodes ({MAX_PIXELS:,}): crop it, or cut it "
                            "into tiles first") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise AirsceneError(f"{what} {path} is not a readable image ({type(error).__name__}): give {formats}") from None


def _decoded(image) -> np.ndarray:
    """A PIL image as (H, W, C) in its own dtype (uint8, uint16, bool or float32)."""
    mode = image.mode
    if mode == "P":
        image, mode = image.convert("RGBA"), "RGBA"
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        image, mode = image.convert("RGB"), "RGB"
    elif mode == "PA":
        image, mode = image.convert("RGBA"), "RGBA"
    if mode.startswith("I;16"):
        array = np.asarray(image).astype(np.uint16)
    elif mode == "I":  # 32-bit integer: 16-bit PNGs open this way; wider values have no type range but their own
        array = np.asarray(image)
        if array.size and array.min() >= 0 and array.max() <= 65535:
            array = array.astype(np.uint16)
    elif mode == "F":
        array = np.asarray(image, dtype=np.float32)
    elif mode == "1":
        array = np.asarray(image, dtype=bool)
    else:
        array = np.asarray(image)
    return array[..., None] if array.ndim == 2 else array


def read_images(paths, channels: int, image_size: int | None = None, intensity: str = "auto") -> torch.Tensor:
    """Image files of one size (image_size, where given: checked before decoding) -> float32
    (B, channels, H, W) in [0, 1], each read as `intensity` says."""
    if not paths:
        raise AirsceneError("no image files given: name image files, or folders of them")
    arrays = [read_image(path, image_size, intensity) for path in paths]
    shapes = sorted({array.shape[:2] for array in arrays})
    if len(shapes) > 1:
        raise AirsceneError(f"images have different sizes {shapes}: give images of one size")
    # Each file to the model's channels first: files may mix grey, RGB and alpha.
    return torch.cat([to_model_layout(array[None], channels, image_size, f"the pixels of {path}", "channels_last")
                      for path, array in zip(paths, arrays)])


PNG_MARK = {"Software": "airscene"}  # a text chunk in every PNG airscene writes: how it knows its own files


def marked_png(path: Path) -> bool:
    """Whether `path` is a PNG that airscene wrote (it carries PNG_MARK)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.format == "PNG" and all(image.info.get(key) == value for key, value in PNG_MARK.items())
    except (OSError, UnidentifiedImageError, ValueError):
        return False


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp", ".pgm", ".ppm")


def image_files(directory: str | Path) -> list[Path]:
    """The image files (by suffix) in a folder and its subfolders, sorted by path."""
    directory = Path(directory)
    if not directory.is_dir():
        raise AirsceneError(f"{directory} is not a folder: give a folder of image files")
    return sorted(path for path in directory.rglob("*") if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file())


def is_colour(image: np.ndarray) -> bool:
    """Does an (H, W, C) image from read_image hold colour, not grey saved as RGB?"""
    return image.shape[-1] >= 3 and not (image[..., :3] == image[..., :1]).all()


def quantise(images: torch.Tensor) -> np.ndarray:
    """float (B, C, H, W) in [0, 1] -> uint8 (B, H, W) or (B, H, W, C), the layout of data set files."""
    array = np.clip(np.round(images.numpy() * 255), 0, 255).astype(np.uint8)
    return array[:, 0] if array.shape[1] == 1 else np.moveaxis(array, 1, -1)
