import math

import pytest
import torch

from airscene.config import Config, ModelConfig, TrainConfig
from airscene.errors import AirsceneError
from airscene.estimators import NVIL, BaselineNetwork, Batch, Enumerate
from airscene.estimators.elbo import count_log_posterior, elbo_per_count, greedy_counts, sampled_elbo_terms
from airscene.model import AIR
from airscene.model.transformer import paste_glimpse
from airscene.model.priors import count_log_prior
from airscene.runs import make_optimiser, schedule_learning_rates
from airscene.schedules import count_prior_at, learning_rate_factor, learning_rate_start


def small_config(**overrides) -> ModelConfig:
    options = dict(image_size=20, channels=1, glimpse_size=8, what_size=4, hidden_size=16, embedding_size=16,
                   glimpse_hidden_size=16, max_objects=3)
    return ModelConfig(**{**options, **overrides})


def test_trace_shapes_and_unary_presence():
    torch.manual_seed(0)
    model = AIR(small_config())
    images = torch.rand(6, 1, 20, 20)
    trace = model(images, presence="sample")
    assert trace.z_where.shape == (6, 3, 3) and trace.z_what.shape == (6, 3, 4)
    assert trace.objects.shape == (6, 3, 1, 20, 20) and trace.log_ratio.shape == (6, 3)
    # once a step is absent, every later one is too
    assert torch.all(trace.z_pres[:, 1:] <= trace.z_pres[:, :-1])
    assert torch.all(model(images, presence="all").z_pres == 1)


def test_count_posterior_is_a_distribution_and_matches_probabilities():
    torch.manual_seed(0)
    trace = AIR(small_config())(torch.rand(5, 1, 20, 20), presence="all")
    log_q = count_log_posterior(trace)
    torch.testing.assert_close(log_q.exp().sum(1), torch.ones(5))
    p = torch.sigmoid(trace.presence_logits)
    torch.testing.assert_close(log_q[:, 1].exp(), p[:, 0] * (1 - p[:, 1]))
    torch.testing.assert_close(log_q[:, 3].exp(), p.prod(1))


def test_count_prior_is_a_truncated_geometric():
    counts = torch.arange(4.0)
    probabilities = count_log_prior(counts, torch.tensor(0.3), 3).exp()
    torch.testing.assert_close(probabilities.sum(), torch.tensor(1.0))
    torch.testing.assert_close(probabilities[1], torch.tensor(0.3 * 0.7))
    schedule = TrainConfig(count_prior_schedule="exponential", count_prior_start=0.9, count_prior_steps=100)
    assert math.isclose(count_prior_at(0, 1e-5, schedule), 0.9)
    assert math.isclose(count_prior_at(100, 1e-5, schedule), 1e-5) and math.isclose(count_prior_at(500, 1e-5, schedule), 1e-5)
    assert math.isclose(count_prior_at(50, 1e-5, schedule), math.sqrt(0.9 * 1e-5))
    schedule.count_prior_schedule = "linear"
    assert math.isclose(count_prior_at(50, 0.1, schedule), 0.5)
    schedule.count_prior_schedule = "none"
    assert count_prior_at(5, 0.01, schedule) == 0.01


def test_the_learning_rate_holds_then_decays_down_a_half_cosine_to_its_final_share():
    decay = TrainConfig(learning_rate_decay="cosine", learning_rate_hold=0.5, learning_rate_final=0.1)
    assert learning_rate_factor(0.0, decay) == learning_rate_factor(0.5, decay) == 1.0
    assert math.isclose(learning_rate_factor(0.75, decay), 0.55)  # half way down the cosine
    assert math.isclose(learning_rate_factor(1.0, decay), 0.1) and math.isclose(learning_rate_factor(1.5, decay), 0.1)
    assert learning_rate_factor(0.9, TrainConfig()) == 1.0  # no decay by default


