"""The grid model: tiles placed where they were taken from, every cell's presence effect exact, the local
expectation estimator's presence gradient unbiased, any canvas size at inference, and the settings and
commands that go with it."""

import dataclasses
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from airscene.cli import main
from airscene.config import Config, ModelConfig, TrainConfig
from airscene.data import load_dataset
from airscene.errors import AirsceneError
from airscene.estimators import LocalExpectation
from airscene.estimators.elbo import greedy_counts, presence_kl
from airscene.infer import load
from airscene.model import GridAIR
from airscene.model import grid as grid_module
from airscene.model.transformer import cell_tiles, crop_glimpse, fold_tiles, tile_canvases, tile_coverage
from airscene.settings import from_dict


def grid_config(**overrides) -> ModelConfig:
    options = dict(model="grid", image_size=24, channels=1, cell_size=8, object_size=(8.0,), glimpse_size=6,
                   what_size=3, embedding_size=16, glimpse_hidden_size=16, decoder_bias=0.0)
    return ModelConfig(**{**options, **overrides})


def test_tiles_fold_back_where_they_were_taken_from():
    torch.manual_seed(0)
    canvas, tiles = torch.rand(2, 3, 16, 24), torch.rand(2, 6, 3, 12, 12)
    # fold is the adjoint of unfold: <fold(t), x> = <t, tiles of x>
    torch.testing.assert_close((fold_tiles(tiles, 16, 24, 8) * canvas).sum(),
                               (tiles * cell_tiles(canvas, 8, 12)).sum())
    for cell in (0, 4, 5):  # a corner, the middle of an edge, the last
        alone = torch.zeros_like(tiles)
        alone[:, cell] = tiles[:, cell]
        torch.testing.assert_close(tile_canvases(tiles[:, cell], torch.tensor([cell, cell]), 16, 24, 8),
                                   fold_tiles(alone, 16, 24, 8))


def test_the_tiles_of_chosen_cells_are_theirs_among_every_cells():
    torch.manual_seed(0)
    canvas, tiles = torch.rand(2, 3, 16, 24), torch.rand(2, 6, 3, 12, 12)
    chosen = torch.tensor([[0, 4, 5], [1, 2, 4]])  # (B, M) row-major cells of each image
    every = cell_tiles(canvas, 8, 12)
    torch.testing.assert_close(cell_tiles(canvas, 8, 12, chosen), every.gather(1, chosen[..., None, None, None].expand(-1, -1, 3, 12, 12)))
    mine = tiles.gather(1, chosen[..., None, None, None].expand(-1, -1, 3, 12, 12))
    only = torch.zeros_like(tiles).scatter(1, chosen[..., None, None, None].expand(-1, -1, 3, 12, 12), mine)
    torch.testing.assert_close(fold_tiles(mine, 16, 24, 8, chosen), fold_tiles(only, 16, 24, 8))


def test_the_chosen_cells_tiles_pass_their_gradient_back_as_every_cells_do():
    torch.manual_seed(0)
    canvas, weights = torch.rand(2, 3, 16, 24, requires_grad=True), torch.rand(2, 3, 3, 12, 12)
    chosen = torch.tensor([[0, 1, 4], [1, 2, 5]])  # neighbours: their tiles overlap
    every = cell_tiles(canvas, 8, 12).gather(1, chosen[..., None, None, None].expand(-1, -1, 3, 12, 12))
    expected, = torch.autograd.grad((every * weights).sum(), canvas)
    got, = torch.autograd.grad((cell_tiles(canvas, 8, 12, chosen) * weights).sum(), canvas)
    torch.testing.assert_close(got, expected)


def test_which_tile_pixels_lie_on_the_canvas_is_the_tiles_of_a_canvas_of_ones():
    height, width = 19, 22  # not whole cells: the last row and column of cells run past the canvas
    ones = torch.ones(2, 1, height, width)
    every = cell_tiles(ones, 8, 12)  # (2, 9, 1, 12, 12): the canvas completed to whole cells by zeros
    torch.testing.assert_close(every, cell_tiles(F.pad(ones, (0, 24 - width, 0, 24 - height)), 8, 12))
    torch.testing.assert_close(tile_coverage(height, width, 8, 12, torch.arange(9)).expand_as(every), every)
    chosen = torch.tensor([[0, 5, 8], [2, 4, 7]])
    torch.testing.assert_close(tile_coverage(height, width, 8, 12, chosen), cell_tiles(ones, 8, 12, chosen))


