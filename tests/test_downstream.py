"""Downstream tasks: task labels, AIR's per-object features, and heads that learn."""

import numpy as np
import torch
import torch.nn.functional as F

from airscene.config import Config, ModelConfig
from airscene.data import compose_scenes
from airscene.downstream import (TASKS, DigitHead, PairScenes, air_features, air_glimpses, cae_features,
                                 digit_ceiling, fit_and_score, pair_scenes, shifted, train_autoencoder)
from airscene.images import to_model_layout
from airscene.infer import Scenes, TrainedModel
from airscene.model import AIR


def test_pair_scenes_order_digits_left_to_right(tiny_pool):
    pairs = pair_scenes(tiny_pool, 40, seed=0, size=50)
    scenes = compose_scenes(tiny_pool, 40, seed=0, counts=(2,), size=50, progress=False)
    assert np.array_equal(pairs.images, scenes.images) and (scenes.counts == 2).all()
    for digits, boxes, labels in zip(pairs.digits, scenes.boxes, scenes.labels):
        left = 0 if boxes[0, 0] + boxes[0, 2] <= boxes[1, 0] + boxes[1, 2] else 1  # by the box centres
        assert digits.tolist() == [labels[left], labels[1 - left]]
    scenes = PairScenes(images=np.zeros((3, 50, 50), np.uint8), digits=np.array([[3, 4], [4, 3], [5, 5]]))
    assert scenes.targets("sum").tolist() == [7, 7, 10]
    assert scenes.targets("ascending").tolist() == [1, 0, 0]


def test_shifted_moves_each_picture_whole_by_up_to_two_pixels():
    pictures = torch.zeros(300, 2, 9, 9)
    pictures[:, 0, 3:6, 4] = torch.arange(1.0, 4.0)  # a vertical bar, away from the edges
    pictures[:, 1, 4, 4] = 5.0
    moved = shifted(pictures, np.random.default_rng(0))
    assert moved.shape == pictures.shape and torch.equal(moved.sum((2, 3)), pictures.sum((2, 3)))  # nothing lost
    offsets = set()
    for before, after in zip(pictures.flatten(0, 1), moved.flatten(0, 1)):
        (row, column), (row_moved, column_moved) = (np.argwhere(p.numpy() == p.max().item())[0] for p in (before, after))
        dy, dx = row_moved - row, column_moved - column
        assert max(abs(dy), abs(dx)) <= 2 and torch.equal(after, torch.roll(before, (int(dy), int(dx)), (0, 1)))
        offsets.add((int(dy), int(dx)))
    assert len(offsets) == 25  # every move within two pixels happens, and each picture has its own


def drawing_nothing(trained, monkeypatch, drawn=None):
    """The model's decompose, monkeypatched: each step's drawing `drawn` (B, N, H, W), or no ink anywhere."""
    monkeypatch.setattr(trained, "decompose", lambda images: {
        "objects": np.zeros((len(images), 3, 1, 20, 20)) if drawn is None else drawn[:, :, None]})