def test_the_models_learning_rate_starts_high_and_comes_down_to_its_value_the_baselines_does_not():
    config = TrainConfig(learning_rate_start=4.0, learning_rate_start_steps=1000, learning_rate_decay="cosine",
                         learning_rate_final=0.1)
    assert learning_rate_start(0, config) == 4.0
    assert math.isclose(learning_rate_start(500, config), 2.0)  # half way, in the log
    assert learning_rate_start(1000, config) == learning_rate_start(5000, config) == 1.0
    model, baseline = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    optimiser = make_optimiser(model, baseline, config)
    schedule_learning_rates(optimiser, learning_rate_start(500, config), 1.0, config)  # half way down the start, at the decay's end
    assert [group["lr"] for group in optimiser.param_groups] == pytest.approx([2.0 * 0.1 * 1e-3, 0.1 * 1e-2])


def test_a_checkpoint_from_before_a_setting_runs_as_it_did_then():
    saved = Config().to_dict()
    del saved["train"]["learning_rate_start"], saved["train"]["learning_rate_start_steps"]
    assert Config.from_dict(saved).train.learning_rate_start == 1.0  # no start: what that version did
    assert Config.from_dict({"train": {}}, partial=True).train.learning_rate_start == TrainConfig().learning_rate_start


def test_the_count_prior_is_part_of_the_models_state():
    """rho lives in the state_dict: a model rebuilt from its config and state gives the same ELBO."""
    torch.manual_seed(0)
    trained = AIR(small_config(count_prior=1e-10))
    trained.count_prior.fill_(0.3)  # as an annealing schedule leaves it mid-training
    rebuilt = AIR(small_config(count_prior=1e-10))
    rebuilt.load_state_dict(trained.state_dict())
    images = torch.rand(4, 1, 20, 20)
    torch.manual_seed(1)
    expected = Enumerate()(trained, trained(images, presence="all"))[0]
    torch.manual_seed(1)
    torch.testing.assert_close(Enumerate()(rebuilt, rebuilt(images, presence="all"))[0], expected)
    assert rebuilt.count_prior.item() == pytest.approx(0.3)


def test_enumerate_equals_average_of_sampled_counts():
    """The enumerated ELBO is the exact expectation over the count of the sampled-count ELBO with the
    same continuous latents: check it against the explicit sum."""
    torch.manual_seed(1)
    model = AIR(small_config(count_prior=0.2))
    trace = model(torch.rand(4, 1, 20, 20), presence="all")
    loss, _ = Enumerate()(model, trace)
    log_q = count_log_posterior(trace)
    canvases = model.prefix_canvases(trace)
    expected = torch.zeros(4)
    for n in range(4):
        integrand = (model.log_likelihood(trace.images, canvases[:, n]) + model.count_log_prior(torch.tensor(float(n)))
                     - log_q[:, n] + trace.log_ratio[:, :n].sum(1))
        expected += log_q[:, n].exp() * integrand
    torch.testing.assert_close(loss, -expected.mean())
    torch.testing.assert_close(elbo_per_count(model, trace, log_q)[:, 0],
                               model.log_likelihood(trace.images, torch.zeros_like(trace.images)) - log_q[:, 0]
                               + count_log_prior(torch.tensor(0.0), torch.tensor(0.2), 3))


def test_prefix_likelihoods_match_explicit_canvases():
    torch.manual_seed(3)
    for likelihood in ("gaussian", "bernoulli"):
        model = AIR(small_config(likelihood=likelihood))
        trace = model(torch.rand(4, 1, 20, 20), presence="all")
        expected = model.log_likelihood(trace.images, model.prefix_canvases(trace))
        torch.testing.assert_close(model.prefix_log_likelihoods(trace), expected, rtol=1e-5, atol=1e-3)


def test_exploration_mixes_presence_towards_a_uniform_count():
    torch.manual_seed(2)
    model = AIR(small_config())
    images = torch.rand(3, 1, 20, 20)
    torch.manual_seed(0)
    plain = torch.sigmoid(model(images, presence="all").presence_logits)
    torch.manual_seed(0)
    half = torch.sigmoid(model(images, presence="all", exploration=0.5).presence_logits)
    torch.testing.assert_close(half, 0.5 * plain + 0.5 * torch.tensor([3 / 4, 2 / 3, 1 / 2]))
    torch.manual_seed(0)
    trace = model(images, presence="all", exploration=1.0)
    torch.testing.assert_close(count_log_posterior(trace).exp(), torch.full((3, 4), 0.25))
    Enumerate()(model, trace)[0].backward()
    # with e = 1 the count weights are fixed: the presence head learns nothing yet, the decoder does
    assert model.infer_step.head.weight.grad[0].abs().max() == 0
    assert model.decode.net[-1].weight.grad.abs().sum() > 0