def test_many_windows_are_cropped_in_one_pass_as_one_at_a_time():
    torch.manual_seed(0)
    images, z_where = torch.rand(3, 2, 30, 30), torch.randn(3, 5, 3) * 0.3 + torch.tensor([2.0, 0.0, 0.0])
    together = crop_glimpse(images, z_where, 7, 0.5)
    torch.testing.assert_close(together, torch.stack([crop_glimpse(images, z_where[:, k], 7, 0.5) for k in range(5)], 1))


@pytest.mark.parametrize("likelihood, compositing, background, colour", [
    ("gaussian", "add", "none", "pixel"), ("gaussian", "add", "learned", "pixel"), ("bernoulli", "add", "learned", "pixel"),
    ("gaussian", "alpha", "learned", "pixel"), ("bernoulli", "alpha", "none", "pixel"), ("gaussian", "add", "none", "flat"),
    ("gaussian", "alpha", "learned", "flat")])
def test_each_cells_presence_effect_is_the_change_in_the_likelihood(likelihood, compositing, background, colour):
    torch.manual_seed(0)
    model = GridAIR(grid_config(image_size=22, likelihood=likelihood, compositing=compositing,  # 22: the grid pads to 24
                                background=background, glimpse_colour=colour)).double()
    with torch.no_grad():
        model.head.bias[0] = 0.0  # half the cells present
        trace = model(torch.rand(2, 1, 22, 22, dtype=torch.double))
        effects_given = model.presence_effects_given(trace)  # prepared once, for any presences
        for z_pres in (trace.z_pres, 1 - trace.z_pres):
            effects = effects_given(z_pres)
            for cell in range(trace.z_pres.shape[1]):
                on, off = z_pres.clone(), z_pres.clone()
                on[:, cell], off[:, cell] = 1.0, 0.0
                change = (model.trace_log_likelihood(dataclasses.replace(trace, z_pres=on))
                          - model.trace_log_likelihood(dataclasses.replace(trace, z_pres=off)))
                torch.testing.assert_close(effects[:, cell], change)
        torch.testing.assert_close(model.presence_effects(trace), effects_given(trace.z_pres))


def test_with_alpha_the_nearer_of_two_overlapping_objects_hides_the_other():
    torch.manual_seed(0)
    model = GridAIR(grid_config(image_size=16, compositing="alpha")).eval()  # 4 cells of 8 px, tiles of 20 px
    with torch.no_grad():
        trace = model(torch.rand(1, 1, 16, 16), sample=False)
    tiles = torch.zeros_like(trace.tiles)  # (1, 4, 2, 20, 20): appearance, alpha
    tiles[0, 0, 0], tiles[0, 1, 0], tiles[0, :2, 1] = 0.9, 0.3, 1.0  # cells 0 and 1 opaque over their tiles
    background = torch.full((1, 1, 16, 16), 0.2)
    canvas = lambda z_pres, z_depth: model.render(dataclasses.replace(  # noqa: E731
        trace, tiles=tiles, z_pres=torch.tensor([z_pres]), z_depth=torch.tensor([z_depth]), background=background))[0, 0]
    overlap, cell_1_alone, neither = (slice(0, 14), slice(2, 14)), (slice(0, 14), slice(14, 16)), (slice(14, 16), slice(14, 16))
    near_0 = canvas([1.0, 1.0, 0.0, 0.0], [2.0, -2.0, 0.0, 0.0])
    torch.testing.assert_close(near_0[overlap], torch.full((14, 12), 0.9), atol=1e-3, rtol=0)
    torch.testing.assert_close(near_0[cell_1_alone], torch.full((14, 2), 0.3), atol=1e-5, rtol=0)
    torch.testing.assert_close(near_0[neither], torch.full((2, 2), 0.2))
    near_1 = canvas([1.0, 1.0, 0.0, 0.0], [-2.0, 2.0, 0.0, 0.0])
    torch.testing.assert_close(near_1[overlap], torch.full((14, 12), 0.3), atol=1e-3, rtol=0)
    absent_0 = canvas([0.0, 1.0, 0.0, 0.0], [2.0, -2.0, 0.0, 0.0])  # an absent object hides nothing
    torch.testing.assert_close(absent_0[overlap], torch.full((14, 12), 0.3), atol=1e-5, rtol=0)
    tiles[0, 0, 1] = 0.5  # half opaque, alone: alpha over the background
    torch.testing.assert_close(canvas([1.0, 0.0, 0.0, 0.0], [0.0] * 4)[0:8, 0:2], torch.full((8, 2), 0.5 * 0.9 + 0.5 * 0.2))


