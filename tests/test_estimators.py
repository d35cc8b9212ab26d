"""VIMCO, the Concrete relaxation, the shared presence KL, and the gradient-variance tool."""

import math

import torch

from airscene.estimators import NVIL, VIMCO, Batch, Enumerate, Relaxed
from airscene.estimators.elbo import count_log_posterior, presence_kl, sampled_elbo_terms
from airscene.estimators.vimco import leave_one_out_signal
from airscene.gradvar import gradient_variance
from airscene.model import AIR
from airscene.model.air import draw_presence
from test_model import small_config


def test_presence_kl_over_steps_taken_is_the_count_kl():
    torch.manual_seed(0)
    model = AIR(small_config(count_prior=0.2))
    trace = model(torch.rand(6, 1, 20, 20), presence="all")
    log_q = count_log_posterior(trace)  # (B, N+1)
    counts = torch.arange(4.0)
    expected = (log_q.exp() * (log_q - model.count_log_prior(counts))).sum(1)
    # the expected number of steps taken weights step i by q(z_pres^{<i} = 1)
    reached = torch.cat([torch.zeros_like(log_q[:, :1]), log_q[:, :-1].exp().cumsum(1)[:, :-1]], 1)
    kl = (presence_kl(model, trace) * (1 - reached)).sum(1)
    torch.testing.assert_close(kl, expected)


def test_leave_one_out_signal_matches_its_definition():
    torch.manual_seed(1)
    log_weights = torch.randn(3, 5) * 4
    signal = leave_one_out_signal(log_weights)
    for b in range(3):
        full = torch.logsumexp(log_weights[b], 0)
        for k in range(5):
            others = torch.cat([log_weights[b, :k], log_weights[b, k + 1:]])
            replaced = torch.cat([others, others.mean()[None]])
            torch.testing.assert_close(signal[b, k], full - torch.logsumexp(replaced, 0))


def test_vimco_draws_k_traces_per_image_and_bounds_their_mean_weight():
    torch.manual_seed(2)
    model = AIR(small_config(count_prior=0.3))
    estimator = VIMCO(samples=4)
    images = torch.rand(5, 1, 20, 20)
    trace = estimator.draw(model, Batch(images=images), 0.0, 0)
    assert trace.images.shape[0] == 20 and torch.equal(trace.images[4:8], images[1:2].expand(4, -1, -1, -1))
    loss, stats = estimator(model, trace)
    # the bound is log (1/K) sum_k w_k over each image's own K traces, not over any other grouping
    image_terms, per_step, _ = sampled_elbo_terms(model, trace)
    log_weights = (image_terms + per_step.sum(1)).detach()  # (B * K,)
    own = torch.logsumexp(log_weights.view(5, 4), 1) - math.log(4)
    mixed = torch.logsumexp(log_weights.view(4, 5).T, 1) - math.log(4)  # traces of different images grouped
    assert math.isclose(stats["bound"], own.mean().item(), rel_tol=1e-6)
    assert abs(own.mean().item() - mixed.mean().item()) > 1.0
    loss.backward()
    assert model.infer_step.head.weight.grad[0].abs().sum() > 0  # the score function reaches the presence head


def test_vimco_presence_gradient_comes_from_the_leave_one_out_signal(monkeypatch):
    torch.manual_seed(3)
    model = AIR(small_config(count_prior=0.3))
    estimator = VIMCO(samples=3)
    trace = estimator.draw(model, Batch(images=torch.rand(4, 1, 20, 20)), 0.0, 0)

    def presence_gradient():
        model.zero_grad()
        estimator(model, trace)[0].backward(retain_graph=True)
        return model.infer_step.head.weight.grad[0].clone()

    with_signal = presence_gradient()
    monkeypatch.setattr("airscene.estimators.vimco.leave_one_out_signal", lambda w: torch.zeros_like(w))
    assert not torch.allclose(with_signal, presence_gradient())


def test_concrete_presence_hardens_as_the_temperature_falls():
    torch.manual_seed(4)
    logit = torch.full((20000,), 0.8)
    previous = torch.ones(20000, 1)
    cold = draw_presence(logit, previous, "relaxed", temperature=0.01)
    assert ((cold < 0.01) | (cold > 0.99)).float().mean() > 0.97
    assert abs((cold > 0.5).float().mean().item() - torch.sigmoid(torch.tensor(0.8)).item()) < 0.02
    warm = draw_presence(logit, previous, "relaxed", temperature=1.0)
    assert ((warm > 0.05) & (warm < 0.95)).float().mean() > 0.5
    hard = draw_presence(logit, previous, "straight_through", temperature=0.5)
    assert set(hard.unique().tolist()) <= {0.0, 1.0}
    assert torch.all(draw_presence(logit, torch.zeros(20000, 1), "relaxed", 0.5) == 0)  # after an absent step


def test_relaxed_gradient_reaches_the_presence_head_by_backprop():
    for straight_through in (False, True):
        torch.manual_seed(5)
        model = AIR(small_config(count_prior=0.3))
        estimator = Relaxed(1.0, 0.5, 10, straight_through=straight_through)
        trace = estimator.draw(model, Batch(images=torch.rand(6, 1, 20, 20)), 0.0, 0)
        assert trace.z_pres.requires_grad
        loss, stats = estimator(model, trace)
        loss.backward()
        assert math.isfinite(stats["elbo"])
        assert model.infer_step.head.weight.grad[0].abs().sum() > 0
    assert estimator.temperature_at(0) == 1.0 and estimator.temperature_at(10) == estimator.temperature_at(99) == 0.5


def test_straight_through_elbo_is_the_sampled_elbo_in_expectation():
    # With hard z_pres the relaxed objective is an ELBO estimate whose count term is the closed-form KL;
    # its latent and count terms (about -2.6 nats here, 1.9 of them the count's KL) must average to the
    # score-function estimators' sampled terms.
    torch.manual_seed(6)
    model = AIR(small_config(count_prior=0.3))
    images = torch.rand(2, 1, 20, 20).repeat(2000, 1, 1, 1)
    relaxed = Relaxed(0.5, 0.5, 1, straight_through=True)
    with torch.no_grad():
        trace = relaxed.draw(model, Batch(images=images), 0.0, 0)
        relaxed_terms = relaxed(model, trace)[1]["elbo"] - model.trace_log_likelihood(trace).mean()
        _, per_step, _ = sampled_elbo_terms(model, model(images, "sample"))
    assert abs(relaxed_terms - per_step.sum(1).mean()) < 0.15


def test_score_function_without_baseline_has_the_largest_variance():
    torch.manual_seed(7)
    config = small_config(count_prior=0.3)
    model = AIR(config)
    images = torch.rand(8, 1, 20, 20)
    score_function = gradient_variance(model, NVIL(None, normalise_signal=False), images, 30)
    enumerate_ = gradient_variance(model, Enumerate(), images, 30)
    assert score_function["presence_head_variance"] > 10 * enumerate_["presence_head_variance"]
