"""A user's own images: imported from folders and arrays with or without labels, every command on the
unlabelled grey and colour runs they make, scenes composed from any object images, and the object size."""

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

import airscene
from airscene.cli import main
from airscene.config import ModelConfig
from airscene.data import load_dataset, make_scenes
from airscene.data.imports import import_images, suggest_object_size
from airscene.data.scenes import visible_fractions
from airscene.errors import AirsceneError
from airscene.model.priors import object_size_prior
from airscene.model.transformer import window_boxes
from airscene.model.priors import apply_object_size
from test_images import SUFFIX, save_as

TINY = ["--glimpse-size", "10", "--what-size", "8", "--hidden-size", "32", "--embedding-size", "32",
        "--glimpse-hidden-size", "32", "--batch-size", "8", "--eval-every", "5", "--log-every", "5",
        "--checkpoint-every", "5", "--eval-images", "16"]


def scene_folder(directory, colour: bool, number: int = 24):
    """A folder of sprite scenes as PNG files (and the scenes), as a user's photographs would be."""
    sprites = airscene.data.sprites(number, counts=(0, 1, 2), size=32, side_range=(6, 10), colour=colour, seed=3,
                                    overlap=False, progress=False)
    directory.mkdir()
    for index, image in enumerate(sprites.images):
        Image.fromarray(image).save(directory / f"scene{index:02d}.png")
    return sprites


@pytest.fixture(scope="module", params=[False, True], ids=["grey", "colour"])
def unlabelled_run(request, tmp_path_factory):
    """An unlabelled data set imported from a folder of PNGs, and a short run trained on it."""
    root = tmp_path_factory.mktemp("own")
    scene_folder(root / "photos", colour=request.param)
    assert main(["data", "import", str(root / "photos"), "--out", str(root / "data")]) == 0
    assert main(["train", "--data", str(root / "data"), "--out", str(root / "run"), "--quiet", "--steps", "10",
                 "--max-objects", "2", "--object-size", "6,10", *TINY]) == 0
    return root, request.param


def test_import_keeps_every_pixel_and_splits_by_source_file(tmp_path):
    scenes = scene_folder(tmp_path / "photos", colour=False)
    settings = import_images(tmp_path / "photos", tmp_path / "data", test_fraction=0.25, seed=1)
    train, test, saved = load_dataset(tmp_path / "data")
    assert train.known == test.known == ("origins",) and saved["channels"] == 1 and len(test) == 6
    for split in (train, test):
        np.testing.assert_array_equal(split.images, scenes.images[split.origins[:, 0]])
    assert not set(train.origins[:, 0]) & set(test.origins[:, 0])
    assert settings["source_files"][0] == "scene00.png"


def test_import_reads_each_file_as_the_same_image_whatever_its_format(tmp_path):
    grey = np.random.default_rng(0).integers(0, 256, (16, 16)).astype(np.uint8)
    (tmp_path / "photos").mkdir()
    for form in ("png8", "png16", "tiff-float", "png-rgba", "png-palette"):
        save_as(grey, tmp_path / "photos" / f"{form}{SUFFIX.get(form, '.png')}", form)
    import_images(tmp_path / "photos", tmp_path / "data", test_fraction=0.0)
    train, _, _ = load_dataset(tmp_path / "data")
    assert len(train) == 5 and all(np.array_equal(image, grey) for image in train.images)