def test_a_grid_with_alpha_learns_its_depths_through_the_local_estimator():
    torch.manual_seed(0)
    model = GridAIR(grid_config(compositing="alpha"))
    loss, _ = LocalExpectation()(model, model(torch.rand(4, 1, 24, 24)))
    loss.backward()
    depth_rows = model.head.weight.grad[[4, 8]]  # the depth's mean and sd, after presence and the window's 3 + 3
    assert torch.isfinite(loss) and depth_rows.abs().sum() > 0


def test_local_expectation_moves_each_logit_to_its_mean_field_optimum():
    """Four cells, all 16 presence patterns summed: averaged over many sampled traces (the continuous
    latents at their means), the estimator's step in each logit is E[D_k] + logit(rho) - l_k, and
    q_k (1 - q_k) times it is the ELBO's exact gradient. A broad likelihood keeps every target unclipped."""
    torch.manual_seed(0)
    model = GridAIR(grid_config(image_size=16, likelihood_sd=3.0)).double()
    images = torch.rand(1, 1, 16, 16, dtype=torch.double)
    with torch.no_grad():
        model.head.bias[0] = 0.3
        model.count_prior.fill_(0.3)
    base = model(images, presence="sample", sample=False)
    logits = base.presence_logits.detach().clone().requires_grad_()
    q = torch.sigmoid(logits.detach())[0]  # (4,)
    patterns = [torch.tensor([pattern], dtype=torch.double) for pattern in itertools.product((0.0, 1.0), repeat=4)]
    with torch.no_grad():
        terms = {tuple(z[0].tolist()): (model.trace_log_likelihood(dataclasses.replace(base, z_pres=z))
                                        + (base.log_ratio * z).sum()).item() for z in patterns}
    exact, expected_effect = 0.0, torch.zeros(4, dtype=torch.double)
    for pattern, value in terms.items():
        z = torch.tensor([pattern], dtype=torch.double)
        exact = exact + torch.where(z == 1, torch.sigmoid(logits), torch.sigmoid(-logits)).prod() * value
        for cell in range(4):
            if pattern[cell] == 1.0:
                others = torch.where(z[0] == 1, q, 1 - q).prod() / q[cell]
                absent = pattern[:cell] + (0.0,) + pattern[cell + 1:]
                expected_effect[cell] += others * (value - terms[absent])
    exact = exact - presence_kl(model, dataclasses.replace(base, presence_logits=logits)).sum()
    (exact_gradient,) = torch.autograd.grad(exact.sum(), logits)
    natural = expected_effect + torch.logit(model.count_prior) - logits.detach()[0]
    effects = torch.tensor([[value - terms[pattern[:cell] + (0.0,) + pattern[cell + 1:]] for cell in range(4)]
                            for pattern, value in terms.items()])
    assert (effects + torch.logit(model.count_prior)).abs().max() < 8  # no target is clipped here
    torch.testing.assert_close(q * (1 - q) * natural, exact_gradient[0])
    draws = 4000
    sampled = dataclasses.replace(base, presence_logits=logits.expand(draws, -1),
                                  z_pres=torch.bernoulli(q.expand(draws, -1)),
                                  images=images.expand(draws, -1, -1, -1), log_ratio=base.log_ratio.expand(draws, -1),
                                  scene_log_ratio=base.scene_log_ratio.expand(draws),
                                  tiles=base.tiles.expand(draws, -1, -1, -1, -1), z_where=base.z_where.expand(draws, -1, -1),
                                  z_what=base.z_what.expand(draws, -1, -1))
    loss, _ = LocalExpectation()(model, sampled)
    (estimate,) = torch.autograd.grad(-loss, logits)
    torch.testing.assert_close(estimate[0], natural, rtol=0.05, atol=0.05 * natural.abs().max().item())
    assert natural.abs().max() > 1.0  # the presences matter here: the check is not of zeros


