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


def _sampling_points(scale: torch.Tensor, shift: torch.Tensor, size: int) -> torch.Tensor:
    """(B,), (B,) -> (B, size): where each of `size` output pixels along an axis reads its input, scale * u + shift,
    u the pixel centres in [-1, 1] (align_corners=False), in grid_sample's units. The affine map is diagonal, so
    a window's sampling grid is these points down times these points across."""
    centres = (torch.arange(size, device=scale.device, dtype=scale.dtype) * 2 + 1) / size - 1  # (size,)
    return scale[:, None] * centres + shift[:, None]


def crop_glimpse(images: torch.Tensor, z_where: torch.Tensor, glimpse_size: int, min_scale: float) -> torch.Tensor:
    """(B, C, H, W), (B, 3) -> (B, C, g, g): the window at z_where, resampled to a glimpse. With K windows
    per image, (B, K, 3) -> (B, K, C, g, g), read in one pass over each image (it is never copied K times).
    z_where is in units of the canvas's width on both axes (a window is square in pixels on any canvas)."""
    windows = z_where.reshape(-1, 3)
    scale = 1 / window_scale(windows[:, 0], min_scale)  # glimpse v -> v / s + (x, y)
    across, down = (_sampling_points(scale, windows[:, axis], glimpse_size) for axis in (1, 2))  # (B K, g) each
    height, width = images.shape[-2:]
    if height != width:  # grid_sample's y runs over the height: the same pixels, in its units
        down = (down + 1) * (width / height) - 1
    if z_where.dim() == 2:
        return resample(images, down, across)
    # Several windows on each image, read by grid_sample even when compiled: the matrix products of `resample`
    # would read every pixel of the image for each window.
    batch, count = z_where.shape[:2]
    grid = _sampling_grid(down, across).view(batch, count * glimpse_size, glimpse_size, 2)
    glimpses = F.grid_sample(images, grid, align_corners=False)
    return glimpses.view(batch, -1, count, glimpse_size, glimpse_size).transpose(1, 2)


def paste_glimpse(glimpses: torch.Tensor, z_where: torch.Tensor, image_size: int, min_scale: float) -> torch.Tensor:
    """(B, C, g, g), (B, 3) -> (B, C, H, W): the glimpse placed on an empty canvas at z_where
    (zero outside the window)."""
    scale = window_scale(z_where[:, 0], min_scale)  # canvas u -> s (u - (x, y))
    across, down = (_sampling_points(scale, -scale * z_where[:, axis], image_size) for axis in (1, 2))
    return resample(glimpses, down, across)


def resample(images: torch.Tensor, down: torch.Tensor, across: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) read at a separable grid of points, down (B, h) and across (B, w), in grid_sample's units
    -> (B, C, h, w): grid_sample's bilinear reading with zero padding. Compiled, as two small matrix products
    (the same numbers to float rounding): their weights' elementwise work fuses into a kernel or two, where
    grid_sample's backward scatters pixel by pixel and its compiled forward gathers them one by one (a
    compiled AIR step about a tenth faster on a CPU). Eagerly, where each elementwise operation would be a
    pass of its own, grid_sample is the faster."""
    if not torch.compiler.is_compiling():
        # align_corners=False everywhere: its default changed across torch versions, and with it the
        # pixel grid; fixing it makes crop and paste exact inverses on aligned grids.
        return F.grid_sample(images, _sampling_grid(down, across), align_corners=False)
    with torch.autocast(images.device.type, enabled=False):  # float32, as grid_sample is under autocast
        rows = bilinear_weights(down.float(), images.shape[-2])  # (B, h, H)
        columns = bilinear_weights(across.float(), images.shape[-1])  # (B, w, W)
        return rows[:, None] @ images.float() @ columns[:, None].transpose(-1, -2)


def _sampling_grid(down: torch.Tensor, across: torch.Tensor) -> torch.Tensor:
    """(B, h), (B, w) -> (B, h, w, 2): grid_sample's grid of their points, x across and y down."""
    height, width = down.shape[1], across.shape[1]
    return torch.stack([across[:, None, :].expand(-1, height, -1), down[:, :, None].expand(-1, -1, width)], dim=-1)


def bilinear_weights(points: torch.Tensor, size: int) -> torch.Tensor:
    """(B, n) points on an axis of `size` pixels, in grid_sample's units -> (B, n, size): each pixel's weight in
    the bilinear reading at each point, 1 less the distance within a pixel and 0 beyond, so that a point off the
    axis reads zeros."""
    pixels = ((points + 1) * size - 1) / 2  # (B, n) in pixel indices
    offsets = pixels[..., None] - torch.arange(size, device=points.device, dtype=points.dtype)
    return (1 - offsets.abs()).clamp_min(0)


def window_boxes(z_where: torch.Tensor, image_size: int, min_scale: float) -> torch.Tensor:
    """(..., 3) -> (..., 4): the window as a pixel box x0, y0, x1, y1 (continuous pixel edges)."""
    half = 1 / window_scale(z_where[..., 0], min_scale)
    centre_x, centre_y = z_where[..., 1], z_where[..., 2]
    corners = torch.stack([centre_x - half, centre_y - half, centre_x + half, centre_y + half], dim=-1)
    return (corners + 1) * (image_size / 2)


