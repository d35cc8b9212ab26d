"""Segmentation as object-centric models are compared: FG-ARI, ARI and mBO against hand-computed cases."""

import numpy as np
import torch
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from airscene.evaluate import adjusted_rand_index, mean_best_overlap, segmentation_metrics

TRUE = np.array([[[0, 0, 1, 1, 2, 2]]])  # one 1 x 6 image: background, object 1, object 2
INFERRED = np.array([[[0, 0, 1, 2, 2, 2]]])  # object 2's segment has taken one pixel of object 1


def test_the_indices_of_a_case_computed_by_hand():
    # Contingency (true rows, inferred columns): [[2, 0, 0], [0, 1, 1], [0, 0, 2]]. Pairs together in both: 2;
    # rows 3, columns 4, of 15 pairs: expected 0.8, best 3.5, so ARI = 1.2 / 2.7.
    assert adjusted_rand_index(TRUE, INFERRED)[0] == pytest.approx(1.2 / 2.7)
    # Foreground only, [[1, 1], [0, 2]]: 1 pair together, rows 2, columns 3 of 6: expected 1, so FG-ARI = 0.
    assert adjusted_rand_index(TRUE, INFERRED, foreground=True)[0] == pytest.approx(0.0)
    # Object 1 overlaps segment 1 by 1 of 2 pixels, object 2 segment 2 by 2 of 3: mBO = (1/2 + 2/3) / 2.
    assert mean_best_overlap(TRUE, INFERRED) == pytest.approx((1 / 2 + 2 / 3) / 2)
    metrics = segmentation_metrics(TRUE, INFERRED)
    assert metrics["fg_ari"] == pytest.approx(0.0) and metrics["mbo"] == pytest.approx(7 / 12)


def test_a_perfect_segmentation_scores_one_whatever_its_labels_and_nothing_scores_none():
    relabelled = np.array([[[0, 0, 7, 7, 3, 3]]])
    assert adjusted_rand_index(TRUE, relabelled)[0] == 1.0 and mean_best_overlap(TRUE, relabelled) == 1.0
    empty = np.zeros((2, 4, 4), np.int64)  # no objects: no foreground pixel to score, no object to overlap
    assert np.isnan(adjusted_rand_index(empty, empty, foreground=True)).all()
    assert adjusted_rand_index(empty, empty).tolist() == [1.0, 1.0]
    assert segmentation_metrics(empty, empty) == {"fg_ari": None, "ari": 1.0, "mbo": None}


@given(hnp.arrays(np.int64, st.tuples(st.integers(1, 3), st.integers(1, 6), st.integers(1, 6)),
                  elements=st.integers(0, 4)),
       st.data())
def test_the_index_matches_its_definition_on_random_maps(true, data):
    inferred = data.draw(hnp.arrays(np.int64, true.shape, elements=st.integers(0, 4)))
    for image, (truth, found) in enumerate(zip(true, inferred)):
        a, b = truth.ravel(), found.ravel()
        together = lambda labels: labels[:, None] == labels[None, :]  # noqa: E731
        pairs = ~np.eye(len(a), dtype=bool)
        n_both = (together(a) & together(b))[pairs].sum() / 2
        n_a, n_b, n = together(a)[pairs].sum() / 2, together(b)[pairs].sum() / 2, pairs.sum() / 2
        expected = n_a * n_b / n if n else 0
        best = (n_a + n_b) / 2
        want = 1.0 if best == expected else (n_both - expected) / (best - expected)
        assert adjusted_rand_index(true, inferred)[image] == pytest.approx(want, abs=1e-9)


