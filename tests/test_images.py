"""One scene is one image, whatever the file format, bit depth, channels or array layout it comes in."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from airscene import images as images_module
from airscene.errors import AirsceneError
from airscene.images import read_image, read_images, to_model_layout


def save_as(grey: np.ndarray, path, form: str) -> None:
    """A uint8 (H, W) grey image saved in one of the forms users have."""
    if form == "png8":
        Image.fromarray(grey, "L").save(path)
    elif form == "png16":
        Image.fromarray(grey.astype(np.uint16) * 257).save(path)  # 0-255 stretched to 0-65535
    elif form == "tiff-float":
        Image.fromarray(grey.astype(np.float32) / 255, "F").save(path)
    elif form == "png-rgb":
        Image.fromarray(np.repeat(grey[..., None], 3, -1), "RGB").save(path)
    elif form == "png-rgba":
        opaque = np.full_like(grey, 255)
        Image.fromarray(np.stack([grey, grey, grey, opaque], -1), "RGBA").save(path)
    elif form == "png-la":
        Image.fromarray(np.stack([grey, np.full_like(grey, 255)], -1), "LA").save(path)
    elif form == "png-palette":
        Image.fromarray(grey, "L").convert("P", palette=Image.Palette.ADAPTIVE, colors=256).save(path)
    elif form == "jpeg-quality-100":
        Image.fromarray(grey, "L").save(path, quality=100, subsampling=0)
    elif form == "bmp":
        Image.fromarray(grey, "L").save(path)


EXACT_FORMS = ("png8", "png16", "tiff-float", "png-rgb", "png-rgba", "png-la", "png-palette", "bmp")
SUFFIX = {"tiff-float": ".tif", "jpeg-quality-100": ".jpg", "bmp": ".bmp"}


@settings(max_examples=40, deadline=None)
@given(grey=arrays(np.uint8, st.tuples(st.integers(1, 12), st.integers(1, 12))), form=st.sampled_from(EXACT_FORMS))
def test_every_lossless_form_of_a_grey_scene_reads_as_the_same_image(tmp_path_factory, grey, form):
    path = tmp_path_factory.mktemp("image") / f"scene{SUFFIX.get(form, '.png')}"
    if form == "png-palette" and len(np.unique(grey)) > 256:
        return
    save_as(grey, path, form)
    read = to_model_layout(read_image(path, intensity="full")[None], channels=1, layout="channels_last")
    np.testing.assert_allclose(read[0, 0].numpy(), grey / 255, atol=1e-6)


@settings(max_examples=30, deadline=None)
@given(colour=arrays(np.uint8, st.tuples(st.integers(1, 10), st.integers(1, 10), st.just(3))),
       alpha=st.integers(0, 255))
def test_colour_and_transparency(tmp_path_factory, colour, alpha):
    """RGB reads as itself; RGBA is composited over black; a grey model sees the luminance."""
    directory = tmp_path_factory.mktemp("colour")
    Image.fromarray(colour, "RGB").save(directory / "rgb.png")
    Image.fromarray(np.concatenate([colour, np.full_like(colour[..., :1], alpha)], -1), "RGBA").save(directory / "rgba.png")
    read = {name: read_image(directory / f"{name}.png")[None] for name in ("rgb", "rgba")}
    rgb = to_model_layout(read["rgb"], channels=3, layout="channels_last")[0]
    np.testing.assert_allclose(rgb.permute(1, 2, 0).numpy(), colour / 255, atol=1e-6)
    rgba = to_model_layout(read["rgba"], channels=3, layout="channels_last")[0]
    np.testing.assert_allclose(rgba.permute(1, 2, 0).numpy(), colour / 255 * alpha / 255, atol=1e-6)
    grey = to_model_layout(read["rgb"], channels=1, layout="channels_last")[0, 0]
    np.testing.assert_allclose(grey.numpy(), (colour / 255) @ np.array([0.299, 0.587, 0.114]), atol=1e-5)


@settings(max_examples=40, deadline=None)
@given(batch=arrays(np.uint8, st.tuples(st.integers(1, 3), st.integers(5, 9), st.integers(5, 9), st.sampled_from([1, 3]))))
def test_array_layouts_and_dtypes_agree(batch):
    """Channel-last and channel-first, uint8, uint16, float32, float64, bfloat16 and torch tensors: one
    batch of images, one result."""
    channels = batch.shape[-1]
    expected = to_model_layout(batch, channels)
    forms = [np.moveaxis(batch, -1, 1), batch.astype(np.uint16) * 257, batch.astype(np.float32) / 255,
             batch.astype(np.float64) / 255, torch.from_numpy(np.moveaxis(batch, -1, 1).copy())]
    if channels == 1:
        forms.append(batch[..., 0])
    for form in forms:
        torch.testing.assert_close(to_model_layout(form, channels), expected, atol=1e-6, rtol=0)
    as_bfloat16 = torch.from_numpy(batch.astype(np.float32) / 255).to(torch.bfloat16)  # numpy has no bfloat16
    torch.testing.assert_close(to_model_layout(as_bfloat16, channels), to_model_layout(as_bfloat16.float(), channels))


def test_lossy_jpeg_reads_close_to_the_scene(tmp_path):
    grey = np.tile(np.linspace(0, 255, 16).astype(np.uint8), (16, 1))
    save_as(grey, tmp_path / "scene.jpg", "jpeg-quality-100")
    np.testing.assert_allclose(read_image(tmp_path / "scene.jpg")[..., 0], grey / 255, atol=3 / 255)


def test_ambiguous_tiny_layouts_are_refused_unless_the_size_or_layout_says():
    tiny = np.zeros((2, 3, 3, 3), np.uint8)
    with pytest.raises(AirsceneError, match="could be \\(B, C, H, W\\) or \\(B, H, W, C\\)"):
        to_model_layout(tiny, 3)
    with pytest.raises(AirsceneError, match="could be"):
        to_model_layout(tiny, 3, image_size=3)  # both layouts give 3x3 images
    tiny[:, 0] = 255  # channel 0 if channel-first, row 0 if channel-last
    assert to_model_layout(tiny, 3, layout="channels_last")[:, :, 0].min() == 1
    assert to_model_layout(tiny, 3, layout="channels_first")[:, 0].min() == 1
    assert to_model_layout(np.zeros((2, 3, 4, 4)), 3, image_size=4).shape == (2, 3, 4, 4)  # the size decides


def test_read_images_mixes_forms_and_refuses_mixed_sizes(tmp_path):
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    paths = []
    for form in ("png8", "png16", "png-rgba"):
        paths.append(tmp_path / f"{form}.png")
        save_as(grey, paths[-1], form)
    batch = read_images(paths, channels=1, image_size=8, intensity="full")
    assert batch.shape == (3, 1, 8, 8) and torch.equal(batch[0], batch[1]) and torch.equal(batch[0], batch[2])
    Image.fromarray(np.zeros((9, 8), np.uint8)).save(tmp_path / "other.png")
    with pytest.raises(AirsceneError, match=r"different sizes \[\(8, 8\), \(9, 8\)\]"):
        read_images([*paths, tmp_path / "other.png"], channels=1)
    with pytest.raises(AirsceneError, match="png8.png is 8x8 but the model was trained on 10x10"):
        read_images(paths, channels=1, image_size=10)


def test_unreadable_files_get_one_line_errors(tmp_path, monkeypatch):
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(AirsceneError, match="text.png is not a readable image"):
        read_image(tmp_path / "text.png")
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(tmp_path / "cut.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "cut.png").read_bytes()[:40])
    with pytest.raises(AirsceneError, match="cut.png is not a readable image"):
        read_image(tmp_path / "cut.png")
    with pytest.raises(AirsceneError, match="absent.png does not exist"):
        read_image(tmp_path / "absent.png")
    Image.fromarray(np.full((4, 4), 2**20, np.int32), "I").save(tmp_path / "deep.tif")
    with pytest.raises(AirsceneError, match="deep.tif have dtype int32, which has no range read as"):
        read_image(tmp_path / "deep.tif", intensity="full")
    Image.fromarray(np.full((4, 4), 2.0, np.float32), "F").save(tmp_path / "bright.tif")
    with pytest.raises(AirsceneError, match=r"are float in \[2, 2\], not \[0, 1\]"):
        read_image(tmp_path / "bright.tif", intensity="full")
    monkeypatch.setattr(images_module, "MAX_PIXELS", 50)
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(tmp_path / "large.png")
    with pytest.raises(AirsceneError, match="large.png is 10x10 pixels, more than airscene decodes"):
        read_image(tmp_path / "large.png")


def test_the_exif_orientation_turns_the_image(tmp_path):
    grey = np.zeros((6, 10), np.uint8)
    grey[0, :3] = 255  # a mark at the top left
    turned = Image.fromarray(np.rot90(grey).copy())  # stored turned a quarter counter-clockwise...
    exif = turned.getexif()
    exif[0x0112] = 6  # ... with the EXIF tag that turns it back (a quarter clockwise) for display
    turned.save(tmp_path / "turned.png", exif=exif)
    np.testing.assert_array_equal(read_image(tmp_path / "turned.png")[..., 0], grey / 255)