def cell_tiles(images: torch.Tensor, cell: int, tile: int, cells: torch.Tensor | None = None) -> torch.Tensor:
    """(B, C, H, W) -> (B, K, C, tile, tile): the tile around each of the K = ceil(H / cell) ceil(W / cell) cells
    (row-major; the last row and column completed by zeros), centred on it (tile - cell even), zero beyond the
    canvas. Where a grid model draws each cell's object. With `cells` (B, M) (row-major indices), the tiles of
    those cells only: (B, M, C, tile, tile). The canvas is padded once, for the cells and the tiles' margins."""
    batch, channels, height, width = images.shape
    margin = (tile - cell) // 2
    right, bottom = tile - cell - margin + (-width % cell), tile - cell - margin + (-height % cell)
    padded = F.pad(images, (margin, right, margin, bottom))
    rows, columns, stride = -(-height // cell), -(-width // cell), padded.stride()
    every = padded.as_strided((batch, rows, columns, channels, tile, tile),  # a view: the tiles overlap
                              (stride[0], cell * stride[2], cell * stride[3], stride[1], stride[2], stride[3]))
    if cells is None:
        return every.reshape(batch, -1, channels, tile, tile)
    return every[torch.arange(batch, device=cells.device)[:, None], cells // columns, cells % columns]


def tile_coverage(height: int, width: int, cell: int, tile: int, cells: torch.Tensor,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Which pixels of each cell's tile lie on an H x W canvas: cells (K,) or (B, K) (row-major indices on the
    grid of `cell_tiles`) -> (K, 1, tile, tile) or (B, K, 1, tile, tile) of `dtype`, 1 on the canvas and 0 beyond
    it. `cell_tiles` of a canvas of ones, from the tiles' geometry alone: a row's share times a column's."""
    margin = (tile - cell) // 2
    rows, across = tile_spans(cells, -(-width // cell), cell, tile)  # (..., K, T) in the padded canvas
    on_rows = ((rows >= margin) & (rows < height + margin)).to(dtype)
    on_columns = ((across >= margin) & (across < width + margin)).to(dtype)
    return (on_rows[..., :, None] * on_columns[..., None, :]).unsqueeze(-3)


def tile_spans(cells: torch.Tensor, columns: int, cell: int, tile: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cells (...,) (row-major indices on a grid `columns` cells wide) -> the rows and the columns (..., tile) of
    the canvas padded by the tiles' margin that each cell's tile covers."""
    span = torch.arange(tile, device=cells.device)
    return (cells // columns * cell)[..., None] + span, (cells % columns * cell)[..., None] + span


def fold_tiles(tiles: torch.Tensor, height: int, width: int, cell: int, cells: torch.Tensor | None = None) -> torch.Tensor:
    """The inverse placement of `cell_tiles`: (B, K, C, tile, tile) -> (B, C, H, W), overlapping tiles added;
    with `cells` (B, M), the tiles (B, M, C, tile, tile) of those cells."""
    batch, count, channels, tile, _ = tiles.shape
    margin = (tile - cell) // 2
    padded = (height + tile - cell, width + tile - cell)
    if cells is None:
        canvas = F.fold(tiles.reshape(batch, count, -1).transpose(1, 2), padded, kernel_size=tile, stride=cell)
    else:
        pixels = _tile_pixels(cells, padded[1], cell, tile)[:, None].expand(-1, channels, -1)  # (B, C, M T T)
        canvas = tiles.new_zeros(batch, channels, padded[0] * padded[1]).scatter_add(
            2, pixels, tiles.transpose(1, 2).reshape(batch, channels, -1)).view(batch, channels, *padded)
    return canvas[:, :, margin:margin + height, margin:margin + width]


def _tile_pixels(cells: torch.Tensor, width: int, cell: int, tile: int) -> torch.Tensor:
    """(B, M) cell indices -> (B, M T T) each tile pixel's index among its image's pixels, row by row, in the
    canvas padded by the tiles' margin (`width` wide)."""
    rows, columns = tile_spans(cells, (width - tile + cell) // cell, cell, tile)  # (B, M, T) each
    return (rows[..., :, None] * width + columns[..., None, :]).flatten(1)


def tile_canvases(tiles: torch.Tensor, cells: torch.Tensor, height: int, width: int, cell: int) -> torch.Tensor:
    """(M, C, tile, tile) tiles of the given cells (M,) (row-major indices) -> (M, C, H, W): each alone on an
    empty canvas where `cell_tiles` took it from."""
    count, channels, tile, _ = tiles.shape
    margin = (tile - cell) // 2
    canvas = tiles.new_zeros(count, channels, height + tile - cell, width + tile - cell)
    rows, columns = tile_spans(cells, width // cell, cell, tile)  # (M, tile) in the padded canvas
    canvas[torch.arange(count, device=tiles.device)[:, None, None], :, rows[:, :, None], columns[:, None, :]] = \
        tiles.permute(0, 2, 3, 1)
    return canvas[:, :, margin:margin + height, margin:margin + width]