def _presence_head_gradient(model, estimator, images, seed):
    model.zero_grad()
    torch.manual_seed(seed)
    loss, _ = estimator(model, estimator.draw(model, Batch(images=images), 0.0, 0))
    loss.backward()
    return model.infer_step.head.weight.grad[0].clone()


def test_nvil_baseline_is_used_and_trained():
    torch.manual_seed(0)
    config = small_config(count_prior=0.3)
    model, images = AIR(config), torch.rand(8, 1, 20, 20)
    with_baseline = NVIL(BaselineNetwork(config), normalise_signal=False)
    without = NVIL(None, normalise_signal=False)
    with torch.no_grad():
        with_baseline.baseline.out.bias.fill_(-500.0)  # a baseline far from the signal
    gradient = _presence_head_gradient(model, with_baseline, images, seed=3)
    assert gradient.abs().sum() > 0
    assert not torch.allclose(gradient, _presence_head_gradient(model, without, images, seed=3))
    # the baseline's output changes the presence gradient through the centred signal only
    with torch.no_grad():
        with_baseline.baseline.out.bias.fill_(500.0)
    assert not torch.allclose(gradient, _presence_head_gradient(model, with_baseline, images, seed=3))
    # and it learns: its own parameters get a gradient from the MSE on the signal
    assert with_baseline.baseline.out.weight.grad.abs().sum() > 0
    # but it feeds no gradient into the model's other heads (its inputs are detached)
    model.zero_grad()
    torch.manual_seed(3)
    trace = model(images, presence="sample")
    with_baseline.baseline(trace).sum().backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.parameters())


def test_nvil_signal_normalisation_tracks_running_statistics():
    torch.manual_seed(0)
    config = small_config()
    model, estimator = AIR(config), NVIL(BaselineNetwork(config), normalise_signal=True)
    estimator(model, model(torch.rand(8, 1, 20, 20)))
    assert estimator.signal_mean.item() != 0 and estimator.signal_variance.item() != 1


def test_describe_stops_at_the_first_absent_step():
    torch.manual_seed(0)
    model = AIR(small_config()).eval()
    with torch.no_grad():
        model.infer_step.head.bias[0] = -20.0  # presence probability ~0 at every step
    described = model.describe(torch.rand(4, 1, 20, 20))
    present, presence, wheres = described.present, described.presence, described.where
    assert present.sum() == 0 and torch.isnan(wheres).all() and presence[:, 1:].abs().sum() == 0
    with torch.no_grad():
        model.infer_step.head.bias[0] = 20.0
    described = model.describe(torch.rand(4, 1, 20, 20))
    present, presence, wheres = described.present, described.presence, described.where
    assert torch.all(present.sum(1) == 3) and not torch.isnan(wheres).any()


def test_greedy_counts_stop_at_first_low_probability():
    trace = AIR(small_config())(torch.rand(2, 1, 20, 20), presence="all")
    trace.presence_logits = torch.tensor([[2.0, -1.0, 3.0], [1.0, 1.0, 1.0]])
    assert greedy_counts(trace).tolist() == [1.0, 3.0]