def test_a_generators_masks_are_its_own_drawing(tiny_pool):
    from airscene.data import compose_scenes, sprites

    for scenes in (sprites(40, counts=(0, 1, 2, 3), size=32, side_range=(6, 12), seed=1, progress=False),
                   sprites(40, counts=(2, 3), size=32, side_range=(6, 12), colour=True, seed=2, progress=False),
                   compose_scenes(tiny_pool, 40, counts=(0, 1, 2), size=64, seed=3, progress=False)):
        ink = scenes.images if scenes.images.ndim == 3 else scenes.images.max(-1)
        assert np.array_equal(scenes.masks > 0, ink > 0)  # on black, a pixel shows an object where it has ink
        for image in range(len(scenes)):
            assert set(np.unique(scenes.masks[image])) <= set(range(scenes.counts[image] + 1))
            for slot in range(scenes.counts[image]):  # each object's pixels lie inside its own box
                rows, columns = np.nonzero(scenes.masks[image] == slot + 1)
                x0, y0, x1, y1 = scenes.boxes[image, slot]
                assert ((columns >= x0) & (columns < x1) & (rows >= y0) & (rows < y1)).all()


def test_occlusion_gives_a_pixel_to_the_object_in_front():
    from airscene.data.scenes import claim_pixels

    owner, share = np.zeros((1, 4), np.uint8), np.zeros((1, 4), np.float32)
    claim_pixels(owner, share, np.ones((1, 3), np.float32), 0, 0, 1)  # object 1 covers pixels 0-2
    claim_pixels(owner, share, np.array([[1.0, 0.3, 0.6]], np.float32), 1, 0, 2)  # object 2, in front, pixels 1-3
    # pixel 1: 2 is opaque; pixel 2: 1 keeps 0.7 of the light against 2's 0.3; pixel 3: 2 alone (0.6)
    assert owner.tolist() == [[1, 2, 1, 2]]


def test_masks_are_saved_with_a_data_set_and_checked_on_load(tmp_path):
    from airscene.data import load_dataset, make_sprites
    from airscene.data.files import load_scenes, save_scenes
    from airscene.errors import AirsceneError

    make_sprites(tmp_path / "data", train=20, test=10, size=24, side_range=(5, 8), progress=False)
    train, test, _ = load_dataset(tmp_path / "data")
    assert train.masks.shape == train.images.shape and train.masks.max() == train.counts.max()
    train.masks[0] = train.counts[0] + 1  # an object the scene does not hold
    save_scenes(tmp_path / "bad.npz", train)
    with pytest.raises(AirsceneError, match="has masks naming objects beyond their scenes' counts"):
        load_scenes(tmp_path / "bad.npz")


@pytest.mark.parametrize("settings", [dict(model="air"), dict(model="dair", compositing="alpha", background="learned"),
                                      dict(model="grid", object_size=(8.0,)),
                                      dict(model="grid", compositing="alpha", object_size=(8.0,))],
                         ids=["air", "dair-alpha-background", "grid", "grid-alpha"])
def test_every_model_shares_each_pixel_out_among_its_objects_and_the_background(settings):
    from airscene.config import Config, ModelConfig
    from airscene.infer import TrainedModel
    from airscene.model import make_model

    config = Config(model=ModelConfig(image_size=24, channels=1, glimpse_size=8, what_size=4, hidden_size=16,
                                      embedding_size=16, glimpse_hidden_size=16, **settings))
    torch.manual_seed(0)
    trained = TrainedModel(make_model(config.model), config)
    images = np.random.default_rng(0).random((5, 24, 24)).astype(np.float32)
    masks, labels = trained.segment(images, batch_size=2)
    assert masks.shape[0] == 5 and masks.shape[2:] == (24, 24) and labels.shape == (5, 24, 24)
    assert (masks >= -1e-6).all() and np.allclose(masks.sum(1), 1, atol=1e-5)
    assert np.array_equal(labels, masks.argmax(1))


@pytest.mark.parametrize("settings", [dict(model="dair", compositing="alpha", background="learned"),
                                      dict(model="grid", object_size=(8.0,))], ids=["dair-alpha-background", "grid"])