def test_tiles_and_labels_from_a_csv(tmp_path):
    """A large image cut into tiles: each tile counts the objects whose box centre it holds, boxes clipped."""
    (tmp_path / "photos").mkdir()
    image = np.zeros((40, 60), np.uint8)
    boxes = [(2, 2, 8, 8), (22, 4, 28, 10), (45, 25, 55, 35)]
    for x0, y0, x1, y1 in boxes:
        image[y0:y1, x0:x1] = 200
    Image.fromarray(image).save(tmp_path / "photos" / "big.png")
    Image.fromarray(image).save(tmp_path / "photos" / "copy.png")
    with open(tmp_path / "labels.csv", "w") as handle:
        for name in ("big.png", "copy.png"):
            handle.write("file,count,boxes\n" if name == "big.png" else "")
            handle.write(f'{name},3,"{"; ".join(" ".join(map(str, box)) for box in boxes)}"\n')
    import_images(tmp_path / "photos", tmp_path / "data", tile=20, stride=20, labels=tmp_path / "labels.csv",
                  test_fraction=0.5, seed=0)
    train, test, _ = load_dataset(tmp_path / "data")
    assert len(train) == len(test) == 6 and train.known == ("counts", "boxes", "origins")
    by_corner = {tuple(origin[1:]): (count, box) for origin, count, box in zip(train.origins, train.counts, train.boxes)}
    assert by_corner[(0, 0)][0] == 1 and by_corner[(20, 0)][0] == 1 and by_corner[(40, 20)][0] == 1
    assert by_corner[(40, 0)][0] == 0 and by_corner[(0, 20)][0] == 0
    assert by_corner[(40, 20)][1][0].tolist() == [5, 5, 15, 15]  # in the tile's own pixels
    with open(tmp_path / "counts.csv", "w") as handle:
        handle.write("file,count\nbig.png,3\ncopy.png,3\n")
    with pytest.raises(AirsceneError, match="counts but no boxes cannot say how many objects each tile"):
        import_images(tmp_path / "photos", tmp_path / "other", tile=20, labels=tmp_path / "counts.csv")
    with open(tmp_path / "bad.csv", "w") as handle:
        handle.write("file,count\nbig.png,three\ncopy.png,1\n")
    with pytest.raises(AirsceneError, match="bad.csv, line 2: count must be a whole number"):
        import_images(tmp_path / "photos", tmp_path / "other", tile=20, labels=tmp_path / "bad.csv")


def test_import_of_arrays_and_refusals(tmp_path):
    images = np.random.default_rng(0).random((6, 3, 12, 12)).astype(np.float32)  # channel-first floats
    np.savez(tmp_path / "set.npz", images=images)
    import_images(tmp_path / "set.npz", tmp_path / "data", test_fraction=0.0)
    train, _, saved = load_dataset(tmp_path / "data")
    assert saved["channels"] == 3 and train.images.shape == (6, 12, 12, 3)
    np.testing.assert_allclose(train.images / 255, images.transpose(0, 2, 3, 1), atol=0.5 / 255 + 1e-6)
    Image.fromarray(np.zeros((10, 14), np.uint8)).save(tmp_path / "wide.png")
    (tmp_path / "folder").mkdir()
    (tmp_path / "wide.png").rename(tmp_path / "folder" / "wide.png")
    with pytest.raises(AirsceneError, match="is 14x10, not square: give --size"):
        import_images(tmp_path / "folder", tmp_path / "other")
    import_images(tmp_path / "folder", tmp_path / "resized", size=8, test_fraction=0.0)
    assert load_dataset(tmp_path / "resized")[0].images.shape == (1, 8, 8)
    with pytest.raises(AirsceneError, match="give --size .* or --tile .*, not both"):
        import_images(tmp_path / "folder", tmp_path / "other", size=8, tile=8)
    with pytest.raises(AirsceneError, match="holds no image files"):
        import_images(tmp_path / "data", tmp_path / "other")