def test_conv_glimpse_networks_and_bernoulli_likelihood_train():
    torch.manual_seed(0)
    model = AIR(small_config(glimpse_network="conv", likelihood="bernoulli", glimpse_size=12, count_prior=0.1))
    trace = model(torch.rand(4, 1, 20, 20), presence="all")
    assert trace.objects.shape == (4, 3, 1, 20, 20)
    loss, _ = Enumerate()(model, trace)
    loss.backward()
    assert torch.isfinite(loss) and model.decode.net[-3].weight.grad.abs().sum() > 0
    assert model.encode.net[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("compositing", ["add", "alpha"])
def test_flat_colour_glimpses_paint_one_decoded_shape_in_one_colour(compositing):
    """With --glimpse-colour flat an object is a shape and a colour: every pixel of its glimpse has the same
    colour (alpha: the colour channels constant, the shape in the alpha; add: the colour scaled by the shape),
    and the gradient reaches both the shape network and the colour head."""
    torch.manual_seed(0)
    model = AIR(small_config(channels=3, compositing=compositing, glimpse_colour="flat"))
    z_what = torch.randn(5, 4)
    glimpses = model.decode(z_what)  # (B, C(+1), g, g)
    assert glimpses.shape == (5, 3 + (compositing == "alpha"), 8, 8)
    shape = model.decode.net(z_what).add(model.config.decoder_bias).sigmoid().view(5, 1, 8, 8)
    colour = model.decode.colour(z_what).sigmoid()[:, :, None, None]
    if compositing == "alpha":
        torch.testing.assert_close(glimpses[:, 3:], shape)
        torch.testing.assert_close(glimpses[:, :3], colour.expand(-1, -1, 8, 8))
    else:
        torch.testing.assert_close(glimpses, colour * shape)
        ratios = glimpses / glimpses[:, :1]  # red, green and blue in the same proportions at every pixel
        torch.testing.assert_close(ratios, ratios[..., :1, :1].expand_as(ratios))
    trace = model(torch.rand(4, 3, 20, 20), presence="all")
    loss, _ = Enumerate()(model, trace)
    loss.backward()
    assert model.decode.colour.weight.grad.abs().sum() > 0 and model.decode.net[-1].weight.grad.abs().sum() > 0


def test_colour_model_keeps_the_channels_apart():
    """Each decoded channel is pasted where its glimpse says and nowhere else, and the likelihood compares
    channel by channel: the image with red and blue swapped is a worse explanation of it."""
    torch.manual_seed(0)
    model = AIR(small_config(channels=3))
    images = torch.rand(2, 3, 20, 20)
    images[:, 0] *= 0.2  # little red, much blue: a swap changes the image
    trace = model(images, presence="sample")
    glimpses = model.decode(trace.z_what[:, 0])  # (B, 3, g, g)
    for channel in range(3):
        alone = paste_glimpse(glimpses[:, channel:channel + 1], trace.z_where[:, 0], 20, model.config.min_scale)
        torch.testing.assert_close(trace.objects[:, 0, channel:channel + 1], alone)
    assert (model.log_likelihood(images, images.flip(1)) < model.log_likelihood(images, images) - 1).all()
    described = model.describe(images)
    assert torch.equal(described.present.sum(1) > 0, ~torch.isnan(described.where[:, 0, 0]))


def test_inference_step_is_the_lstm_cell_with_precomputed_image_gates():
    torch.manual_seed(0)
    step = AIR(small_config()).infer_step
    embedding, z_where, z_what, z_pres = torch.randn(5, 16), torch.randn(5, 3), torch.randn(5, 4), torch.ones(5, 1)
    state = (torch.randn(5, 16), torch.randn(5, 16))
    _, _, _, (hidden, cell) = step(step.image_gates(embedding), torch.cat([z_where, z_what, z_pres], -1), state)
    expected_hidden, expected_cell = step.lstm(torch.cat([embedding, z_where, z_what, z_pres], -1), state)
    torch.testing.assert_close(hidden, expected_hidden)
    torch.testing.assert_close(cell, expected_cell)
    _, _, _, (hidden, cell) = step(step.image_gates(embedding), torch.cat([z_where, z_what, z_pres], -1), None)
    expected_hidden, expected_cell = step.lstm(torch.cat([embedding, z_where, z_what, z_pres], -1))  # zeros
    torch.testing.assert_close(hidden, expected_hidden)
    torch.testing.assert_close(cell, expected_cell)


def test_sampled_elbo_sums_to_the_count_and_latent_terms():
    torch.manual_seed(4)
    model = AIR(small_config(count_prior=0.3))
    trace = model(torch.rand(16, 1, 20, 20), presence="sample")
    _, per_step, log_q_presence = sampled_elbo_terms(model, trace)
    counts = trace.z_pres.sum(1)
    log_q_count = count_log_posterior(trace).gather(1, counts.long()[:, None])[:, 0]
    expected = model.count_log_prior(counts) - log_q_count + (trace.log_ratio * trace.z_pres).sum(1)
    torch.testing.assert_close(per_step.sum(1), expected)
    assert torch.all(log_q_presence[trace.steps_taken == 0] == 0)


def _recorded_embedding_inputs(model):
    inputs, embed = [], model.embed.forward
    model.embed.forward = lambda images: inputs.append(images.clone()) or embed(images)
    return inputs


def test_describe_infers_what_the_greedy_forward_pass_does_where_images_stop_at_different_steps():
    for kind in ("air", "dair"):
        torch.manual_seed(3)
        model = AIR(small_config(model=kind))
        images = torch.rand(32, 1, 20, 20) * torch.rand(32, 1, 1, 1)
        with torch.no_grad():  # presence that depends on the image, half the steps present: images stop at every step
            model.infer_step.head.weight[0] *= 30
            for _ in range(3):
                model.infer_step.head.bias[0] -= model(images, presence="all", sample=False).presence_logits.median()
        trace, described = model.most_probable(images), model.describe(images)
        assert set(described.present.sum(1).tolist()) == {0, 1, 2, 3}, kind
        torch.testing.assert_close(described.present, trace.greedy_presence())
        shown = described.present.bool()
        torch.testing.assert_close(described.where[shown], trace.z_where[shown])
        torch.testing.assert_close(described.what[shown], trace.z_what[shown])
        assert described.where[~shown].isnan().all()
        fixed = model.describe(images, fixed_shapes=True)  # every step on every image, the stopped masked: the same
        for name in ("present", "presence", "where", "what"):
            torch.testing.assert_close(getattr(fixed, name), getattr(described, name), equal_nan=True)


def test_air_embeds_the_image_once():
    model = AIR(small_config())
    inputs = _recorded_embedding_inputs(model)
    images = torch.rand(2, 1, 20, 20)
    model(images)
    model.describe(images)
    assert len(inputs) == 2 and all(torch.equal(x, images) for x in inputs)


def test_dair_feeds_the_error_canvas_to_each_step():
    torch.manual_seed(8)
    model = AIR(small_config(model="dair"))
    images = torch.rand(5, 1, 20, 20)
    inputs = _recorded_embedding_inputs(model)
    trace = model(images, presence="sample")
    assert len(inputs) == 3  # one error canvas per step
    canvas = torch.zeros_like(images)
    for step in range(3):
        torch.testing.assert_close(inputs[step], images - canvas)
        canvas = canvas + trace.z_pres[:, step, None, None, None] * trace.objects[:, step]


def test_dair_inference_subtracts_what_it_has_explained():
    torch.manual_seed(9)
    model = AIR(small_config(model="dair"))
    with torch.no_grad():
        model.infer_step.head.bias[0] = 50.0  # every step present: no early exit
    images = torch.rand(4, 1, 20, 20)
    inputs = _recorded_embedding_inputs(model)
    described = model.describe(images)
    present, wheres, whats = described.present, described.where, described.what
    assert present.all()
    first = model.render_object(whats[:, 0], wheres[:, 0])
    torch.testing.assert_close(inputs[1], images - first)
    torch.testing.assert_close(inputs[2], images - first - model.render_object(whats[:, 1], wheres[:, 1]))


def test_without_step_memory_every_step_starts_from_an_empty_state():
    for memory in (True, False):
        torch.manual_seed(10)
        model = AIR(small_config(model="dair", step_memory=memory))
        with torch.no_grad():
            model.infer_step.head.bias[0] = 50.0  # every step present: no early exit
        states, step = [], model.infer_step.forward
        model.infer_step.forward = lambda *args: states.append(args[-1]) or step(*args)
        model(torch.rand(3, 1, 20, 20))
        model.describe(torch.rand(3, 1, 20, 20))
        assert len(states) == 6 and states[0] is None and states[3] is None  # a fresh state: zeros, not computed
        assert all((state is not None and state[0].abs().sum() > 0) == memory for state in states[1:3] + states[4:6])


def test_without_step_feedback_no_step_is_told_the_previous_latents():
    for feedback in (True, False):
        torch.manual_seed(11)
        model = AIR(small_config(model="dair", step_memory=False, step_feedback=feedback))
        with torch.no_grad():
            model.infer_step.head.bias[0] = 50.0  # every step present: no early exit
        previous, step = [], model.infer_step.forward
        model.infer_step.forward = lambda *args: previous.append(args[1].clone()) or step(*args)
        model(torch.rand(3, 1, 20, 20))
        model.describe(torch.rand(3, 1, 20, 20))
        assert len(previous) == 6 and all((p.abs().sum() > 0) == feedback for p in previous)
    Config(data="x", model=ModelConfig(step_feedback=False)).validate()  # AIR's memory tells its steps apart
    with pytest.raises(AirsceneError, match="without step memory and step feedback every AIR step sees the same input"):
        Config(data="x", model=ModelConfig(step_memory=False, step_feedback=False)).validate()


def blob_images(rows: slice, columns: slice, height: int = 20, width: int = 20) -> torch.Tensor:
    """(1, 1, height, width): one bright square on black."""
    images = torch.zeros(1, 1, height, width)
    images[..., rows, columns] = 1.0
    return images


def test_residual_proposal_is_the_blob_centre_in_z_where_units():
    model = AIR(small_config(model="dair", where_proposal="residual"))
    cases = [(blob_images(slice(2, 6), slice(12, 16)), (13.5, 3.5)),  # (column, row) of the blob's centre
             (blob_images(slice(16, 20), slice(0, 4)), (1.5, 17.5)),  # at the canvas's corner: not pulled inwards
             (blob_images(slice(8, 12), slice(24, 28), height=14, width=32), (25.5, 9.5))]  # a wide canvas
    for images, (column, row) in cases:
        width, height = images.shape[-1], images.shape[-2]
        shift = model.propose_where(images)[0]
        # z_where's x spans the width over [-1, 1]; y is in the same units, centred on the canvas
        expected = torch.tensor([0.0, (column + 0.5) * 2 / width - 1, (row + 0.5) * 2 / width - height / width])
        assert torch.allclose(shift, expected, atol=1 / width + 1e-6), (shift, expected)  # within half a pixel
    # Two blobs: the brighter first; then, with the first step's window there, the other one
    images = blob_images(slice(2, 6), slice(12, 16)) + 0.5 * blob_images(slice(13, 17), slice(2, 6))
    first = model.propose_where(images)
    window = first + torch.tensor([model.config.where_prior_mean[0], 0.0, 0.0])
    second = model.propose_where(images, window[:, None])
    assert torch.allclose(first[0, 1:], torch.tensor([0.4, -0.6]), atol=0.051)
    assert torch.allclose(second[0, 1:], torch.tensor([-0.6, 0.5]), atol=0.051)


def test_residual_proposal_sends_each_dair_step_to_what_is_left():
    # two blobs, centres (x, y) = (0.4, -0.6) and (-0.6, 0.5) in z_where units; the brighter first
    images = blob_images(slice(2, 6), slice(12, 16)) + 0.5 * blob_images(slice(13, 17), slice(2, 6))
    targets = torch.tensor([[0.4, -0.6], [-0.6, 0.5]])
    windows = {}
    for proposal in ("none", "residual"):
        torch.manual_seed(3)
        model = AIR(small_config(model="dair", where_proposal=proposal, max_objects=2))
        trace = model(images, presence="all", sample=False)  # z_where: q's means
        described = model.describe(images, threshold=0.0)  # every step taken
        assert torch.allclose(trace.z_where, described.where, atol=1e-5)  # inference takes the same steps
        windows[proposal] = trace.z_where[0, :, 1:]
    # within about a pixel and a half (the head's offset starts small); the network alone starts at the centre
    assert (windows["residual"] - targets).abs().max() < 0.15
    assert (windows["none"] - targets).abs().amax(1).min() > 0.4
    for name, estimator in (("air", "enumerate"), ("grid", "local")):
        with pytest.raises(AirsceneError, match="--where-proposal residual .* only DAIR reads"):
            Config(data="x", model=ModelConfig(model=name, where_proposal="residual"),
                   train=TrainConfig(estimator=estimator)).validate()