def test_the_best_of_several_explanations_is_each_images_most_likely_one(settings):
    from airscene.config import ModelConfig
    from airscene.estimators.elbo import log_weight
    from airscene.infer import best_explanation
    from airscene.model import make_model

    model = make_model(ModelConfig(image_size=24, channels=1, glimpse_size=8, what_size=4, hidden_size=16,
                                   embedding_size=16, glimpse_hidden_size=16, **settings)).eval()
    images = torch.rand(6, 1, 24, 24)
    torch.manual_seed(0)
    alone = best_explanation(model, images, proposals=1)
    assert torch.equal(model.render(alone), model.render(model.most_probable(images)))
    torch.manual_seed(1)
    candidates = [model.most_probable(images)] + [model.most_probable(images, sample=True) for _ in range(3)]
    weights = torch.stack([log_weight(model, trace) for trace in candidates])  # (4, B)
    torch.manual_seed(1)
    best = best_explanation(model, images, proposals=4)
    chosen = weights.argmax(0)
    assert (chosen > 0).any()  # some image is better explained by a proposal than by the means
    assert torch.allclose(log_weight(model, best), weights.max(0).values)
    expected = torch.stack([model.render(candidates[int(k)])[index] for index, k in enumerate(chosen)])
    assert torch.allclose(model.render(best), expected)


@pytest.mark.parametrize("settings", [dict(model="dair", compositing="alpha", background="learned"),
                                      dict(model="air", glimpse_colour="flat"),
                                      dict(model="grid", compositing="alpha", object_size=(8.0,))],
                         ids=["dair-alpha-background", "air-flat", "grid-alpha"])
def test_refinement_climbs_each_images_joint_and_moves_only_its_objects_latents(settings):
    from airscene.config import ModelConfig
    from airscene.infer import refine_explanation
    from airscene.model import make_model

    torch.manual_seed(0)
    model = make_model(ModelConfig(image_size=24, channels=1, glimpse_size=8, what_size=4, hidden_size=16,
                                   embedding_size=16, glimpse_hidden_size=16, decoder_bias=0.0, **settings)).eval()
    images = torch.rand(6, 1, 24, 24)
    with torch.no_grad():
        trace = model.most_probable(images)
    if "grid" in settings["model"]:
        trace.z_pres[:, :4] = 1.0  # some cells present whatever the untrained network says

    def joint(explanation):
        _, log_prior = model.explained_by(explanation, model.explanation_latents(explanation))
        return model.trace_log_likelihood(explanation) + log_prior

    # The latents a trace holds redraw that trace: explained_by is the generative half of the forward pass.
    redrawn, _ = model.explained_by(trace, model.explanation_latents(trace))
    torch.testing.assert_close(model.render(redrawn), model.render(trace))
    refined = refine_explanation(model, trace, steps=20)
    with torch.no_grad():
        before, after = joint(trace), joint(refined)
    assert (after >= before).all() and (after > before + 1).any()
    assert torch.equal(refined.z_pres, trace.z_pres) and torch.equal(refined.presence_logits, trace.presence_logits)
    if trace.background is not None:
        assert torch.equal(refined.background, trace.background)
    assert all(parameter.grad is None for parameter in model.parameters())  # the model is not trained by it
    assert refine_explanation(model, trace, steps=0) is trace