def test_air_features_order_objects_by_x_and_zero_what_is_missing(monkeypatch):
    config = Config(model=ModelConfig(image_size=20, channels=1, glimpse_size=8, what_size=2, hidden_size=16,
                                      embedding_size=16, glimpse_hidden_size=16))
    trained = TrainedModel(AIR(config.model), config)
    nan = np.nan
    boxes = np.zeros((2, 3, 4))
    boxes[0, :2, 0], boxes[0, :2, 2] = [12, 2], [18, 8]  # the windows' x: where nothing is drawn, they order
    scenes = Scenes(counts=np.array([2, 1]), boxes=boxes,
                    presence=np.array([[0.9, 0.8, 0.1], [0.7, 0.2, 0.0]]),
                    what=np.array([[[1, 1], [2, 2], [nan, nan]], [[3, 3], [nan, nan], [nan, nan]]]),
                    where=np.array([[[2.3, 0.5, 0], [2.3, -0.5, 0], [nan] * 3], [[2.3, 0.1, 0], [nan] * 3, [nan] * 3]]))
    monkeypatch.setattr(trained, "infer", lambda images: scenes)
    drawing_nothing(trained, monkeypatch)
    features = air_features(trained, np.zeros((2, 20, 20), np.uint8))
    assert features.shape == (2, 2 * 6)
    np.testing.assert_allclose(features[0], [0.8, 2.3, -0.5, 0, 2, 2, 0.9, 2.3, 0.5, 0, 1, 1])  # left one first
    np.testing.assert_allclose(features[1], [0.7, 2.3, 0.1, 0, 3, 3] + [0] * 6)
    drawn = np.zeros((2, 3, 20, 20))
    drawn[0, 0, 5:9, 1:9] = 0.8  # the first step draws its digit at columns 1-8, left of the second's 6-9
    drawn[0, 1, 5:9, 6:10] = 0.8  # (their windows say the other way round: a box centre 15 against 5)
    drawn[0, 1, 0, 0] = 0.4  # fainter than INK: not ink
    drawing_nothing(trained, monkeypatch, drawn)
    np.testing.assert_allclose(air_features(trained, np.zeros((2, 20, 20), np.uint8))[0, :6], [0.9, 2.3, 0.5, 0, 1, 1])


def test_air_glimpses_are_the_pixels_under_each_window_left_to_right(monkeypatch):
    config = Config(model=ModelConfig(image_size=20, channels=1, glimpse_size=8, what_size=2, hidden_size=16,
                                      embedding_size=16, glimpse_hidden_size=16))
    trained = TrainedModel(AIR(config.model), config)
    nan = np.nan
    left, right = [2.0, -0.5, 0.0], [2.0, 0.5, 0.0]  # windows half a canvas wide over the left and right halves
    left_box, right_box, none = [0, 5, 10, 15], [10, 5, 20, 15], [nan] * 4  # their pixel boxes
    scenes = Scenes(counts=np.array([2, 1]), boxes=np.array([[right_box, left_box, none], [left_box, none, none]]),
                    presence=np.array([[0.9, 0.8, 0.1], [0.7, 0.2, 0]]), what=np.zeros((2, 3, 2)),
                    where=np.array([[right, left, [nan] * 3], [left, [nan] * 3, [nan] * 3]]))
    monkeypatch.setattr(trained, "infer", lambda images: scenes)
    drawing_nothing(trained, monkeypatch)
    images = np.zeros((2, 20, 20), np.uint8)
    images[:, :, :10], images[:, :, 10:] = 255, 102  # the left half white, the right 40% grey
    glimpses = air_glimpses(trained, images)
    assert glimpses.shape == (2, 2, 8, 8)
    np.testing.assert_allclose(glimpses[0, 0], 1.0, atol=1e-6)  # the left object first, though found second
    np.testing.assert_allclose(glimpses[0, 1], 0.4, atol=1e-6)
    np.testing.assert_allclose(glimpses[1, 0], 1.0, atol=1e-6)
    assert (glimpses[1, 1] == 0).all()  # no second object: an empty glimpse


def test_heads_learn_a_separable_task_from_codes_and_from_pixels():
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 2, 300)
    codes = (np.eye(2)[targets] + 0.1 * rng.standard_normal((300, 2))).astype(np.float32)
    assert fit_and_score("cae", codes[:200], targets[:200], codes[200:], targets[200:], "ascending", 3e-3, 0.0, seed=0) > 0.95
    # two objects, each a noisy one-hot of its class; the label says whether the left class is the smaller
    objects = rng.integers(0, 3, (300, 2))
    codes = (np.eye(3)[objects] + 0.1 * rng.standard_normal((300, 2, 3))).reshape(300, 6).astype(np.float32)
    ordered = (objects[:, 0] < objects[:, 1]).astype(np.int64)
    assert fit_and_score("air", codes[:200], ordered[:200], codes[200:], ordered[200:], "ascending", 3e-3, 0.0, seed=0) > 0.95
    images = np.zeros((300, 16, 16), np.uint8)
    for image, target in zip(images, targets):
        image[:, 8 * target:8 * target + 4] = 255  # a bar whose position is the class
    assert fit_and_score("pixels", images[:200], targets[:200], images[200:], targets[200:], "ascending", 3e-3, 0.0,
                         seed=0) > 0.95
    glimpses = np.zeros((300, 2, 8, 8), np.float32)  # two objects, each a bar whose row is its class
    for pair, classes in zip(glimpses, objects):
        for glimpse, row in zip(pair, classes):
            glimpse[2 * row:2 * row + 2] = 1
    assert fit_and_score("air-glimpses", glimpses[:200], ordered[:200], glimpses[200:], ordered[200:], "ascending",
                         3e-3, 0.0, seed=0) > 0.95