def test_the_grid_infers_on_a_canvas_of_any_size():
    torch.manual_seed(0)
    model = GridAIR(grid_config(presence_sweeps=0)).eval()
    for size, cells in ((24, 9), (48, 36), (50, 49)):  # 50 pads to 56: 7 x 7 cells
        described = model.describe(torch.rand(2, 1, size, size))
        present, presence, z_where = described.present, described.presence, described.where
        assert present.shape == presence.shape == (2, cells) and z_where.shape == (2, cells, 3)
    images = torch.rand(2, 1, 24, 24)
    with torch.no_grad():
        model.head.bias[0] = 0.0  # about half the cells present
    trace = model(images, presence="greedy", sample=False)
    assert 0 < trace.z_pres.sum() < trace.z_pres.numel()
    assert torch.equal(greedy_counts(trace), (trace.presence_logits > 0).float().sum(1))  # any cells, not a prefix
    described = model.describe(images, threshold=0.5)  # the same cells, without drawing any
    present, z_where = described.present, described.where
    assert torch.equal(present, trace.z_pres) and torch.equal(z_where[present == 1], trace.z_where[present == 1])


@pytest.mark.parametrize("compositing", ["add", "alpha"])
def test_refined_presences_are_a_coordinate_optimum_of_the_elbo(compositing, monkeypatch):
    torch.manual_seed(0)
    model = GridAIR(grid_config(image_size=48, compositing=compositing, presence_sweeps=20)).eval()
    with torch.no_grad():
        model.head.bias[0] = 0.0  # about half the cells present to start with
        model.decode.net[-1].bias.fill_(1.0)  # objects worth drawing on some cells and not on others
        images = torch.rand(3, 1, 48, 48) * (torch.rand(3, 1, 48, 48) > 0.7)
        greedy = model(images, presence="greedy", sample=False)  # every latent at its mean
        refined = model.refine_presence(greedy)
        start, cost = greedy.z_pres, greedy.latent_kl - torch.logit(model.count_prior)

        def objective(present):  # the ELBO's terms that the presences change, the other latents held
            return model.trace_log_likelihood(dataclasses.replace(greedy, z_pres=present)) - (present * cost).sum(1)

        gain = model.presence_effects(dataclasses.replace(greedy, z_pres=refined)) - cost
        assert torch.equal(model.most_probable(images).z_pres, refined)
        assert torch.equal(model.describe(images).present, refined)
        monkeypatch.setattr(grid_module, "REFINEMENT_FLOATS", 1)  # refined one image at a time: the same
        assert torch.equal(model.describe(images).present, refined)
    assert not torch.equal(refined, start)  # the refinement changed something here
    assert torch.equal(refined, (gain > 0).float())  # no single cell's flip raises the objective
    assert (objective(refined) > objective(start)).all()


