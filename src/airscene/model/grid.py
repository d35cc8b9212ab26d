"""A grid of cells inferred in parallel (in the manner of SPAIR and SPACE), the third model beside AIR and
DAIR: a convolutional backbone reads the whole image once, and every cell proposes at most one object at
the same time: its presence, a window whose centre lies in the cell, and an appearance code from a glimpse
there. Objects are decoded and drawn into tiles around their cells, all at once, and the tiles are added
up over the background into the canvas; or, with alpha compositing, each object also has an opacity and
its cell a depth, and the nearer of two overlapping objects hides the other. Nothing runs once per
object, and the same convolutions run on a canvas of any size, larger than the one trained on. At test
time only the candidate cells, those the network gives more than a small presence probability, are decoded
and weighed: on a large canvas most cells are empty, and the cost then grows with the count only slowly.

It reuses AIR's pieces: the presence draw and its bounded logit, the glimpse encoder and decoder, the
spatial transformer, the background component, the pixel likelihood, the Trace every estimator reads and
the training loop. A cell's presence is its own Bernoulli(rho), with the count prior's rho: the count prior
becomes a binomial over the cells. Estimators that apply: `local` (each cell's presence summed out exactly
given the others: estimators/local.py), `vimco` and `relaxed`; `enumerate` sums out AIR's count,
and a grid of K cells has 2^K presence patterns.

At test time the network's presences are where inference starts, not where it ends: trained each against
the others' sampled presences, two cells that share an object learn a mean-field compromise, so
`refine_presence` settles them by coordinate ascent on the ELBO, every other latent at its mean.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from airscene.config import ModelConfig
from airscene.errors import AirsceneError
from airscene.model.air import (PixelLikelihood, alone_pictures, draw_background, draw_presence, fitted_appearance,
                                pixel_shares, read_background)
from airscene.model.networks import PRESENCE_LOGIT_BOUND, BackgroundVAE, GlimpseDecoder, GlimpseEncoder, gaussian_parameters
from airscene.model.priors import draw, normal, normal_kl, prior_presence, standard_normal
from airscene.model.trace import Description, SceneSample, Trace
from airscene.model.transformer import (cell_tiles, crop_glimpse, fold_tiles, paste_glimpse, tile_canvases, tile_coverage,
                                       window_boxes)

DEFAULT_OBJECT_SIZE = (20.0,)  # pixels, where the config does not say: an MNIST digit's ink
WINDOW_FLOOR = 1e-3  # the grid bounds its windows itself; the transformer's own bound stays out of the way
# With alpha compositing, an object's weight where objects overlap is its opacity times
# exp(DEPTH_RANGE tanh(z_depth)): depth 1 outweighs depth 0 21 to 1, and no weight under- or overflows.
DEPTH_RANGE = 4.0
OPACITY_LIMIT = 1 - 1e-6  # keeps log(1 - opacity) finite
REFINEMENT_FLOATS = 2 ** 25  # describe refines at most this many tile values (128 MB in float32) at once
# At test time a cell is a candidate, decoded and weighed by refine_presence, only where the network gives its
# presence more than this probability: most of a large canvas is empty, and decoding and weighing its every
# cell is most of the grid's inference time (benchmarks/RESULTS.md, "Many objects").
CANDIDATE_PRESENCE = 0.001


@dataclass(kw_only=True)
class GridTrace(Trace):
    """A grid model's trace: K cells (row-major) in place of AIR's N steps, each deciding for itself."""

    z_where: torch.Tensor  # (B, K, 3) the window as AIR's z_where (s, x, y) on the canvas
    z_what: torch.Tensor  # (B, K, C_what)
    tiles: torch.Tensor  # (B, K, C(+1), T, T) each cell's object drawn in the T x T tile centred on the cell (+ its alpha)
    latent_kl: torch.Tensor  # (B, K) KL(q || p) of each cell's window, appearance (and depth), in closed form
    background: torch.Tensor | None = None  # (B, C, H, W) where the model has a background
    z_depth: torch.Tensor | None = None  # (B, K) with alpha compositing: nearer objects have larger depth
    # (B, K, 3(+1)) the window's (and depth's) latents before they are squashed into range: their prior is N(0, I)
    window_latents: torch.Tensor
    # (B, M) the row-major indices of the cells the trace holds, its K above (test-time inference holds the
    # candidates only); None: every cell of the canvas, in order
    cells: torch.Tensor | None = None

    @property
    def steps_taken(self) -> torch.Tensor:
        return torch.ones_like(self.z_pres)  # no unary code: every cell's presence is drawn

    def greedy_presence(self) -> torch.Tensor:
        return (self.presence_logits > 0).float()


@dataclass(kw_only=True)
class CellLatents:
    """What the inference network proposes for every cell, before anything is drawn: the presence of every cell,
    the rest for the cells it holds (`cells`, as GridTrace's; K below is their number)."""

    presence_logits: torch.Tensor  # (B, K_all) of every cell of the canvas
    cells: torch.Tensor | None  # (B, K) the cells held, or None: every cell
    z_where: torch.Tensor  # (B, K, 3) on the canvas
    in_tile: torch.Tensor  # (B, K, 3) the same window in its tile's terms
    z_what: torch.Tensor  # (B, K, C_what)
    window_latents: torch.Tensor  # (B, K, 3(+1)) u, from which the window (and depth, GridAIR.depth) are squashed
    log_ratio: torch.Tensor  # (B, K) log p - log q of the window's, appearance's (and depth's) latents
    kl: torch.Tensor  # (B, K) KL(q || p) of the same latents, in closed form


def at_least_float32(tensor: torch.Tensor) -> torch.Tensor:
    """bfloat16 (under autocast) as float32, for sums over thousands of pixels; float64 kept."""
    return tensor.to(torch.promote_types(tensor.dtype, torch.float32))


class AdditiveGaussianEffects:
    """Every cell's presence effect (GridAIR.presence_effects) for any presences z (B, K), under a Gaussian
    likelihood with additive objects. |x - b - sum_j z_j y_j|^2 is quadratic in z, so with y_k cell k's
    object and b the background,
        D_k(z) = (<x - b, y_k> - |y_k|^2 / 2 - sum_{j != k} z_j <y_j, y_k>) / sd^2,
    and the inner products, of each tile with the image and with the tiles overlapping it (cells fewer than
    T / cell apart), are taken once: then any z's effects cost a few (B, K) sums. Of every cell of the canvas,
    they are taken offset by offset over the grid; of a trace's candidate cells, pair by pair (`overlap_gram`)."""

    def __init__(self, model: GridAIR, trace: GridTrace):
        self.rows, self.columns = model.cell_grid(trace.images)
        tiles = at_least_float32(trace.tiles) * model.on_canvas(trace)  # (B, K, C, T, T), 0 beyond the canvas
        target = trace.images if trace.background is None else trace.images - trace.background
        self.variance = model.config.likelihood_sd ** 2
        flat = tiles.flatten(2)  # (B, K, C T T); each term one product, the norm none: few tile-sized temporaries
        self.alone = (torch.linalg.vecdot(model.tiled(target, trace.cells).flatten(2), flat)
                      - 0.5 * torch.linalg.vector_norm(flat, dim=-1).square())  # (B, K) <x - b, y_k> - |y_k|^2 / 2
        self.gram = (None if trace.cells is None else overlap_gram(  # (B, K, K)
            tiles, trace.cells, model.weighed(trace), self.columns, model.reach, model.cell))
        if self.gram is not None:
            return
        grid = tiles.view(len(tiles), self.rows, self.columns, *tiles.shape[2:])  # (B, R, Q, C, T, T)
        reach, cell, size = model.reach, model.cell, model.tile
        self.overlaps = []  # ((dr, dc), (B, R - dr, Q - |dc|) <y_k, y_k+(dr, dc)>) for half the neighbours
        for dr in range(reach):
            for dc in range(-reach + 1, reach):
                if (dr, dc) <= (0, 0) or dr >= self.rows or abs(dc) >= self.columns:
                    continue
                first = grid[:, :self.rows - dr, max(0, -dc):self.columns - max(0, dc)]
                second = grid[:, dr:, max(0, dc):self.columns - max(0, -dc)]
                # the neighbour's tile starts (dr, dc) cells further on: their common pixels
                rows, columns = slice(dr * cell, size), slice(max(0, dc) * cell, size + min(0, dc) * cell)
                rows_in_second, columns_in_second = slice(0, size - dr * cell), slice(max(0, -dc) * cell, size - max(0, dc) * cell)
                inner = (first[..., rows, columns] * second[..., rows_in_second, columns_in_second]).flatten(3).sum(-1)
                self.overlaps.append(((dr, dc), inner))

    def __call__(self, z_pres: torch.Tensor) -> torch.Tensor:
        """(B, K) presences -> (B, K) effects."""
        if self.gram is not None:
            return (self.alone - (self.gram @ z_pres.to(self.alone.dtype)[..., None])[..., 0]) / self.variance
        z = z_pres.to(self.alone.dtype).view(-1, self.rows, self.columns)
        shared = torch.zeros_like(z)  # sum_{j != k} z_j <y_j, y_k>
        for (dr, dc), inner in self.overlaps:
            left, right = max(0, -dc), self.columns - max(0, dc)  # the first cell's columns
            shared[:, :self.rows - dr, left:right] += inner * z[:, dr:, left + dc:right + dc]
            shared[:, dr:, left + dc:right + dc] += inner * z[:, :self.rows - dr, left:right]
        return (self.alone - shared.flatten(1)) / self.variance


def overlap_gram(tiles: torch.Tensor, cells: torch.Tensor, weighed: torch.Tensor, columns: int, reach: int,
                 cell: int) -> torch.Tensor:
    """(B, K, C, T, T) the tiles of cells (B, K) (row-major indices on a grid `columns` wide) -> (B, K, K) the inner
    product of every two weighed ones (`weighed` (B, K)) whose tiles overlap (cells fewer than `reach` apart in rows
    and in columns); 0 for the rest and on the diagonal. Pairs one offset at a time, over their common pixels."""
    batch, count, size = tiles.shape[0], tiles.shape[1], tiles.shape[-1]
    row, column = cells // columns, cells % columns  # (B, K)
    below, right = row[:, None, :] - row[:, :, None], column[:, None, :] - column[:, :, None]  # (B, K, K): j from k
    after = (below > 0) | ((below == 0) & (right > 0))  # each pair once
    near = weighed[:, :, None] & weighed[:, None, :] & after & (below < reach) & (right.abs() < reach)
    pairs = near.nonzero(as_tuple=True)  # (P,) each: the overlapping pairs, found once
    offsets = below[pairs], right[pairs]  # (P,) each
    flat = tiles.flatten(0, 1)  # (B K, C, T, T)
    gram = tiles.new_zeros(batch, count, count)
    for down in range(reach):
        for across in range(-reach + 1, reach):
            if (down, across) <= (0, 0):
                continue
            image, mine, theirs = (part[(offsets[0] == down) & (offsets[1] == across)] for part in pairs)
            rows, columns_mine = slice(down * cell, size), slice(max(0, across) * cell, size + min(0, across) * cell)
            rows_theirs, columns_theirs = slice(0, size - down * cell), slice(max(0, -across) * cell, size - max(0, across) * cell)
            inner = (flat[..., rows, columns_mine][image * count + mine]  # only the common pixels are gathered
                     * flat[..., rows_theirs, columns_theirs][image * count + theirs]).flatten(1).sum(-1)
            gram[image, mine, theirs] = inner
            gram[image, theirs, mine] = inner
    return gram


class CompositedEffects:
    """Every cell's presence effect (GridAIR.presence_effects) for any presences z (B, K), in general (alpha
    compositing, any likelihood, the trace's cells only): the canvas's sums over each tile without the cell and
    with it, composed, and the likelihood of each. A present cell's contribution to the sums is z times its
    contribution when present (for z of 0 or 1, log(1 - z o) = z log(1 - o) too), so each cell's is computed once."""

    def __init__(self, model: GridAIR, trace: GridTrace):
        self.model, self.images, self.cells = model, trace.images, trace.cells
        self.inside = model.on_canvas(trace)  # (B or 1, K, 1, T, T): 1 on the canvas
        self.present = model.contributions(trace, torch.ones_like(trace.z_pres))  # (B, K, C', T, T)
        self.image_tiles = model.tiled(trace.images, self.cells).flatten(0, 1)  # (B K, C, T, T)
        self.background_tiles = None if trace.background is None else model.tiled(trace.background, self.cells).flatten(0, 1)

    def __call__(self, z_pres: torch.Tensor) -> torch.Tensor:
        """(B, K) presences -> (B, K) effects."""
        contributions = self.present * z_pres[:, :, None, None, None].to(self.present.dtype)
        sums = self.model.tiled(self.model.fold(contributions, self.images, self.cells), self.cells)  # (B, K, C', T, T)
        without = (sums - contributions) * self.inside
        compose, likelihood = self.model.compose, self.model.pixel_log_likelihood
        difference = (likelihood(self.image_tiles, compose((without + self.present).flatten(0, 1), self.background_tiles))
                      - likelihood(self.image_tiles, compose(without.flatten(0, 1), self.background_tiles)))
        return (difference.view(*self.present.shape[:2], *difference.shape[1:]) * self.inside).flatten(2).sum(-1)


def weighed_cells(logits: torch.Tensor) -> torch.Tensor:
    """(B, K) presence logits -> (B, K) the cells test-time inference weighs: those the network gives more than
    CANDIDATE_PRESENCE."""
    return torch.sigmoid(logits) > CANDIDATE_PRESENCE


def candidate_cells(logits: torch.Tensor) -> torch.Tensor:
    """(B, K) presence logits -> (B, M) the indices (ascending) of each image's M most probable cells, M the most
    cells any image weighs (at least one): every weighed cell, and in images with fewer, cells that are not and
    that refine_presence leaves absent."""
    above = int(weighed_cells(logits).sum(1).max())
    return logits.topk(max(1, above), dim=1).indices.sort(dim=1).values


TILE_MEMORY_LIMIT = 8 * 2**30  # bytes of one step's grid tiles (each decoded glimpse pasted into its cell's tile)


def backbone(channels: int, cell: int, width: int, first: int) -> nn.Sequential:
    """(B, C, H, W) -> (B, width, H / cell, W / cell): strided convolutions (stride 2, and 3 for a cell with a
    factor of 3; `first` channels, doubled at each, up to width) down to one feature vector per cell, then two
    3 x 3 convolutions, so that each cell sees its neighbours (an object's ink crosses cells)."""
    strides = [2] * int(math.log2(cell // 3 if cell % 3 == 0 else cell)) + [3] * (cell % 3 == 0)
    layers, have = [], channels
    for index, stride in enumerate(strides):
        out = min(width, first * 2 ** index)
        kernel, padding = (4, 1) if stride == 2 else (3, 0)  # each halves (or thirds) a multiple of the cell exactly
        layers += [nn.Conv2d(have, out, kernel, stride=stride, padding=padding), nn.ReLU(inplace=True)]
        have = out
    return nn.Sequential(*layers, nn.Conv2d(have, width, 3, padding=1), nn.ReLU(inplace=True),
                         nn.Conv2d(width, width, 3, padding=1), nn.ReLU(inplace=True))


def window_range(config: ModelConfig) -> tuple[float, float]:
    """The grid's window sizes in pixels: between half the smallest object and window_limit times the largest,
    by construction, so that one window cannot cover two objects, as AIR's bounded window cannot."""
    sizes = config.object_size or DEFAULT_OBJECT_SIZE
    return 0.5 * min(sizes), config.window_limit * max(sizes)


def tile_side(config: ModelConfig) -> int:
    """A cell's tile holds every window of the cell: a centre within half a cell of the cell's, and half the
    largest window beyond it on each side."""
    return config.cell_size + 2 * math.ceil(window_range(config)[1] / 2)


class GridAIR(nn.Module, PixelLikelihood):
    """config.model "grid": every cell of config.cell_size pixels at once."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        if config.image_size is None or config.channels is None:
            raise AirsceneError("the model config has no image_size or channels: set them, or train on a data set, "
                                "which sets them from its images")
        self.config, self.cell = config, config.cell_size
        self.window_range, self.tile = window_range(config), tile_side(config)
        self.backbone = backbone(config.channels, self.cell, config.embedding_size, config.backbone_channels)
        self.alpha = config.compositing == "alpha"
        latents = 3 + self.alpha  # the window's size and centre (and the depth)
        self.head = nn.Conv2d(config.embedding_size, 1 + 2 * latents, 1)  # presence logit; means and sds
        with torch.no_grad():  # few cells present at first (sigmoid(-3): 5% each), windows mid-range, centred
            self.head.weight.mul_(0.1)
            self.head.bias.copy_(torch.tensor([-3.0] + [0.0] * latents + [-1.0] * latents))
        self.encode = GlimpseEncoder(config.channels, config.glimpse_size, config.glimpse_hidden_size,
                                     config.what_size, config.glimpse_network)
        self.decode = GlimpseDecoder.of(config)
        if config.background == "learned":
            self.background = BackgroundVAE(config.channels, config.background_size, config.background_resolution)
        self.register_buffer("count_prior", torch.tensor(config.count_prior))  # rho, of each cell

    @property
    def reach(self) -> int:
        """Cells this many apart (in rows or columns) or more have tiles that do not overlap."""
        return math.ceil(self.tile / self.cell)

    def tiled(self, canvas: torch.Tensor, cells: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, H, W) -> (B, K, C, T, T): the tile around each cell (or each of `cells`, (B, K) indices), zero
        beyond the canvas."""
        return cell_tiles(canvas, self.cell, self.tile, cells)

    @staticmethod
    def cell_indices(trace: GridTrace) -> torch.Tensor:
        """The trace's cells: (B, K) row-major indices, or (K,) every cell of the canvas where it holds them all."""
        return trace.cells if trace.cells is not None else torch.arange(trace.z_pres.shape[1], device=trace.z_pres.device)

    def on_canvas(self, trace: GridTrace) -> torch.Tensor:
        """(B, K, 1, T, T) (or (1, K, 1, T, T) for every cell): 1 where a cell's tile lies on the canvas, 0 beyond."""
        inside = tile_coverage(*trace.images.shape[-2:], self.cell, self.tile, self.cell_indices(trace), trace.tiles.dtype)
        return inside if trace.cells is not None else inside[None]

    def cell_grid(self, images: torch.Tensor) -> tuple[int, int]:
        """The rows and columns of cells over images (B, C, H, W), the last ones completed by padding."""
        rows, columns = (-(-side // self.cell) for side in images.shape[-2:])
        return rows, columns

    def padded_size(self, images: torch.Tensor) -> tuple[int, int]:
        """The images' height and width once padded to whole cells (padded), without padding them."""
        rows, columns = self.cell_grid(images)
        return rows * self.cell, columns * self.cell

    def depth(self, u: torch.Tensor) -> torch.Tensor | None:
        """(B, K, 3(+1)) window latents -> (B, K) each cell's depth with alpha compositing (the last latent), else None."""
        return u[..., 3] if self.alpha else None

    def padded(self, images: torch.Tensor) -> torch.Tensor:
        """The images padded (right and bottom, with zeros) to a whole number of cells."""
        height, width = images.shape[-2:]
        return F.pad(images, (0, -width % self.cell, 0, -height % self.cell))

    def windows(self, u: torch.Tensor, rows: int, columns: int,
                cells: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, K, 3) latents of every cell (or of `cells`, (B, K) indices) -> each window's (size, centre x,
        centre y) in canvas pixels, and the same window in its tile's terms (s, x, y) for the transformer: a size
        within window_range, a centre in the cell (the sigmoids keep both in range however far a sample strays)."""
        low, high = self.window_range
        size = low + (high - low) * torch.sigmoid(u[..., 0])  # (B, K)
        if cells is None:
            cells = torch.arange(rows * columns, device=u.device)
        row, column = cells // columns, cells % columns  # (K,) or (B, K)
        offset_x = (torch.sigmoid(u[..., 1]) - 0.5) * self.cell  # (B, K) from the cell's centre
        offset_y = (torch.sigmoid(u[..., 2]) - 0.5) * self.cell
        in_tile = torch.stack([self.tile / size, 2 * offset_x / self.tile, 2 * offset_y / self.tile], -1)
        centre_x, centre_y = (column + 0.5) * self.cell + offset_x, (row + 0.5) * self.cell + offset_y
        return torch.stack([size, centre_x, centre_y], -1), in_tile

    # What only the grid reads:
    own_settings = ("model.cell_size", "model.presence_sweeps", "model.window_limit", "model.backbone_channels")
    enumerates_count = False  # 2^K presence patterns: a grid's presences are sampled (or summed cell by cell)
    # "enumerate" sums out AIR's count and NVIL's baseline runs over AIR's steps: a grid has neither.
    estimators = ("local", "vimco", "relaxed")
    # One graph must weigh every cell (how many are candidates depends on the image): on 200 x 200 canvases that
    # was slower than eager inference, after a compile of minutes.
    describe_compiles = False
    # Its backbone's convolutions, half its inference on 200 x 200 canvases, take half the time in bfloat16 on a CPU
    # with AMX; the refinement's sums stay in float32 (RESULTS.md, "Many objects").
    describe_in_bf16 = True

    @staticmethod
    def fit_to_data(config: ModelConfig, largest: int, batch_size: int, data) -> None:
        """Refuse data whose scenes hold more objects (`largest`) than the canvas has cells, and a step whose
        tiles would exceed TILE_MEMORY_LIMIT. (Its windows read config.object_size themselves: window_range.)"""
        cells = math.ceil(config.image_size / config.cell_size) ** 2
        if largest > cells:
            raise AirsceneError(f"data {data} has scenes with {largest} objects but the grid has {cells} cells: "
                                "lower --cell-size")
        tiles = batch_size * cells * (config.channels + 1) * tile_side(config) ** 2 * 4  # float32 bytes
        if tiles > TILE_MEMORY_LIMIT:
            raise AirsceneError(f"the grid's tiles would take {tiles / 2**30:,.1f} GiB a step, more than the "
                                f"{TILE_MEMORY_LIMIT / 2**30:g} GiB airscene allows them: lower --batch-size, "
                                "--object-size or --window-limit, or raise --cell-size")
    input_size = None  # its convolutions run on a canvas of any size

    def object_capacity(self) -> None:
        return None  # as many cells as the canvas has

    def present_canvases(self, trace: GridTrace, parts: torch.Tensor) -> torch.Tensor:
        """(B, K, C', T, T) per-cell tiles -> (B, M, C', H, W): the present cells' tiles, in cell order, each on
        a canvas of its own (M: the most any image holds; a cell not present: zeros)."""
        order = trace.z_pres.argsort(dim=1, descending=True, stable=True)[:, :int(trace.z_pres.sum(1).max())]
        parts = parts.gather(1, order[:, :, None, None, None].expand(-1, -1, *parts.shape[2:]))
        cells = order if trace.cells is None else trace.cells.gather(1, order)
        height, width = self.padded_size(trace.images)
        canvases = tile_canvases(parts.flatten(0, 1), cells.flatten(), height, width, self.cell)
        canvases = canvases.view(*order.shape, *canvases.shape[1:])[..., :trace.images.shape[-2], :trace.images.shape[-1]]
        return canvases * trace.z_pres.gather(1, order)[:, :, None, None, None]

    def present_objects(self, trace: GridTrace) -> torch.Tensor:
        """(B, M, C, H, W): each present cell's object alone on the canvas, as opaque as its alpha."""
        appearance = trace.tiles[:, :, :-1] * trace.tiles[:, :, -1:] if self.alpha else trace.tiles
        return self.present_canvases(trace, appearance)

    def canvas_windows(self, u: torch.Tensor, rows: int, columns: int, width: int,
                       cells: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, K, 3) window latents (of every cell, or of `cells`) -> each window as AIR's z_where on a canvas
        `width` wide (s = canvas width / window width, the centre in [-1, 1]), and in its tile's terms."""
        pixels, in_tile = self.windows(u, rows, columns, cells)
        z_where = torch.stack([width / pixels[..., 0], 2 * pixels[..., 1] / width - 1, 2 * pixels[..., 2] / width - 1], -1)
        return z_where, in_tile

    @torch.no_grad()
    def sample(self, number: int, generator: torch.Generator | None = None, count: int | None = None) -> SceneSample:
        """`number` scenes of config.image_size from the generative model: each cell's presence Bernoulli(rho)
        (or `count` cells at random), its window (and depth) and appearance latents from N(0, I), decoded and
        drawn in their tiles, composited over a background from its prior, then x from the likelihood."""
        c, device = self.config, self.count_prior.device
        rows = columns = -(-c.image_size // self.cell)
        cells = rows * columns
        z_pres = prior_presence(number, cells, self.count_prior, unary=False, generator=generator, count=count)
        u = draw(standard_normal(), (number, cells, 3 + self.alpha), generator, device)
        z_what = draw(standard_normal(), (number, cells, c.what_size), generator, device)
        z_where, in_tile = self.canvas_windows(u[..., :3], rows, columns, c.image_size)
        tiles = self.draw_tiles(z_what, in_tile)
        background = (draw_background(self.background, c, number, generator, device)
                      if c.background == "learned" else None)
        canvas = self.render(GridTrace(images=torch.zeros(number, c.channels, c.image_size, c.image_size, device=device),
                                       presence_logits=torch.zeros_like(z_pres), z_pres=z_pres,
                                       log_ratio=torch.zeros_like(z_pres), scene_log_ratio=z_pres.new_zeros(number),
                                       z_where=z_where, z_what=z_what, tiles=tiles, background=background,
                                       z_depth=self.depth(u), latent_kl=torch.zeros_like(z_pres),
                                       window_latents=u))
        return SceneSample(images=self.draw_images(canvas, generator), canvas=canvas, z_pres=z_pres, z_where=z_where,
                           z_what=z_what, background=background)

    def explanation_latents(self, trace: GridTrace) -> dict[str, torch.Tensor]:
        """The continuous latents of a trace's cells, where their priors (N(0, I)) are defined: the window's (and
        depth's) before they are squashed into range, and z_what."""
        return {"window": trace.window_latents, "z_what": trace.z_what}

    def explained_by(self, trace: GridTrace, latents: dict[str, torch.Tensor]) -> tuple[GridTrace, torch.Tensor]:
        """The trace with its cells' objects drawn from `latents` (explanation_latents' kind; presences and
        background as they were), and log p of the present cells' latents (B,)."""
        u, z_what = latents["window"], latents["z_what"]
        rows, columns = self.cell_grid(trace.images)
        z_where, in_tile = self.canvas_windows(u[..., :3], rows, columns, trace.images.shape[-1], trace.cells)
        prior = standard_normal()
        log_prior = ((prior.log_prob(u).sum(-1) + prior.log_prob(z_what).sum(-1)) * trace.z_pres).sum(1)
        return dataclasses.replace(trace, z_where=z_where, z_what=z_what, tiles=self.draw_tiles(z_what, in_tile),
                                   z_depth=self.depth(u), window_latents=u), log_prior

    def infer_cells(self, images: torch.Tensor, sample: bool = True, candidates: bool = False) -> CellLatents:
        """The inference network, every cell at once: images (B, C, H, W) -> each cell's presence logit,
        window and appearance code, with their log p - log q. With `candidates`, the windows and codes of only
        the cells test-time inference weighs (each image's most probable, as many as the most any image weighs:
        `candidate_cells`)."""
        c, batch = self.config, images.shape[0]
        rows, columns = self.cell_grid(images)
        output = self.head(self.backbone(self.padded(images))).flatten(2).transpose(1, 2)  # (B, K, 7), or 9 with a depth
        logits = PRESENCE_LOGIT_BOUND * torch.tanh(output[..., 0] / PRESENCE_LOGIT_BOUND)  # (B, K)
        cells = candidate_cells(logits) if candidates else None
        if cells is not None:
            output = output.gather(1, cells[..., None].expand(-1, -1, output.shape[-1]))  # (B, M, 7)
        q_where = normal(*gaussian_parameters(output[..., 1:]))
        u = q_where.rsample() if sample else q_where.mean  # (B, K, 3), or 4: the depth last
        z_where, in_tile = self.canvas_windows(u[..., :3], rows, columns, images.shape[-1], cells)
        glimpses = crop_glimpse(images, z_where, c.glimpse_size, WINDOW_FLOOR).flatten(0, 1)  # (B K, C, g, g)
        q_what = normal(*self.encode(glimpses))
        z_what = q_what.rsample() if sample else q_what.mean  # (B K, C_what)
        prior = standard_normal()
        log_ratio = ((prior.log_prob(u) - q_where.log_prob(u)).sum(-1)
                     + (prior.log_prob(z_what) - q_what.log_prob(z_what)).sum(-1).view(batch, -1))
        kl = (normal_kl(q_where, prior).sum(-1) + normal_kl(q_what, prior).sum(-1).view(batch, -1))
        return CellLatents(presence_logits=logits, cells=cells, z_where=z_where, in_tile=in_tile,
                           z_what=z_what.view(batch, u.shape[1], -1), window_latents=u, log_ratio=log_ratio, kl=kl)

    def draw_tiles(self, z_what: torch.Tensor, in_tile: torch.Tensor) -> torch.Tensor:
        """The generative step, every cell at once: (B, K, C_what), (B, K, 3) windows in their tiles' terms ->
        (B, K, C(+1), T, T) each cell's object decoded and drawn in its tile (with its alpha)."""
        batch, count = z_what.shape[:2]
        tiles = paste_glimpse(self.decode(z_what.flatten(0, 1)), in_tile.flatten(0, 1), self.tile,
                              WINDOW_FLOOR)  # (B K, C, T, T)
        return tiles.view(batch, count, *tiles.shape[1:])

    def forward(self, images: torch.Tensor, presence: str = "sample", exploration: float | torch.Tensor = 0.0,
                temperature: float | torch.Tensor = 1.0, sample: bool = True) -> GridTrace:
        """images (B, C, H, W) in [0, 1] -> the GridTrace of every cell. The arguments are AIR's but for
        exploration, which a grid does not need (each cell's presence has its own learning signal, whatever
        the others do) and ignores, and presence "all", which it refuses (there is no count to enumerate)."""
        if presence == "all":
            raise ValueError("a grid has no count to enumerate: draw presence by 'sample', 'relaxed' or 'greedy'")
        return self.trace_of(images, self.infer_cells(images, sample), presence, temperature, sample)

    def trace_of(self, images: torch.Tensor, cells: CellLatents, presence: str, temperature: float | torch.Tensor = 1.0,
                 sample: bool = True) -> GridTrace:
        """The trace of the cells `cells` holds: their presences drawn, their objects decoded into their tiles,
        and the background read."""
        context = (None if self.config.background == "none"
                   else read_background(self.background, images, sample, self.config.image_size))
        logits = cells.presence_logits if cells.cells is None else cells.presence_logits.gather(1, cells.cells)
        z_pres = draw_presence(logits.flatten(), logits.new_ones(logits.numel(), 1), presence, temperature)
        return GridTrace(images=images, presence_logits=logits, z_pres=z_pres.view_as(logits), log_ratio=cells.log_ratio,
                         scene_log_ratio=images.new_zeros(len(images)) if context is None else context.log_ratio,
                         z_where=cells.z_where, z_what=cells.z_what, tiles=self.draw_tiles(cells.z_what, cells.in_tile),
                         background=None if context is None else context.background, z_depth=self.depth(cells.window_latents),
                         latent_kl=cells.kl, window_latents=cells.window_latents, cells=cells.cells)

    def most_probable(self, images: torch.Tensor, sample: bool = False) -> GridTrace:
        """The trace of the most probable scene, of the candidate cells (CANDIDATE_PRESENCE): every latent at its
        mean (with `sample`, drawn from q: a proposal, infer.best_explanation), the presences the network's
        refined by presence_sweeps of `refine_presence`."""
        trace = self.trace_of(images, self.infer_cells(images, sample, candidates=True), "greedy", sample=sample)
        return dataclasses.replace(trace, z_pres=self.refine_presence(trace)) if self.config.presence_sweeps else trace

    def contributions(self, trace: GridTrace, weights: torch.Tensor) -> torch.Tensor:
        """What each cell's object adds to the canvas's sums, its presence weighted by `weights` (B, K):
        (B, K, C', T, T). Additive: the object itself. Alpha: with opacity o and depth weight w, its colour
        times o w, o w, and log(1 - o): sums over the cells that `compose` turns into the canvas."""
        tiles, weights = at_least_float32(trace.tiles), weights[:, :, None, None, None]  # under autocast too: logs, ratios
        if not self.alpha:
            return tiles * weights
        appearance, opacity = tiles[:, :, :-1], weights * tiles[:, :, -1:]
        nearness = opacity * torch.exp(DEPTH_RANGE * torch.tanh(trace.z_depth))[:, :, None, None, None]
        return torch.cat([nearness * appearance, nearness, torch.log1p(-opacity.clamp(max=OPACITY_LIMIT))], 2)

    def compose(self, sums: torch.Tensor, background: torch.Tensor | None) -> torch.Tensor:
        """(B, C', H, W) sums of the cells' contributions -> (B, C, H, W) the canvas. Additive: the sum over
        the background. Alpha: where objects overlap, their colours averaged by opacity times depth weight
        (the nearest all but hides the rest), covering 1 - prod(1 - o) of the background."""
        if not self.alpha:
            return sums if background is None else background + sums
        colour, nearness, log_through = sums[:, :-2], sums[:, -2:-1], sums[:, -1:]
        through = torch.exp(log_through)  # the share of the background no object covers
        objects = colour / nearness.clamp_min(1e-12) * (1 - through)
        return objects if background is None else objects + through * background

    def fold(self, tiles: torch.Tensor, images: torch.Tensor, cells: torch.Tensor | None = None) -> torch.Tensor:
        """(B, K, C', T, T) tiles (of every cell, or of `cells`) -> (B, C', H, W): added up where they overlap,
        cut to the images' canvas."""
        height, width = self.padded_size(images)
        return fold_tiles(tiles, height, width, self.cell, cells)[..., :images.shape[-2], :images.shape[-1]]

    def render(self, trace: GridTrace) -> torch.Tensor:
        """(B, C, H, W): the present objects (weighted by z_pres) composited over the background."""
        return self.compose(self.fold(self.contributions(trace, trace.z_pres), trace.images, trace.cells),
                            trace.background)

    def trace_log_likelihood(self, trace: GridTrace) -> torch.Tensor:
        """(B,) log p(x | z) of the trace's latents."""
        return self.log_likelihood(trace.images, self.render(trace))

    def presence_effects(self, trace: GridTrace) -> torch.Tensor:
        """(B, K): log p(x | z with cell k present) - log p(x | z with cell k absent), every other cell as the
        trace has it. Only cell k's tile changes, so each difference is a sum over one tile."""
        return self.presence_effects_given(trace)(trace.z_pres)

    def presence_effects_given(self, trace: GridTrace) -> AdditiveGaussianEffects | CompositedEffects:
        """The presence effects as a function of the presences z (B, K), the trace's other latents held:
        prepared once for the trace, then evaluated for any z (and any subset of the cells)."""
        if self.config.likelihood == "gaussian" and not self.alpha:
            return AdditiveGaussianEffects(self, trace)
        return CompositedEffects(self, trace)

    def pixel_shares(self, trace: GridTrace) -> torch.Tensor:
        """(B, M + 1, H, W): how likely each pixel is the background's and each present cell's object's, the cells
        in their order (M: the most any image holds; a cell not present: 0): the shares `compose` draws them with
        (with alpha, where objects overlap their opacity times depth weight divides what they cover,
        1 - prod(1 - o)) as the prior, and what the pixel shows (explain_pixels)."""
        canvases = self.present_canvases(trace, self.contributions(trace, trace.z_pres))  # (B, M, C', H, W)
        if not self.alpha:
            shares = pixel_shares(canvases, trace.background, canvases.new_ones(canvases.shape[:2]), alpha=False)
            return self.explain_pixels(trace.images, shares, alone_pictures(canvases, trace.background, additive=True))
        nearness, covered = canvases[:, :, -2], 1 - torch.exp(canvases[:, :, -1].sum(1, keepdim=True))  # (B, M, H, W)
        shares = torch.cat([1 - covered, nearness / nearness.sum(1, keepdim=True).clamp_min(1e-12) * covered], 1)
        appearance = canvases[:, :, :-2] / nearness[:, :, None].clamp_min(1e-12)  # each object's own colour
        appearance = fitted_appearance(appearance, 1 - torch.exp(canvases[:, :, -1]))  # (B, M, C, H, W)
        return self.explain_pixels(trace.images, shares, alone_pictures(appearance, trace.background, additive=False))

    def boxes(self, z_where: torch.Tensor, image_size: int) -> torch.Tensor:
        """(..., 3) -> (..., 4) pixel boxes x0, y0, x1, y1 of the windows."""
        return window_boxes(z_where, image_size, WINDOW_FLOOR)

    def refine_presence(self, trace: GridTrace) -> torch.Tensor:
        """(B, K) the trace's presences improved by coordinate ascent on the ELBO, its other latents held: a cell
        is present iff drawing it raises log p(x | z) by more than its latents' KL and the log(1 / rho) its
        presence costs, the other cells as they stand. The network's presences are mean-field guesses: two
        cells that share an object (near their common border) each learn with the other half present, and
        at test time both may switch on, or both off; the model's own likelihood settles which. Only cells
        the network gives more than CANDIDATE_PRESENCE are weighed; the rest stay absent. Cells whose tiles
        cannot overlap are updated together, so a sweep takes reach^2 passes; every sweep runs."""
        reach, columns = self.reach, self.cell_grid(trace.images)[1]
        cells = self.cell_indices(trace)
        group = (cells // columns % reach) * reach + cells % columns % reach  # (K,) or (B, K)
        cost = trace.latent_kl - torch.logit(self.count_prior)  # (B, K)
        cost = cost.masked_fill(~self.weighed(trace), math.inf)
        effects, present = self.presence_effects_given(trace), trace.z_pres.detach().clone()
        for _ in range(self.config.presence_sweeps):
            for index in range(reach ** 2):
                present = torch.where(group == index, (effects(present) > cost).to(present.dtype), present)
        return present

    @staticmethod
    def weighed(trace: GridTrace) -> torch.Tensor:
        """(B, K) the cells that test-time inference weighs: those the network gives more than CANDIDATE_PRESENCE.
        The others are never present (refine_presence): presence effects of a trace of candidate cells take them
        as absent, and leave their own effects inexact."""
        return weighed_cells(trace.presence_logits)

    @torch.no_grad()
    def describe(self, images: torch.Tensor, threshold: float = 0.5) -> Description:
        """Test-time inference, every cell at once: the cells whose presence probability exceeds `threshold` (above
        CANDIDATE_PRESENCE) are present, then refined (`refine_presence`) unless presence_sweeps is 0; only the
        candidate cells are decoded and weighed. Returns a Description as AIR.describe does, with K cells for N
        steps: z_pres (B, K), the network's presence probabilities (B, K), z_where (B, K, 3) and z_what
        (B, K, C_what), NaN where absent."""
        height, width = self.padded_size(images)
        chunk = max(1, REFINEMENT_FLOATS // (height * width // self.cell ** 2 * (images.shape[1] + 2) * self.tile ** 2))
        if len(images) > chunk:  # at worst every cell's tiles, a few copies: in chunks
            return Description.joined([self.describe(part, threshold) for part in images.split(chunk)])
        cells = self.infer_cells(images, sample=False, candidates=True)
        present = (torch.sigmoid(cells.presence_logits.gather(1, cells.cells)) > threshold).float()
        if self.config.presence_sweeps:
            trace = self.trace_of(images, cells, "greedy", sample=False)
            present = self.refine_presence(dataclasses.replace(trace, z_pres=present))
        absent = present[..., None] == 0

        def every_cell(values: torch.Tensor, empty: float) -> torch.Tensor:  # (B, M, ...) of the candidates -> (B, K, ...)
            shape = (*cells.presence_logits.shape, *values.shape[2:])
            index = cells.cells.view(*cells.cells.shape, *[1] * (values.dim() - 2)).expand_as(values)
            return values.new_full(shape, empty).scatter(1, index, values)

        return Description(present=every_cell(present, 0.0), presence=torch.sigmoid(cells.presence_logits),
                           where=every_cell(cells.z_where.masked_fill(absent, float("nan")), float("nan")),
                           what=every_cell(cells.z_what.masked_fill(absent, float("nan")), float("nan")))