def test_the_digit_head_answers_from_the_two_digits_distributions():
    digits = np.stack(np.meshgrid(np.arange(10), np.arange(10), indexing="ij"), -1).reshape(-1, 2)  # every pair
    pairs = PairScenes(images=np.empty(0), digits=digits)
    for task in TASKS:
        head = DigitHead(torch.nn.Linear(10, 10), (10,), task)
        with torch.no_grad():  # each object's code is its digit, one-hot: the classifier is sure of it
            head.classify.weight.copy_(50 * torch.eye(10))
            head.classify.bias.zero_()
        log_probabilities = head(torch.eye(10)[digits].flatten(1))
        torch.testing.assert_close(log_probabilities.exp().sum(1), torch.ones(100))
        assert np.array_equal(log_probabilities.argmax(1).numpy(), pairs.targets(task)), task
        with torch.no_grad():
            head.classify.weight.zero_()  # unsure: every pair alike
        expected = np.bincount(pairs.targets(task), minlength=TASKS[task]) / 100
        np.testing.assert_allclose(head(torch.eye(10)[digits].flatten(1)).exp()[0].detach().numpy(), expected, atol=1e-6)


def test_the_digit_head_learns_the_digits_from_the_sum_alone():
    rng = np.random.default_rng(0)
    digits = rng.integers(0, 10, (1200, 2))
    codes = (np.eye(10)[digits] + 0.2 * rng.standard_normal((1200, 2, 10))).reshape(1200, 20).astype(np.float32)
    sums = PairScenes(images=np.empty(0), digits=digits).targets("sum")
    accuracy = fit_and_score("air-digits", codes[:1000], sums[:1000], codes[1000:], sums[1000:], "sum", 3e-3, 0.0, seed=0)
    assert accuracy > 0.95


def test_digit_ceiling_learns_digits_from_their_labels(tiny_pool):
    accuracy = digit_ceiling(tiny_pool, tiny_pool, seed=0, steps=150)
    chance = np.bincount(tiny_pool.labels).max() / len(tiny_pool)
    assert accuracy > max(0.8, 2 * chance)


def test_autoencoder_learns_codes_that_tell_images_apart():
    """Trained without labels on images of three kinds (a bar in one of three places, noisy), the CAE
    reconstructs them far better than at the start, and its codes separate the kinds for a linear head."""
    rng = np.random.default_rng(0)
    kinds = rng.integers(0, 3, 300)
    images = rng.integers(0, 40, (300, 16, 16)).astype(np.uint8)
    for image, kind in zip(images, kinds):
        image[:, 5 * kind:5 * kind + 4] = 255
    batch = to_model_layout(images[:64], 1)

    def reconstruction_error(autoencoder):
        with torch.no_grad():
            return F.binary_cross_entropy_with_logits(autoencoder(batch), batch).item()

    untrained, trained = (train_autoencoder(images, steps=steps, seed=0, code_size=12) for steps in (0, 150))
    assert reconstruction_error(trained) < 0.7 * reconstruction_error(untrained)
    codes = cae_features(trained, images)
    assert codes.shape == (300, 12)
    first = (kinds == 0).astype(np.int64)  # the bar in the first place or not: a two-class task
    assert fit_and_score("cae", codes[:200], first[:200], codes[200:], first[200:], "ascending", 3e-3, 0.0, seed=0) > 0.9