@pytest.mark.parametrize("compositing", ["add", "alpha"])
def test_test_time_inference_weighs_the_candidate_cells_as_the_whole_grid_would(compositing):
    """Only cells above CANDIDATE_PRESENCE are decoded and weighed at test time: their presence effects are those
    of the whole grid with the other cells absent, and describe finds what refining every cell finds."""
    torch.manual_seed(0)
    model = GridAIR(grid_config(image_size=48, compositing=compositing, presence_sweeps=3)).double().eval()
    images = torch.rand(3, 1, 48, 48, dtype=torch.double) * (torch.rand(3, 1, 48, 48, dtype=torch.double) > 0.7)
    with torch.no_grad():
        raw = model.head(model.backbone(model.padded(images)))[:, 0]  # presence probabilities spread from near 0
        model.head.weight[0] *= 6 / raw.std()  # to near 1 over the cells: half present, some below the candidates'
        model.head.bias[0] = 0.0
        model.head.bias[0] -= model.head(model.backbone(model.padded(images)))[:, 0].median()
        model.decode.net[-1].bias.fill_(1.0)
        every = model(images, presence="greedy", sample=False)
        below = torch.sigmoid(every.presence_logits) <= grid_module.CANDIDATE_PRESENCE
        assert below.any() and (~below).any() and (every.z_pres == 1).any()
        cells = model.infer_cells(images, sample=False, candidates=True)
        held = model.trace_of(images, cells, "greedy", sample=False)
        assert held.z_pres.shape[1] < every.z_pres.shape[1]  # fewer cells decoded
        assert not below.gather(1, held.cells).all(1).any() and (~below).sum(1).max() == held.cells.shape[1]
        weighed = model.weighed(held)  # the others fill out images with fewer candidates, and are never present
        assert (~weighed).any()
        z_held = torch.bernoulli(torch.full_like(held.z_pres, 0.5)) * weighed
        z_every = torch.zeros_like(every.z_pres).scatter(1, held.cells, z_held)
        torch.testing.assert_close(model.presence_effects_given(held)(z_held)[weighed],
                                   model.presence_effects_given(every)(z_every).gather(1, held.cells)[weighed])
        torch.testing.assert_close(model.render(dataclasses.replace(held, z_pres=z_held)),
                                   model.render(dataclasses.replace(every, z_pres=z_every)))
        refined = model.refine_presence(every)
        described = model.describe(images)
    assert torch.equal(described.present, refined) and not refined[below].any()
    present = refined == 1
    torch.testing.assert_close(described.where[present], every.z_where[present])
    assert described.where[~present].isnan().all()
    torch.testing.assert_close(described.presence, torch.sigmoid(every.presence_logits))


def test_a_windows_box_lies_around_its_cell():
    torch.manual_seed(0)
    model = GridAIR(grid_config(image_size=48))
    trace = model(torch.rand(1, 1, 48, 48), presence="greedy", sample=False)
    boxes = model.boxes(trace.z_where, 48)[0]  # (K, 4)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    cell_of_centre = (centres[:, 1] // 8) * 6 + centres[:, 0] // 8
    assert torch.equal(cell_of_centre, torch.arange(36.0))
    widths = boxes[:, 2] - boxes[:, 0]
    assert torch.all((widths > 4.0) & (widths < 12.0))  # within half and 1.5 of the 8-pixel objects


def test_grid_settings_are_checked():
    grid = dict(data="x", model=grid_config(image_size=None, channels=None))
    with pytest.raises(AirsceneError, match="does not apply to --model grid"):
        Config(**grid).validate()  # the default estimator, enumerate
    Config(**grid, train=TrainConfig(estimator="local")).validate()
    with pytest.raises(AirsceneError, match="estimator 'local' does not apply to --model air: use enumerate, nvil"):
        Config(data="x", train=TrainConfig(estimator="local")).validate()
    Config(data="x", model=dataclasses.replace(grid["model"], compositing="alpha"), train=TrainConfig(estimator="local")).validate()
    for setting in ("cell_size", "backbone_channels"):
        with pytest.raises(AirsceneError, match="only read by --model grid"):
            Config(data="x", model=ModelConfig(**{setting: 8})).validate()
    with pytest.raises(AirsceneError, match="only read by --model air and dair"):
        Config(data="x", model=dataclasses.replace(grid["model"], max_objects=5), train=TrainConfig(estimator="local")).validate()
    # A config written before the grid existed lacks cell_size: it loads, with the default.
    older = Config(data="x").to_dict()
    del older["model"]["cell_size"], older["model"]["backbone_channels"]  # nor its backbone's width (32 then)
    assert Config.from_dict(older).model.cell_size == ModelConfig().cell_size
    assert Config.from_dict(older).model.backbone_channels == 32
    widths = [layer.out_channels for layer in GridAIR(grid_config(backbone_channels=4, embedding_size=64)).backbone
              if isinstance(layer, torch.nn.Conv2d)]
    assert widths == [4, 8, 16, 64, 64]  # 8-pixel cells: three strides of 2 from 4 channels, then the cells' width
    with pytest.raises(AirsceneError, match="lacks the settings what_size"):
        from_dict(ModelConfig, {key: value for key, value in ModelConfig().__dict__.items() if key != "what_size"})


