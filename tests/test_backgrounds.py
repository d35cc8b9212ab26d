"""Objects on backgrounds: a background with its own latent, objects that occlude (alpha compositing, step 1
in front), both through every estimator and DAIR, and data with held-out photographic backgrounds."""

import json

import numpy as np
import pytest
import torch

from airscene.cli import _config_file
from airscene.config import Config, ModelConfig, TrainConfig
from airscene.data import load_dataset, make_multi_mnist
from airscene.data.backgrounds import TEST_PHOTOS, TRAIN_PHOTOS, background_pools
from airscene.estimators import Batch, Enumerate
from airscene.errors import AirsceneError
from airscene.model import AIR
from airscene.model.air import composite
from airscene.runs import make_optimiser
from test_model import small_config


def test_an_opaque_front_object_hides_what_lies_behind_it():
    background = torch.full((1, 1, 4, 4), 0.2)
    front = torch.zeros(1, 2, 4, 4)
    front[0, 0, :2] = 0.9  # appearance: the top half
    front[0, 1, :2] = 1.0  # opacity: fully opaque there
    back = torch.zeros(1, 2, 4, 4)
    back[0, 0], back[0, 1] = 0.5, 1.0  # everywhere, opaque
    canvases = composite(torch.stack([front, back], 1), background, torch.ones(1, 2), alpha=True)  # (1, 3, 1, 4, 4)
    torch.testing.assert_close(canvases[0, 0], background[0])
    assert torch.allclose(canvases[0, 1, 0, :2], torch.tensor(0.9)) and torch.allclose(canvases[0, 1, 0, 2:], torch.tensor(0.2))
    assert torch.allclose(canvases[0, 2, 0, :2], torch.tensor(0.9)) and torch.allclose(canvases[0, 2, 0, 2:], torch.tensor(0.5))
    hidden = composite(torch.stack([front, back], 1), background, torch.tensor([[0.0, 1.0]]), alpha=True)
    assert torch.allclose(hidden[0, 2], torch.tensor(0.5))  # an absent front object hides nothing
    additive = composite(torch.stack([front[:, :1], back[:, :1]], 1), background, torch.ones(1, 2), alpha=False)
    torch.testing.assert_close(additive[0, 2], background[0] + front[0, :1] + back[0, :1])


def test_half_transparent_objects_blend_in_depth_order():
    torch.manual_seed(0)
    objects = torch.rand(3, 2, 4, 5, 5)  # (B, N, C + 1, H, W)
    weights = torch.rand(3, 2)
    background = torch.rand(3, 3, 5, 5)
    last = composite(objects, background, weights, alpha=True)[:, -1]
    # drawn back to front, one "over" at a time: the back object first, then the front one
    expected = background.clone()
    for step in (1, 0):
        opacity = weights[:, step, None, None, None] * objects[:, step, 3:4]
        expected = opacity * objects[:, step, :3] + (1 - opacity) * expected
    torch.testing.assert_close(last, expected)


@pytest.mark.parametrize("background, compositing", [("learned", "add"), ("none", "alpha"), ("learned", "alpha")])
def test_every_prefix_likelihood_is_the_likelihood_of_its_canvas(background, compositing):
    torch.manual_seed(1)
    model = AIR(small_config(background=background, compositing=compositing, count_prior=0.2))
    trace = model(torch.rand(4, 1, 20, 20), presence="all")
    assert (trace.background is not None) == (background == "learned")
    canvases = model.prefix_canvases(trace)
    torch.testing.assert_close(model.prefix_log_likelihoods(trace), model.log_likelihood(trace.images, canvases),
                               rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(canvases[:, -1], model.render(trace))


def test_the_background_latent_is_part_of_the_elbo_and_learns_a_plain_background():
    """Grey images and no objects: the background's KL enters the bound (scene_log_ratio), and training
    moves the background to the images' grey, with the count kept at zero."""
    torch.manual_seed(2)
    model = AIR(small_config(background="learned", max_objects=1, count_prior=1e-10))
    estimator = Enumerate()
    optimiser = make_optimiser(model, estimator, TrainConfig(learning_rate=1e-2))
    images = torch.full((16, 1, 20, 20), 0.6) + 0.02 * torch.randn(16, 1, 20, 20)
    first = None
    for step in range(150):
        trace = estimator.draw(model, Batch(images=images), 0.0, step)
        assert trace.scene_log_ratio.abs().sum() > 0
        loss, _ = estimator(model, trace)
        first = first if first is not None else loss.item()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        trace = model(images, presence="greedy", sample=False)
    assert (trace.background - 0.6).abs().mean() < 0.05 and loss.item() < first - 500
    assert model.describe(images).present.sum() == 0


def test_dair_sees_the_image_minus_the_background_and_its_objects():
    torch.manual_seed(3)
    model = AIR(small_config(model="dair", background="learned", compositing="alpha")).eval()
    with torch.no_grad():
        model.infer_step.head.bias[0] = 50.0  # every step present
    inputs, embed = [], model.embed.forward
    model.embed.forward = lambda x: inputs.append(x.clone()) or embed(x)
    images = torch.rand(3, 1, 20, 20)
    described = model.describe(images)
    wheres, whats = described.where, described.what
    trace = model(images, presence="greedy", sample=False)
    background = trace.background
    torch.testing.assert_close(inputs[0], images - background)
    first = model.render_object(whats[:, 0], wheres[:, 0])[:, None]
    torch.testing.assert_close(inputs[1], images - composite(first, background, torch.ones(3, 1), alpha=True)[:, -1])
    torch.testing.assert_close(trace.z_where, wheres)  # the greedy forward pass is what describe infers


def test_multi_mnist_over_photographs_holds_out_the_test_photographs(tmp_path):
    assert not set(TRAIN_PHOTOS) & set(TEST_PHOTOS)
    train_backgrounds, test_backgrounds = background_pools("photos", level=0.5)
    rng = np.random.default_rng(0)
    crops = [train_backgrounds.draw(50, 1, rng) for _ in range(20)]
    assert max(crop.max() for crop in crops) <= 0.5 and np.std([crop.mean() for crop in crops]) > 0.01
    make_multi_mnist(tmp_path, train=40, test=20, background="photos", progress=False)
    train, test, settings = load_dataset(tmp_path)
    assert settings["background"] == "photos"
    for scenes in (train, test):
        outside = np.ones(scenes.images.shape, bool)
        for index, (count, boxes) in enumerate(zip(scenes.counts, scenes.boxes)):
            for x0, y0, x1, y1 in boxes[:count]:
                outside[index, y0:y1, x0:x1] = False
        assert scenes.images[outside].max() <= 128 and scenes.images.max() == 255  # ink is brighter than any background


def test_a_saved_config_whose_unread_settings_had_other_defaults_still_loads(tmp_path):
    saved = Config(data="x").to_dict()
    saved["model"]["background_resolution"] = 8  # the default before 2; never read with the background off
    assert Config.from_dict(saved).model.background_resolution == ModelConfig().background_resolution
    with pytest.raises(AirsceneError, match="only read with --background learned"):
        Config.from_dict(saved, partial=True)  # a config file a user wrote still may not set it
    (tmp_path / "config.json").write_text(json.dumps(saved))  # but a run's config.json, which is whole, loads
    assert _config_file(str(tmp_path / "config.json")).model.background_resolution == ModelConfig().background_resolution
    del saved["model"]["what_size"]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    with pytest.raises(AirsceneError, match="only read with --background learned"):
        _config_file(str(tmp_path / "config.json"))