def test_shares_follow_the_compositing_by_hand():
    from airscene.model.air import VISIBLE, pixel_shares

    assert VISIBLE == 0.3

    # one pixel, two objects: the front one 0.5 opaque, the one behind fully: it shows 0.5, the background none
    objects = torch.tensor([[[[[0.2]], [[0.5]]], [[[0.9]], [[1.0]]]]])  # (B=1, N=2, C+alpha=2, 1, 1)
    shares = pixel_shares(objects, None, torch.ones(1, 2), alpha=True)[0, :, 0, 0]
    assert shares.tolist() == pytest.approx([0.0, 0.5, 0.5])
    # added up: brightness 0.2 and 0.6 over a background of 0.1, which counts as 0.1 + VISIBLE = 0.4
    additive = torch.tensor([[[[[0.2]]], [[[0.6]]]]])  # (1, 2, 1, 1, 1)
    shares = pixel_shares(additive, torch.full((1, 1, 1, 1), 0.1), torch.ones(1, 2), alpha=False)[0, :, 0, 0]
    assert shares.tolist() == pytest.approx([0.4 / 1.2, 0.2 / 1.2, 0.6 / 1.2])
    # on black ground, the faint rim a decoder draws round its object stays the background's
    rim = pixel_shares(torch.tensor([[[[[0.05, 0.9]]]]]), None, torch.ones(1, 1), alpha=False)[0].argmax(0)
    assert rim.tolist() == [[0, 1]]


def test_what_a_pixel_shows_decides_whose_it_is_where_the_glimpses_blur():
    from airscene.config import ModelConfig
    from airscene.model.air import PixelLikelihood, alone_pictures, pixel_shares

    likelihood = PixelLikelihood()
    likelihood.config = ModelConfig(likelihood_sd=0.1)
    # two pixels, two added glimpses on black: a red one drawing (0.5, 0, 0) on both, a green one (0, 0.6, 0)
    objects = torch.tensor([[0.5, 0.5], [0.0, 0.0], [0.0, 0.0]])[None, None].expand(1, 1, 3, 2).clone()
    objects = torch.cat([objects, torch.tensor([[0.0, 0.0], [0.6, 0.6], [0.0, 0.0]])[None, None]], 1)[..., None, :]
    images = torch.tensor([[[1.0, 0.0]], [[0.0, 0.0]], [[0.0, 0.0]]])[None]  # (1, 3, 1, 2): a red pixel, a black one
    shares = pixel_shares(objects, None, torch.ones(1, 2), alpha=False)
    assert shares[0, :, 0, 0].argmax() == 2  # by brightness alone the green glimpse would own both pixels
    explained = likelihood.explain_pixels(images, shares, alone_pictures(objects, None, additive=True))[0, :, 0]
    assert explained.sum(0).tolist() == pytest.approx([1.0, 1.0])
    assert explained.argmax(0).tolist() == [1, 0]  # the red pixel is the red glimpse's, the black one the ground's
    # a share of 0 stays 0, however well that object's picture fits
    none = likelihood.explain_pixels(images, torch.tensor([1.0, 0.0, 0.0])[None, :, None, None].expand(1, 3, 1, 2),
                                     alone_pictures(objects, None, additive=True))
    assert none[0, 0].tolist() == [[1.0, 1.0]]


def test_a_sprites_soft_edge_stays_the_sprites_where_its_decoded_colour_is_unfitted():
    import dataclasses

    from airscene.config import ModelConfig
    from airscene.model import make_model
    from airscene.model.air import alone_pictures, fitted_appearance, pixel_shares

    model = make_model(ModelConfig(model="dair", image_size=4, channels=3, compositing="alpha", background="learned",
                                   max_objects=1, glimpse_size=4, what_size=2, hidden_size=8, embedding_size=8,
                                   glimpse_hidden_size=8, likelihood_sd=0.1)).eval()
    red, purple = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.5, 0.0, 0.5])
    images = purple[None, :, None, None].repeat(1, 1, 4, 4)
    images[0, :, 0, :2] = red[:, None]  # a red sprite's two pixels on purple ground
    # its glimpse: opaque red on the first, at the edge nearly transparent (alpha 0.05) and decoded black there,
    # a colour no gradient ever fitted; transparent elsewhere
    objects = torch.zeros(1, 1, 4, 4, 4)
    objects[0, 0, :3, 0, 0], objects[0, 0, 3, 0, 0], objects[0, 0, 3, 0, 1] = red, 1.0, 0.05
    with torch.no_grad():
        trace = dataclasses.replace(model.most_probable(images), images=images, objects=objects,
                                    background=purple[None, :, None, None].expand(1, 3, 4, 4), z_pres=torch.ones(1, 1))
        labels = model.pixel_shares(trace).argmax(1)[0]
    assert labels[0, :2].tolist() == [1, 1] and labels.sum() == 2
    # taken as decoded, the edge pixel would go to the ground; where opaque, the fitted colour is its own
    shares = pixel_shares(objects, trace.background, trace.z_pres, alpha=True)
    raw = model.explain_pixels(images, shares, alone_pictures(objects[:, :, :3], trace.background, additive=False))
    assert raw.argmax(1)[0, 0, :2].tolist() == [1, 0]
    assert torch.equal(fitted_appearance(objects[:, :, :3], objects[:, :, 3])[..., 0, 0], red[None, None])


