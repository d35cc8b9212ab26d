"""The spatial transformer as two small functions that are exact inverses of each other.

z_where = (s, x, y): the window is centred at (x, y) in normalised canvas coordinates ([-1, 1], centre
of the canvas at 0) and spans 1/s of the canvas, so s = 3 is an object a third of the canvas wide.
A canvas point u and a glimpse point v correspond by u = v / s + (x, y).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

SHARPNESS = 10.0  # of the softplus that bounds the scale: the identity to 1e-6 once s > min_scale + 1.2


def window_scale(scale: torch.Tensor, min_scale: float) -> torch.Tensor:
    """A smooth floor at min_scale: s itself in the working range, never below min_scale, so dividing
    by it can never give Inf or NaN however far a sample strays."""
    return min_scale + F.softplus(scale - min_scale, beta=SHARPNESS)


def _sampling_grid(scale: torch.Tensor, shift_x: torch.Tensor, shift_y: torch.Tensor, size: int) -> torch.Tensor:
    """(B, size, size, 2) grid for grid_sample: output pixel (row, column) reads the input at
    (scale * u_column + shift_x, scale * u_row + shift_y), u = pixel centres in [-1, 1] with
    align_corners=False. This is affine_grid for a diagonal affine map, without its batched matmul."""
    centres = (torch.arange(size, device=scale.device, dtype=scale.dtype) * 2 + 1) / size - 1  # (size,)
    x = scale[:, None] * centres + shift_x[:, None]  # (B, size)
    y = scale[:, None] * centres + shift_y[:, None]
    return torch.stack([x[:, None, :].expand(-1, size, -1), y[:, :, None].expand(-1, -1, size)], dim=-1)


def crop_glimpse(images: torch.Tensor, z_where: torch.Tensor, glimpse_size: int, min_scale: float) -> torch.Tensor:
    """(B, C, H, W), (B, 3) -> (B, C, g, g): the window at z_where, resampled to a glimpse."""
    scale = window_scale(z_where[:, 0], min_scale)
    grid = _sampling_grid(1 / scale, z_where[:, 1], z_where[:, 2], glimpse_size)  # glimpse v -> v / s + (x, y)
    # align_corners=False everywhere: its default changed across torch versions, and with it the
    # pixel grid; fixing it makes crop and paste exact inverses on aligned grids.
    return F.grid_sample(images, grid, align_corners=False)


def paste_glimpse(glimpses: torch.Tensor, z_where: torch.Tensor, image_size: int, min_scale: float) -> torch.Tensor:
    """(B, C, g, g), (B, 3) -> (B, C, H, W): the glimpse placed on an empty canvas at z_where
    (zero outside the window)."""
    scale = window_scale(z_where[:, 0], min_scale)
    grid = _sampling_grid(scale, -scale * z_where[:, 1], -scale * z_where[:, 2], image_size)  # u -> s (u - (x, y))
    return F.grid_sample(glimpses, grid, align_corners=False)


def window_boxes(z_where: torch.Tensor, image_size: int, min_scale: float) -> torch.Tensor:
    """(..., 3) -> (..., 4): the window as a pixel box x0, y0, x1, y1 (continuous pixel edges)."""
    half = 1 / window_scale(z_where[..., 0], min_scale)
    centre_x, centre_y = z_where[..., 1], z_where[..., 2]
    corners = torch.stack([centre_x - half, centre_y - half, centre_x + half, centre_y + half], dim=-1)
    return (corners + 1) * (image_size / 2)
