"""The generative model in its own right: samples follow the priors that the ELBO's terms use."""

import math

import numpy as np
import pytest
import torch

from airscene.config import Config, ModelConfig
from airscene.errors import AirsceneError
from airscene.model import make_model

SMALL = dict(image_size=24, channels=1, glimpse_size=8, what_size=4, hidden_size=16, embedding_size=16,
             glimpse_hidden_size=16)


def model_of(**settings):
    torch.manual_seed(0)
    return make_model(ModelConfig(**SMALL, **settings)).eval()


@pytest.mark.parametrize("settings", [dict(model="air"), dict(model="dair", compositing="alpha", background="learned")],
                         ids=["air", "dair-alpha-background"])
def test_air_samples_follow_its_count_and_where_priors(settings):
    model = model_of(max_objects=3, **settings)
    model.count_prior.fill_(0.6)  # a prior that draws objects, unlike the 1e-10 training one
    drawn = model.sample(4000, generator=torch.Generator().manual_seed(0))
    assert drawn.canvas.shape == drawn.images.shape == (4000, 1, 24, 24)
    counts = drawn.z_pres.sum(1)
    assert torch.equal(drawn.z_pres, torch.cumprod(drawn.z_pres, 1))  # the unary code: no object after an absent one
    expected = model.count_log_prior(torch.arange(4.0)).exp()  # the ELBO's own count prior
    assert expected.sum().item() == pytest.approx(1.0)
    observed = torch.bincount(counts.long(), minlength=4).float() / 4000
    assert torch.allclose(observed, expected, atol=0.025), (observed, expected)
    wheres = drawn.z_where.reshape(-1, 3)
    assert torch.allclose(wheres.mean(0), model.where_prior_mean, atol=0.05 * model.where_prior_sd.max())
    assert torch.allclose(wheres.std(0), model.where_prior_sd, rtol=0.05)
    assert drawn.z_what.mean().abs() < 0.03 and (drawn.z_what.std() - 1).abs() < 0.03
    assert (drawn.background is not None) == (settings.get("background") == "learned")
    noise = drawn.images - drawn.canvas  # x ~ N(canvas, sd^2)
    assert noise.std().item() == pytest.approx(model.config.likelihood_sd, rel=0.02)


def test_the_elbo_scores_z_where_with_the_prior_that_sampling_draws_from(monkeypatch):
    model = model_of(max_objects=2)
    images = torch.rand(5, 1, 24, 24)
    torch.manual_seed(1)
    before = model(images).log_ratio
    wider = torch.distributions.Normal(model.where_prior_mean, 2 * model.where_prior_sd)
    monkeypatch.setattr(model, "where_prior", lambda: wider)
    torch.manual_seed(1)
    trace = model(images)  # the same draws: only log p(z_where) changes
    change = (wider.log_prob(trace.z_where) - torch.distributions.Normal(model.where_prior_mean, model.where_prior_sd)
              .log_prob(trace.z_where)).sum(-1)
    assert torch.allclose(trace.log_ratio - before, change, atol=1e-4)
    monkeypatch.undo()
    drawn = model.sample(3000, generator=torch.Generator().manual_seed(0), count=2)
    assert torch.allclose(drawn.z_where.reshape(-1, 3).std(0), model.where_prior_sd, rtol=0.06)


@pytest.mark.parametrize("alpha", [False, True], ids=["additive", "alpha"])
def test_grid_cells_are_present_as_their_bernoulli_prior_says(alpha):
    model = model_of(model="grid", object_size=(8.0,), cell_size=6, compositing="alpha" if alpha else "additive")
    cells = math.ceil(24 / model.cell) ** 2
    model.count_prior.fill_(0.3)
    drawn = model.sample(2000, generator=torch.Generator().manual_seed(0))
    assert drawn.z_pres.shape == (2000, cells) and drawn.canvas.shape == (2000, 1, 24, 24)
    counts = drawn.z_pres.sum(1)
    assert counts.mean().item() == pytest.approx(cells * 0.3, rel=0.03)  # Binomial(K, rho)
    assert counts.var().item() == pytest.approx(cells * 0.3 * 0.7, rel=0.1)
    given = model.sample(50, generator=torch.Generator().manual_seed(1), count=2)
    assert (given.z_pres.sum(1) == 2).all() and given.z_pres.std(0).sum() > 0  # 2 cells, not always the same ones
    present = drawn.z_pres[..., None].bool().expand_as(drawn.z_where)
    low, high = model.window_range
    widths = 24 / drawn.z_where[..., 0][present[..., 0]]  # each present window within the size range
    assert (widths >= low - 1e-4).all() and (widths <= high + 1e-4).all()


def test_sampling_is_seeded_and_checks_its_count():
    model = model_of(max_objects=3)
    first = model.sample(4, generator=torch.Generator().manual_seed(5), count=3)
    again = model.sample(4, generator=torch.Generator().manual_seed(5), count=3)
    assert torch.equal(first.images, again.images) and (first.z_pres == 1).all()
    for count in (4, -1, 1.5):
        with pytest.raises(AirsceneError, match="give a whole number from 0 to 3"):
            model.sample(2, count=count)


def test_airscene_sample_draws_a_run_and_writes_only_where_it_may(tmp_path, capsys):
    from PIL import Image

    from airscene.checkpoint import save_checkpoint
    from airscene.cli import main
    from airscene.images import marked_png
    from airscene.infer import TrainedModel

    config = Config(model=ModelConfig(**SMALL, max_objects=2))
    run = tmp_path / "run"
    run.mkdir()
    save_checkpoint(run / "checkpoint.pt", {"kind": "air", "config": config.to_dict(), "step": 0, "estimator": {},
                                            "model": make_model(config.model).state_dict(), "elapsed_seconds": 0.0,
                                            "optimizer": {"state": {}, "param_groups": []},
                                            "rng": [{"cpu": torch.get_rng_state()}]})
    assert main(["sample", str(run), "--out", str(tmp_path / "samples.png"), "--number", "6", "--count", "2"]) == 0
    assert marked_png(tmp_path / "samples.png") and Image.open(tmp_path / "samples.png").size[0] > 100
    scenes = TrainedModel(make_model(config.model), config).sample(6, count=2)
    assert scenes.images.shape == (6, 24, 24) and (scenes.counts == 2).all() and (scenes.boxes[:, :2] >= -24).all()
    assert main(["sample", str(run), "--out", str(run / "samples.png")]) == 2  # never inside the run
    assert "--out" in capsys.readouterr().err
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "mine.png")
    assert main(["sample", str(run), "--out", str(tmp_path / "mine.png")]) == 2  # a file airscene did not write
    assert main(["sample", str(run), "--count", "3", "--out", str(tmp_path / "s.png")]) == 2
    assert "give a whole number from 0 to 2" in capsys.readouterr().err