def test_eval_and_training_report_segmentation_where_the_data_has_masks(tmp_path):
    import json

    from airscene.cli import main
    from airscene.data import make_sprites
    from airscene.rundir import read_metrics

    make_sprites(tmp_path / "data", train=32, test=16, size=24, side_range=(5, 8), progress=False)
    assert main(["train", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"), "--quiet", "--steps", "4",
                 "--batch-size", "8", "--eval-every", "2", "--glimpse-size", "8", "--what-size", "4", "--hidden-size",
                 "16", "--embedding-size", "16", "--glimpse-hidden-size", "16", "--object-size", "5,8"]) == 0
    scores = [record["test_fg_ari"] for record in read_metrics(tmp_path / "run") if record["kind"] == "eval"]
    assert len(scores) == 2 and all(-1 <= score <= 1 for score in scores)
    assert main(["eval", str(tmp_path / "run"), "--samples", "2"]) == 0
    metrics = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert -1 <= metrics["fg_ari"] <= 1 and -1 <= metrics["ari"] <= 1 and 0 <= metrics["mbo"] <= 1
    assert metrics["proposals"] == 1
    assert main(["eval", str(tmp_path / "run"), "--samples", "2", "--proposals", "0"]) == 2
    assert main(["eval", str(tmp_path / "run"), "--samples", "2", "--proposals", "3"]) == 0
    assert json.loads((tmp_path / "run" / "eval.json").read_text())["proposals"] == 3
    for bad in ("-1", "10001"):
        assert main(["eval", str(tmp_path / "run"), "--samples", "2", "--refine", bad]) == 2
    assert main(["eval", str(tmp_path / "run"), "--samples", "2", "--refine", "3"]) == 0
    assert json.loads((tmp_path / "run" / "eval.json").read_text())["refine"] == 3
    assert "masks" not in metrics["missing_labels"]
    from PIL import Image

    from airscene import load
    from airscene.data import load_dataset
    from airscene.images import marked_png

    (tmp_path / "images").mkdir()
    test = load_dataset(tmp_path / "data")[1]
    for index in range(3):
        Image.fromarray(test.images[index]).save(tmp_path / "images" / f"{index}.png")
    assert main(["infer", str(tmp_path / "run"), str(tmp_path / "images"), "--proposals", "4"]) == 2  # no --masks
    assert main(["infer", str(tmp_path / "run"), str(tmp_path / "images"), "--refine", "4"]) == 2
    for _ in range(2):  # the second time over its own label maps
        assert main(["infer", str(tmp_path / "run"), str(tmp_path / "images"), "--masks", str(tmp_path / "masks")]) == 0
    expected = load(tmp_path / "run").segment(test.images[:3])[1]
    for index in range(3):
        written = tmp_path / "masks" / f"{index}.png"
        assert marked_png(written) and Image.open(written).mode == "P"
        assert np.array_equal(np.asarray(Image.open(written)), expected[index])