def test_every_command_runs_on_an_unlabelled_run_and_says_what_is_missing(unlabelled_run, capsys):
    root, colour = unlabelled_run
    run, photos = root / "run", root / "photos"
    capsys.readouterr()
    assert main(["eval", str(run), "--samples", "2"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["missing_labels"] == ["counts", "boxes", "masks"] and "count_accuracy" not in metrics and "fg_ari" not in metrics
    assert np.isfinite(metrics["test_elbo"]) and sum(metrics["inferred_counts"]) == metrics["images"]
    assert (run / "reconstructions.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["viz", str(run)]) == 0 and (run / "figure3.png").is_file()
    assert main(["gradvar", str(run), "--samples", "3", "--batch-size", "2", "--baseline-steps", "1"]) == 0
    assert main(["infer", str(run), str(photos), "--out", str(root / "objects.csv"), "--draw", str(root / "drawn")]) == 0
    rows = list(csv.DictReader(open(root / "objects.csv")))
    scenes = airscene.load(run).infer(np.stack([np.asarray(Image.open(path)) for path in sorted(photos.iterdir())]))
    assert len(rows) == sum(max(1, count) for count in scenes.counts)  # a row per object, one per empty image
    assert len(list((root / "drawn").iterdir())) == 24
    assert airscene.load(run).config.model.channels == (3 if colour else 1)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "eval" and r["test_elbo"] is not None] == [5, 10]


def test_the_main_job_on_an_unlabelled_colour_data_set(tmp_path, capsys):
    scene_folder(tmp_path / "photos", colour=True)
    import_images(tmp_path / "photos", tmp_path / "data")
    assert main(["run", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"), "--quiet", "--steps", "5",
                 "--max-objects", "2", *TINY]) == 0
    printed = capsys.readouterr().out
    assert "the data has no counts or boxes" in printed and "figure3.png" in printed


def test_object_size_sets_the_prior_and_bounds_the_window():
    model = ModelConfig(image_size=50, channels=1, object_size=(10.0, 20.0))
    apply_object_size(model)
    mean, sd, min_scale = object_size_prior((10.0, 20.0), 50, 1.5)
    assert model.where_prior_mean[0] == mean and model.where_prior_sd[0] == sd and model.min_scale == min_scale
    # windows of the prior's range frame objects of 10 to 20 pixels with a margin
    widths = [50 / (mean + 2 * sd), 50 / (mean - 2 * sd)]
    assert 10 <= widths[0] <= 12 and 20 <= widths[1] <= 23
    # however far the scale strays, a window is never as wide as two of the largest objects
    boxes = window_boxes(torch.tensor([[-50.0, 0, 0], [0.0, 0, 0], [1.0, 0, 0]]), 50, model.min_scale)
    assert ((boxes[:, 2] - boxes[:, 0]) <= 1.5 * 20 + 1e-4).all()
    apply_object_size(model)  # a resumed run's config: already derived, unchanged
    assert model.min_scale == min_scale
    tighter = ModelConfig(image_size=50, channels=1, object_size=(10.0, 20.0), window_limit=1.2)
    apply_object_size(tighter)  # the same prior, a narrower bound
    assert tighter.where_prior_mean == model.where_prior_mean and tighter.min_scale > model.min_scale
    widest = window_boxes(torch.tensor([[-50.0, 0, 0]]), 50, tighter.min_scale)[0]
    assert widest[2] - widest[0] == pytest.approx(1.2 * 20, abs=1e-3)
    conflicting = ModelConfig(image_size=50, channels=1, object_size=(20.0,), where_prior_mean=(3.0, 0.0, 0.0))
    with pytest.raises(AirsceneError, match="object_size and where_prior_mean are both given"):
        apply_object_size(conflicting)


def test_the_measured_object_size_matches_known_sprites(tmp_path):
    sprites = airscene.data.sprites(300, counts=(1, 2), size=50, side_range=(12, 18), overlap=False, seed=0,
                                    progress=False)
    measured = suggest_object_size(sprites.images)
    low, high = measured["object_size"]
    assert 11 <= low <= 14 and 16 <= high <= 19 and measured["max_objects"] == 2


def test_the_measured_object_size_of_dark_objects_on_a_light_background():
    sprites = airscene.data.sprites(300, counts=(1, 2), size=50, side_range=(12, 18), overlap=False, seed=0,
                                    progress=False)
    measured = suggest_object_size(255 - sprites.images)  # sweets on a white table
    low, high = measured["object_size"]
    assert 11 <= low <= 14 and 16 <= high <= 19 and measured["max_objects"] == 2
    assert "at or below Otsu's threshold" in measured["method"]


def test_scenes_from_a_folder_of_transparent_cut_outs(tmp_path):
    """Objects with transparent backgrounds, in class subfolders: composited over black, held-out
    instances only in the test scenes, labels from the subfolders."""
    rng = np.random.default_rng(0)
    for kind in ("circle", "cross"):
        (tmp_path / "objects" / kind).mkdir(parents=True)
        for index in range(5):
            rgba = np.zeros((12, 12, 4), np.uint8)
            rgba[..., :3] = rng.integers(100, 256, 3)
            rgba[2:10, 2:10, 3] = 255  # opaque square, transparent border
            Image.fromarray(rgba, "RGBA").save(tmp_path / "objects" / kind / f"{index}.png")
    settings = make_scenes(tmp_path / "data", objects=str(tmp_path / "objects"), train=40, test=20, counts=(1, 2),
                           size=32, test_fraction=0.2, progress=False)
    train, test, _ = load_dataset(tmp_path / "data")
    assert train.images.shape[1:] == (32, 32, 3) and settings["object_size"] == [8.0, 8.0]
    assert set(np.unique(train.labels[train.labels >= 0])) == {0, 1}
    for box, image in ((train.boxes[0, 0], train.images[0]), (test.boxes[0, 0], test.images[0])):
        x0, y0, x1, y1 = box
        assert (x1 - x0, y1 - y0) == (8, 8) and image[y0:y1, x0:x1].min() >= 100  # opaque part only
    train_colours = {tuple(image[y0, x0]) for image, (x0, y0, *_) in zip(train.images, train.boxes[:, 0])}
    test_colours = {tuple(image[y0, x0]) for image, (x0, y0, *_) in zip(test.images, test.boxes[:, 0])}
    assert not train_colours & test_colours  # the held-out instances were never in a training scene


def test_sprites_without_overlap_have_disjoint_boxes():
    scenes = airscene.data.sprites(200, counts=(3,), size=50, side_range=(10, 14), overlap=False, seed=1, progress=False)
    for boxes in scenes.boxes:
        covered = np.zeros((50, 50), int)
        for x0, y0, x1, y1 in boxes:
            covered[y0:y1, x0:x1] += 1
        assert covered.max() == 1


def test_occluding_sprites_keep_the_visible_share_asked_for():
    def least_visible(scenes):
        shares = []
        for boxes, labels in zip(scenes.boxes, scenes.labels):
            drawn = [(int(kind), (int(x0), int(y0), int(x1 - x0)), None) for (x0, y0, x1, _), kind in zip(boxes, labels)]
            shares.append(min(visible_fractions(drawn, 50)))
        return np.array(shares)

    free = airscene.data.sprites(300, counts=(3,), seed=2, progress=False)
    kept = airscene.data.sprites(300, counts=(3,), seed=2, min_visible=0.6, progress=False)
    assert (least_visible(free) < 0.6).sum() > 20  # unconstrained sprites often hide one another
    assert least_visible(kept).min() >= 0.6
    with pytest.raises(AirsceneError, match="--min-visible"):
        airscene.data.sprites(3, min_visible=1.5, progress=False)


def test_placement_scales_to_dozens_of_objects():
    pool = airscene.data.ObjectPool(images=np.pad(np.full((10, 10, 8), 255, np.uint8)[..., 0], 2)[None].repeat(4, 0),
                                    labels=np.arange(4))
    scenes = airscene.data.compose_scenes(pool, 20, counts=(40,), size=200, seed=0, progress=False)
    assert (scenes.counts == 40).all()
    for boxes in scenes.boxes:
        covered = np.zeros((200, 200), int)
        for x0, y0, x1, y1 in boxes:
            covered[y0:y1, x0:x1] += 1
        assert covered.max() == 1


# --- what a careless or hostile user may hand the import ---------------------------------------------

def labelled_folder(directory):
    """Two 20 x 30 grey images, each with one object at (2, 2)-(8, 8)."""
    directory.mkdir()
    image = np.zeros((20, 30), np.uint8)
    image[2:8, 2:8] = 200
    for name in ("a.png", "b.png"):
        Image.fromarray(image).save(directory / name)
    return directory


@pytest.mark.parametrize("rows, message", [
    (["a.png,1,0 0 nan 5", "b.png,0,"], "in plain digits"),
    (["a.png,1,0 0 inf 5", "b.png,0,"], "in plain digits"),
    (["a.png,1,0 0 1e999 5", "b.png,0,"], "boxes must be finite pixels"),
    (["a.png,\u0661,\u0660 \u0660 \u0661\u0660 \u0661\u0660", "b.png,0,"], "in plain digits"),
    (["a.png,1_0,", "b.png,0,"], "in plain digits"),
    (["a.png,1,0 0 5 5,extra", "b.png,0,"], "line 2: the row has more cells than the header"),
    (["a.png,1", "b.png,0,"], "line 2: the row has fewer cells than the header"),
    (["a.png,1,8 8 2 2", "b.png,0,"], "boxes must be finite pixels x0 y0 x1 y1 with 0 <= x0 < x1"),
    (["a.png,1,-3 0 2 2", "b.png,0,"], "boxes must be finite pixels"),
    (["a.png,1,2 2 40 8", "b.png,0,"], "a box of 'a.png' leaves its 30x20 pixels"),
    (["a.png,1,2 2 8 8", "a.png,0,", "b.png,0,"], "line 3: 'a.png' has a row already"),
    (["a.png,99999999,", "b.png,0,"], "the count 99999999 is not from 0 to 10000"),
])
def test_labels_that_would_turn_into_wrong_counts_are_refused(tmp_path, rows, message):
    labelled_folder(tmp_path / "photos")
    (tmp_path / "labels.csv").write_text("file,count,boxes\n" + "\n".join(rows) + "\n")
    with pytest.raises(AirsceneError, match=message):
        import_images(tmp_path / "photos", tmp_path / "data", tile=10, labels=tmp_path / "labels.csv")
    assert not (tmp_path / "data").exists()  # the folder it made for the failed import is gone


def test_a_labels_file_with_a_byte_order_mark_is_read(tmp_path):
    labelled_folder(tmp_path / "photos")
    (tmp_path / "labels.csv").write_bytes(b"\xef\xbb\xbffile,count,boxes\r\na.png,1,2 2 8 8\r\nb.png,1,2 2 8 8\r\n")
    import_images(tmp_path / "photos", tmp_path / "data", tile=10, labels=tmp_path / "labels.csv", test_fraction=0.0)
    assert sorted(load_dataset(tmp_path / "data")[0].counts.tolist()) == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1]


def test_a_data_set_is_replaced_only_when_asked_and_no_one_elses_folder_ever(tmp_path, capsys):
    photos = labelled_folder(tmp_path / "photos")
    command = ["data", "import", str(photos), "--tile", "10", "--out"]
    assert main([*command, str(tmp_path / "data")]) == 0
    before = (tmp_path / "data" / "dataset.json").read_bytes()
    assert main([*command, str(tmp_path / "data"), "--stride", "5"]) == 2
    assert "already holds a data set: pass --force to replace it" in capsys.readouterr().err
    assert (tmp_path / "data" / "dataset.json").read_bytes() == before
    assert main(["data", "import", str(photos), "--size", "8", "--out", str(tmp_path / "data"), "--force"]) == 0
    assert load_dataset(tmp_path / "data")[0].images.shape[1:] == (8, 8)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    for maker in (["data", "sprites", "--train", "8", "--test", "8"], command[:5]):
        assert main([*maker, "--out", str(mine), "--force"]) == 2
        assert f"data directory {mine} holds files that are not an airscene data set (notes.txt)" in capsys.readouterr().err
    assert sorted(path.name for path in mine.iterdir()) == ["notes.txt"]
    for inside in (photos, photos / "data"):  # no command writes where it reads
        assert main([*command, str(inside)]) == 2
        assert "is where this command reads from" in capsys.readouterr().err
    assert sorted(path.name for path in photos.iterdir()) == ["a.png", "b.png"]


def test_arrays_of_every_kind_are_read_or_refused_in_one_line(tmp_path):
    images = (np.random.default_rng(0).random((4, 12, 12)) * 255).astype(np.uint8)
    np.save(tmp_path / "set.npy", images)
    import_images(tmp_path / "set.npy", tmp_path / "data", test_fraction=0.0)
    assert np.array_equal(load_dataset(tmp_path / "data")[0].images, images)
    (tmp_path / "cut.npy").write_bytes((tmp_path / "set.npy").read_bytes()[:300])
    np.savez(tmp_path / "set.npz", images=images)
    (tmp_path / "cut.npz").write_bytes((tmp_path / "set.npz").read_bytes()[:300])
    np.save(tmp_path / "objects.npy", np.array([images[0], "text"], dtype=object), allow_pickle=True)
    np.save(tmp_path / "flat.npy", np.zeros(7, np.uint8))
    np.save(tmp_path / "tiny.npy", np.zeros((4, 2, 2), np.uint8))
    for name, message in (("cut.npy", "is not a readable .npy file"), ("cut.npz", "is not a readable .npz file"),
                          ("objects.npy", "is not a readable .npy file"), ("flat.npy", "of shape \\(7,\\)"),
                          ("tiny.npy", "2x2 canvases, smaller than the 4x4 AIR needs")):
        with pytest.raises(AirsceneError, match=message):
            import_images(tmp_path / name, tmp_path / "other")
        assert not (tmp_path / "other").exists()


@pytest.mark.parametrize("options, message", [
    (dict(scale="2"), "setting scale = '2' is invalid"),
    (dict(scale=1000.0), "setting scale = 1000.0 is invalid \\(--scale\\): use a finite number >= 0.01 and <= 100"),
    (dict(tile=0), "setting tile = 0 is invalid"),
    (dict(labels=5), "labels file is 5: give a path"),
    (dict(colour="yes"), "colour is 'yes'"),
    (dict(force=1), "force is 1: give True or False"),
    (dict(seed=-1), "setting seed = -1 is invalid"),
])
def test_the_import_api_refuses_arguments_it_cannot_use(tmp_path, options, message):
    labelled_folder(tmp_path / "photos")
    with pytest.raises(AirsceneError, match=message):
        import_images(tmp_path / "photos", tmp_path / "data", **{"tile": 10, **options})
    assert not (tmp_path / "data").exists()


def test_sizes_that_would_exhaust_memory_are_refused_before_allocation(tmp_path, monkeypatch):
    labelled_folder(tmp_path / "photos")
    Image.fromarray(np.zeros((90, 100), np.uint8)).save(tmp_path / "photos" / "c.png")
    with pytest.raises(AirsceneError, match="--scale 100.0 makes source image c.png 10000x9000 pixels, more than airscene "
                                            "holds \\(67,108,864\\)"):
        import_images(tmp_path / "photos", tmp_path / "data", scale=100.0, tile=10)
    import_images(tmp_path / "photos", tmp_path / "data", tile=4, stride=np.int64(2), seed=np.int64(1))  # numpy ints do
    monkeypatch.setattr("airscene.data.imports.MAX_CANVASES", 500)  # as if the tiles were millions
    with pytest.raises(AirsceneError, match="the import would hold more than 500 canvases"):
        import_images(tmp_path / "photos", tmp_path / "more", tile=4, stride=1)  # 459 tiles from each 20 x 30 image
    (tmp_path / "big").mkdir()
    (tmp_path / "photos" / "c.png").rename(tmp_path / "big" / "c.png")
    with pytest.raises(AirsceneError, match="source image c.png would give 8,439 tiles, more than the 500 canvases"):
        import_images(tmp_path / "big", tmp_path / "more", tile=4, stride=1)
