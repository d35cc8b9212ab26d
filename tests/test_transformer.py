import torch

from airscene.model.transformer import crop_glimpse, paste_glimpse, window_boxes, window_scale


def test_crop_of_pasted_glimpse_is_the_glimpse_on_aligned_grids():
    glimpses = torch.rand(4, 1, 28, 28)
    # s = 56 / 28 puts glimpse pixels exactly on canvas pixels; the offsets move by whole pixels.
    z_where = torch.tensor([[2.0, 0.0, 0.0], [2.0, 2 / 56 * 4, -2 / 56 * 6], [2.0, -0.5, 0.5], [2.0, 0.25, 0.0]])
    canvas = paste_glimpse(glimpses, z_where, 56, min_scale=0.5)
    torch.testing.assert_close(crop_glimpse(canvas, z_where, 28, min_scale=0.5), glimpses, atol=1e-5, rtol=0)


def test_crop_inverts_paste_for_smooth_glimpses_at_any_pose():
    axis = torch.linspace(-1, 1, 28)
    blob = torch.exp(-(axis[None, :] ** 2 + axis[:, None] ** 2) / 0.3).expand(5, 1, 28, 28)
    # Off-grid poses on a canvas where every window is at least as many pixels as the glimpse (a smaller
    # window must lose detail), so the only error is bilinear interpolation.
    z_where = torch.tensor([[3.0, 0.1, -0.2], [2.2, -0.4, 0.3], [1.7, 0.0, 0.0], [3.5, 0.6, 0.6], [2.5, -0.33, 0.1]])
    canvas = paste_glimpse(blob, z_where, 100, min_scale=0.5)
    torch.testing.assert_close(crop_glimpse(canvas, z_where, 28, min_scale=0.5), blob, atol=0.03, rtol=0)


def test_paste_places_the_glimpse_inside_its_window():
    glimpse = torch.ones(1, 1, 28, 28)
    z_where = torch.tensor([[2.5, 0.2, -0.4]])  # window 20 px wide, centred at pixel (30, 15)
    canvas = paste_glimpse(glimpse, z_where, 50, min_scale=0.5)[0, 0]
    x0, y0, x1, y1 = window_boxes(z_where, 50, min_scale=0.5)[0].tolist()
    assert [round(v, 3) for v in (x0, y0, x1, y1)] == [20.0, 5.0, 40.0, 25.0]
    assert canvas[6:24, 21:39].min() > 0.99 and canvas[:, :19].max() == 0 and canvas[26:].max() == 0


def test_scale_is_bounded_away_from_zero_without_nan():
    raw = torch.tensor([-1e6, -3.0, 0.0, 0.5, 3.0, 1e6], requires_grad=True)
    scale = window_scale(raw, min_scale=0.5)
    assert torch.all(scale >= 0.5) and torch.isfinite(scale).all()
    assert abs(scale[4].item() - 3.0) < 1e-5  # the identity in the working range
    images = torch.rand(6, 1, 50, 50)
    z_where = torch.stack([raw, torch.zeros(6), torch.zeros(6)], 1)
    out = crop_glimpse(images, z_where, 28, 0.5).sum() + paste_glimpse(images[:, :, :28, :28], z_where, 50, 0.5).sum()
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(raw.grad).all()


def test_compiled_reading_is_grid_samples_to_float_rounding_and_so_is_its_gradient(monkeypatch):
    """Under torch.compile a window is read as two matrix products: the same pixels and the same gradient as
    grid_sample's, on a grey and a colour canvas, square and not, for windows inside it, across its edge and
    off it."""
    generator = torch.Generator().manual_seed(0)
    z_where = torch.tensor([[2.0, 0.0, 0.0], [3.3, 0.7, -0.8], [1.2, -0.9, 0.95], [2.5, 1.6, 0.1], [0.9, 0.2, -0.3]])

    def read(compiling):
        monkeypatch.setattr(torch.compiler, "is_compiling", lambda: compiling)
        where = z_where.clone().requires_grad_()
        glimpses = torch.rand(5, 3, 28, 28, generator=torch.Generator().manual_seed(1), requires_grad=True)
        outputs = [paste_glimpse(glimpses, where, 50, 0.5), crop_glimpse(torch.rand(5, 1, 40, 60, generator=generator), where, 28, 0.5),
                   crop_glimpse(torch.rand(5, 3, 50, 50, generator=generator), where, 20, 0.5)]
        weights = [torch.randn(output.shape, generator=generator) for output in outputs]
        sum(((output * weight).sum() for output, weight in zip(outputs, weights))).backward()
        return outputs, where.grad, glimpses.grad

    generator.manual_seed(2)
    sampled = read(False)
    generator.manual_seed(2)
    products = read(True)
    for expected, got in zip(sampled[0] + [sampled[1], sampled[2]], products[0] + [products[1], products[2]]):
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    assert sampled[1].abs().max() > 1  # the windows' gradient is compared where it is not negligible