def test_tetrominoes_are_three_of_the_nineteen_pieces_in_six_colours_with_their_masks():
    from airscene.data.scenes import TETROMINO_COLOURS, tetromino_shapes, tetrominoes

    shapes = tetromino_shapes()
    assert len(shapes) == 19 and all(mask.sum() == 4 for mask in shapes)
    assert len({mask.tobytes() + bytes(mask.shape) for mask in shapes}) == 19  # all distinct
    scenes = tetrominoes(50, seed=1, progress=False)
    assert scenes.images.shape == (50, 35, 35, 3) and (scenes.counts == 3).all()
    assert np.array_equal(scenes.masks > 0, scenes.images.max(-1) > 0)
    for image in range(50):
        for slot in range(3):
            pixels = scenes.images[image][scenes.masks[image] == slot + 1]
            assert len(pixels) == 4 * 25  # four 5 x 5 blocks, none hidden
            assert any((pixels == colour).all() for colour in TETROMINO_COLOURS)  # one colour of the six


def test_multi_dsprites_hide_each_other_and_their_masks_say_who_is_in_front(tmp_path):
    from airscene.cli import main
    from airscene.data import load_dataset
    from airscene.data.scenes import dsprite_mask

    assert dsprite_mask("square", 20, 10, 10, 8, 0).sum() == 64  # an 8-pixel square, unturned
    assert 0.3 < dsprite_mask("ellipse", 40, 20, 20, 16, 0.7).sum() / (np.pi * 8 * 4) < 1.3
    assert main(["data", "multi-dsprites", "--out", str(tmp_path / "data"), "--train", "40", "--test", "10",
                 "--background", "grey"]) == 0
    scenes = load_dataset(tmp_path / "data")[0]
    assert scenes.images.shape == (40, 64, 64, 3) and set(scenes.counts) <= {1, 2, 3, 4}
    assert (scenes.images[scenes.masks == 0] == 128).all()  # the grey background shows where no sprite is
    for image in range(40):
        assert set(np.unique(scenes.masks[image])) == set(range(scenes.counts[image] + 1))  # each sprite in view
        for slot in range(scenes.counts[image]):  # one colour a sprite, where it is in front
            pixels = scenes.images[image][scenes.masks[image] == slot + 1]
            assert (pixels == pixels[0]).all()


def test_clevr_masks_are_what_mujoco_draws_in_front(tmp_path, mujoco):
    from airscene.cli import main
    from airscene.data import load_dataset
    from airscene.data.clevr import COLOURS, MIN_PIXELS, ClevrRenderer

    red, blue = list(COLOURS).index("red"), list(COLOURS).index("blue")
    renderer = ClevrRenderer(2, 64)
    try:  # a big red cube in front of (nearer the camera than) a big blue sphere on the same line of sight
        objects = [dict(shape=0, size=0, colour=red, material=0, position=np.array([0.8, -0.8]), yaw=0.3),
                   dict(shape=1, size=0, colour=blue, material=0, position=np.array([-0.8, 0.8]), yaw=0.0)]
        picture, owner = renderer.render(objects)
        alone = renderer.render(objects[1:])[1] == 1
    finally:
        renderer.close()
    picture = picture.astype(int)
    cube, sphere, floor = owner == 1, owner == 2, owner == 0
    assert cube.sum() > 50 and sphere.sum() > 20
    assert (picture[cube][:, 0] > picture[cube][:, 2]).mean() > 0.95  # red where the cube is said to be
    assert (picture[sphere][:, 2] > picture[sphere][:, 0]).mean() > 0.95  # blue where the sphere is
    assert (np.ptp(picture[floor], axis=1) < 20).mean() > 0.95  # grey floor everywhere else
    rows_cube, rows_sphere = np.nonzero(cube)[0], np.nonzero(sphere)[0]
    assert rows_sphere.min() < rows_cube.min()  # the farther sphere shows above the cube ...
    assert (sphere <= alone).all() and sphere.sum() < alone.sum() - 10  # ... partly hidden by it

    assert main(["data", "clevr", "--out", str(tmp_path / "data"), "--train", "12", "--test", "4"]) == 0
    scenes = load_dataset(tmp_path / "data")[0]
    assert scenes.images.shape == (12, 64, 64, 3) and set(scenes.counts) <= {3, 4, 5, 6}
    for image in range(12):  # each object in view
        shown = np.bincount(scenes.masks[image].ravel(), minlength=7)[1:scenes.counts[image] + 1]
        assert (shown >= MIN_PIXELS * 64 * 64).all() and scenes.masks[image].max() == scenes.counts[image]