def test_counts_take_ranges(tmp_path):
    main(["data", "sprites", "--out", str(tmp_path / "d"), "--train", "40", "--test", "10", "--counts", "0-2,5",
          "--size", "40", "--side-range", "6,8"])
    assert json.loads((tmp_path / "d" / "dataset.json").read_text())["counts"] == [0, 1, 2, 5]
    with pytest.raises(SystemExit):
        main(["data", "sprites", "--out", str(tmp_path / "e"), "--counts", "0-x"])


@pytest.mark.parametrize("compositing", ["add", "alpha"])
def test_a_grid_run_trains_evaluates_and_infers_through_the_commands(tmp_path, capsys, compositing):
    data, run = tmp_path / "data", tmp_path / "run"
    main(["data", "sprites", "--out", str(data), "--train", "64", "--test", "16", "--counts", "0-4", "--size", "32",
          "--side-range", "6,8", "--no-overlap"])
    main(["train", "--data", str(data), "--out", str(run), "--model", "grid", "--estimator", "local", "--cell-size", "8",
          "--object-size", "6,8", "--steps", "4", "--batch-size", "8", "--glimpse-size", "8", "--what-size", "4",
          "--embedding-size", "16", "--glimpse-hidden-size", "16", "--eval-images", "16", "--compositing", compositing,
          "--quiet"])
    main(["eval", str(run), "--samples", "2"])
    metrics = json.loads((run / "eval.json").read_text())
    trained = load(run)
    _, test, _ = load_dataset(data)
    inferred = trained.infer(test.images).counts
    assert metrics["count_mean_absolute_error"] == pytest.approx(np.abs(inferred - test.counts).mean())
    assert metrics["count_accuracy"] == pytest.approx(np.mean(inferred == test.counts))
    assert sum(metrics["inferred_counts"]) == 16 and "ap50" in metrics
    images = np.random.default_rng(0).random((2, 48, 48)).astype(np.float32)  # larger than trained on
    scenes = trained.infer(images)
    assert scenes.boxes.shape == (2, 36, 4)
    for record, count in zip(scenes.to_records(), scenes.counts):
        assert len(record["objects"]) == count
        assert all(1 <= found["step"] <= 36 for found in record["objects"])
    parts = trained.decompose(images)
    assert parts["objects"].shape[1:3] == (max(scenes.counts.max(), 0), 1)  # each object grey, its alpha applied
    if compositing == "add":
        np.testing.assert_allclose(parts["objects"].sum(1).clip(0, 1), parts["reconstruction"], atol=1e-5)
    else:  # where no cell is present, nothing is drawn
        assert (parts["reconstruction"][scenes.counts == 0] == 0).all()
    # Files of several sizes in one `infer`: each inferred at its own size, in the order named.
    from PIL import Image

    for name, side in (("small.png", 24), ("large.png", 48)):
        Image.fromarray((images[0, :side, :side] * 255).astype(np.uint8)).save(tmp_path / name)
    capsys.readouterr()
    assert main(["infer", str(run), str(tmp_path / "large.png"), str(tmp_path / "small.png"), "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [Path(record["image"]).name for record in records] == ["large.png", "small.png"]
    assert all(1 <= found["step"] <= 9 for found in records[1]["objects"])  # 24 x 24: 3 x 3 cells