def test_decomposition_masks_colour_each_object_as_its_step():
    from airscene.viz import label_picture

    picture = label_picture(np.array([[0, 1, 2, 7]]))
    assert picture.shape == (1, 4, 3)
    assert picture[0, 0].tolist() == pytest.approx([0.15] * 3)
    assert picture[0, 1].tolist() == [1.0, 0.0, 0.0] and picture[0, 2].tolist() == [0.0, 1.0, 0.0]  # red, lime
    assert picture[0, 3].tolist() == picture[0, 1].tolist()  # the seventh object takes the first colour again


def test_imported_images_bring_their_label_maps_cut_and_resized_with_them(tmp_path):
    from PIL import Image

    from airscene.data import load_dataset
    from airscene.data.imports import import_images
    from airscene.errors import AirsceneError

    source, masks = tmp_path / "photos", tmp_path / "photos" / "masks"
    masks.mkdir(parents=True)
    truth = np.zeros((40, 40), np.uint8)
    truth[4:12, 4:12], truth[20:36, 24:32], truth[30:34, 2:6] = 7, 3, 200  # labels need not be 1, 2, 3
    picture = np.zeros((40, 40, 3), np.uint8)
    for label, colour in ((7, (255, 0, 0)), (3, (0, 255, 0)), (200, (0, 0, 255))):
        picture[truth == label] = colour
    for name in ("a", "b"):
        Image.fromarray(picture).save(source / f"{name}.png")
    Image.fromarray(truth).save(masks / "a.png")  # grey
    palette = Image.fromarray(truth, mode="L").convert("P")
    palette.save(masks / "b.png")  # palette, as `airscene infer --masks` writes them

    settings = import_images(source, tmp_path / "tiles", tile=20, test_fraction=0.0, masks=masks)
    train = load_dataset(tmp_path / "tiles")[0]
    assert settings["masks"] == str(masks) and len(train) == 8  # 2 images x 4 tiles: masks/ is not an image
    first = train.masks[0]  # the top-left tile of a.png: the 7 alone, now object 1
    assert first.dtype == np.uint8 and set(np.unique(first)) == {0, 1} and (first[4:12, 4:12] == 1).all()
    assert np.array_equal(train.masks[0], train.masks[4])  # grey and palette label maps read alike
    bottom_left = train.masks[2]  # 200 at (30:34, 2:6) -> object 1 of its tile
    assert set(np.unique(bottom_left)) == {0, 1} and (bottom_left[10:14, 2:6] == 1).all()

    import_images(source, tmp_path / "small", size=20, test_fraction=0.0, masks=masks)
    small = load_dataset(tmp_path / "small")[0].masks[0]  # halved by the nearest pixel: labels are never blended
    assert set(np.unique(small)) == {0, 1, 2, 3} and (small[2:6, 2:6] == 2).all() and (small[10:18, 12:16] == 1).all()

    (masks / "b.png").unlink()
    with pytest.raises(AirsceneError, match="has no label map for source image 'b.png'"):
        import_images(source, tmp_path / "missing", tile=20, masks=masks)
    Image.fromarray(picture).save(masks / "b.png")
    with pytest.raises(AirsceneError, match=r"b.png is not a label map \(its pixels are RGB"):
        import_images(source, tmp_path / "colour", tile=20, masks=masks)
    Image.fromarray(truth[:30]).save(masks / "b.png")
    with pytest.raises(AirsceneError, match="mask file .*b.png is 40x30 but its image is 40x40"):
        import_images(source, tmp_path / "short", tile=20, masks=masks)
    assert not (tmp_path / "missing").exists() and not (tmp_path / "short").exists()  # nothing half made is left

    np.save(tmp_path / "images.npy", np.stack([picture] * 3))
    np.save(tmp_path / "masks.npy", np.stack([truth] * 2))
    with pytest.raises(AirsceneError, match=r"shape \(2, 40, 40\).*give \(3, H, W\) integer label maps"):
        import_images(tmp_path / "images.npy", tmp_path / "array", masks=tmp_path / "masks.npy")
    np.save(tmp_path / "masks.npy", np.stack([truth] * 3))
    import_images(tmp_path / "images.npy", tmp_path / "array", test_fraction=0.0, masks=tmp_path / "masks.npy")
    assert np.array_equal(load_dataset(tmp_path / "array")[0].masks[0] > 0, truth > 0)


def test_label_map_imports_fail_in_one_clear_line_and_leave_nothing_behind(tmp_path, monkeypatch):
    import warnings

    from PIL import Image

    import airscene.images as images_module
    from airscene.data.imports import import_images
    from airscene.errors import AirsceneError

    source = tmp_path / "photos"
    source.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(source / "a.png")
    (tmp_path / "empty").mkdir()
    with pytest.raises(AirsceneError, match="has no label map for source image 'a.png' \\(looked for a.png, .tif"):
        import_images(source, tmp_path / "new" / "deep" / "out", masks=tmp_path / "empty")
    assert not (tmp_path / "new").exists()  # the folders it made for --out went with the failure
    with pytest.raises(AirsceneError, match="is the image folder itself"):
        import_images(source, tmp_path / "out", masks=source)
    with pytest.raises(AirsceneError, match="is not a folder: with a folder of images"):
        import_images(source, tmp_path / "out", masks=source / "a.png")
    (tmp_path / "two").mkdir()
    for name in ("a.png", "a.tif"):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "two" / name)
    with pytest.raises(AirsceneError, match="has more than one label map for source image 'a.png'"):
        import_images(source, tmp_path / "out", masks=tmp_path / "two")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)  # Pillow refuses past twice this as it opens the file
    with pytest.raises(AirsceneError, match="has more pixels than airscene decodes"):
        images_module.read_label_map(tmp_path / "two" / "a.png", (8, 8))
    monkeypatch.undo()

    np.save(tmp_path / "images.npy", np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(AirsceneError, match="is a folder, but the images are an array"):
        import_images(tmp_path / "images.npy", tmp_path / "out", masks=tmp_path / "two")
    np.save(tmp_path / "huge.npy", np.full((2, 8, 8), 2**63, np.uint64))
    with pytest.raises(AirsceneError, match="labels from 9223372036854775808"):
        import_images(tmp_path / "images.npy", tmp_path / "out", masks=tmp_path / "huge.npy")
    np.save(tmp_path / "labels.npy", np.ones((2, 8, 8), np.int64))  # numpy's default integers, memory-mapped
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not even PyTorch's warning about a read-only array
        import_images(tmp_path / "images.npy", tmp_path / "out", test_fraction=0.0, masks=tmp_path / "labels.npy")
    assert not (tmp_path / "out").exists() or (tmp_path / "out" / "dataset.json").is_file()


def test_clevr_counts_are_clevrs():
    from airscene.cli import _counts
    from airscene.data.clevr import check_clevr_counts
    from airscene.errors import AirsceneError

    assert check_clevr_counts((3, 4, 5, 6)) == (3, 4, 5, 6)
    with pytest.raises(AirsceneError, match="CLEVR scenes hold at most 10 objects"):
        check_clevr_counts(range(0, 12))
    with pytest.raises(Exception, match="runs backwards: give it low to high, 1-3"):
        _counts("3-1")
