"""The small networks of AIR, each with one job."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

MIN_SD = 1e-4  # keeps every Gaussian proper
PRESENCE_LOGIT_BOUND = 8.0  # presence probabilities stay within [3e-4, 1 - 3e-4]


def gaussian_parameters(raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(..., 2D) -> mean (..., D), sd (..., D) > 0."""
    mean, sd = raw.chunk(2, dim=-1)
    return mean, F.softplus(sd) + MIN_SD


class ImageEmbedding(nn.Module):
    """Embeds the whole canvas once per image: the LSTM then sees 256 numbers, not 2,500 pixels."""

    def __init__(self, channels: int, image_size: int, embedding_size: int):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(channels * image_size ** 2, embedding_size), nn.ReLU())

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, E)
        return self.net(images)


class GlimpseEncoder(nn.Module):
    """x_att -> mean and sd of q(z_what | x_att)."""

    def __init__(self, channels: int, glimpse_size: int, hidden_size: int, what_size: int, kind: str = "mlp"):
        super().__init__()
        if kind == "mlp":
            self.net = nn.Sequential(nn.Flatten(), nn.Linear(channels * glimpse_size ** 2, hidden_size), nn.ReLU(),
                                     nn.Linear(hidden_size, 2 * what_size))
        else:
            self.net = nn.Sequential(
                nn.Conv2d(channels, 16, 3, stride=2, padding=1), nn.ReLU(),
                nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(),
                nn.LazyLinear(hidden_size), nn.ReLU(), nn.Linear(hidden_size, 2 * what_size))
            self.net(torch.zeros(1, channels, glimpse_size, glimpse_size))  # materialise the lazy layer
        # Start with q(z_what) close to its N(0, I) prior: an object then costs almost nothing in KL
        # before the decoder has learned to use its code, so early steps are not switched off for it.
        last = self.net[-1]
        with torch.no_grad():
            last.weight.mul_(0.1)
            last.bias.zero_()
            last.bias[what_size:] = 0.5413  # softplus(0.5413) = 1

    def forward(self, glimpses: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # (B, C, g, g)
        return gaussian_parameters(self.net(glimpses))


class GlimpseDecoder(nn.Module):
    """z_what -> y_att, a glimpse in [0, 1]: `channels` colour channels, then an alpha channel if `alpha`.
    The fixed negative bias before the sigmoid starts every glimpse nearly blank, so early objects do not
    paint the canvas grey (Pyro's recipe).

    colour "pixel": every pixel of every channel decoded on its own. "flat": the network decodes one map, the
    object's shape (its alpha, or its ink where glimpses add up), and a linear head one colour for the whole
    object, which paints the shape: a flat-shaded object (a sprite, a tetromino) is then a shape and a colour,
    where per-pixel decoding must learn their product at every pixel."""

    def __init__(self, channels: int, glimpse_size: int, hidden_size: int, what_size: int, bias: float,
                 kind: str = "mlp", alpha: bool = False, colour: str = "pixel"):
        super().__init__()
        self.alpha, self.flat = alpha, colour == "flat"
        maps = 1 if self.flat else channels + alpha
        self.shape = (maps, glimpse_size, glimpse_size)
        self.bias = bias
        if kind == "mlp":
            self.net = nn.Sequential(nn.Linear(what_size, hidden_size), nn.ReLU(),
                                     nn.Linear(hidden_size, maps * glimpse_size ** 2))
        else:
            quarter = (glimpse_size + 3) // 4
            self.net = nn.Sequential(
                nn.Linear(what_size, hidden_size), nn.ReLU(), nn.Linear(hidden_size, 32 * quarter ** 2), nn.ReLU(),
                nn.Unflatten(1, (32, quarter, quarter)),
                nn.ConvTranspose2d(32, 16, 4, stride=2, padding=1), nn.ReLU(),
                nn.ConvTranspose2d(16, maps, 4, stride=2, padding=1),
                nn.Upsample(size=(glimpse_size, glimpse_size), mode="bilinear", align_corners=False), nn.Flatten())
        if self.flat:
            self.colour = nn.Linear(what_size, channels)

    @classmethod
    def of(cls, config) -> GlimpseDecoder:
        """The decoder a model config describes (AIR's and the grid's alike)."""
        return cls(config.channels, config.glimpse_size, config.glimpse_hidden_size, config.what_size,
                   config.decoder_bias, config.glimpse_network, alpha=config.compositing == "alpha",
                   colour=config.glimpse_colour)

    def forward(self, z_what: torch.Tensor) -> torch.Tensor:  # (B, C_what) -> (B, C(+1), g, g)
        maps = torch.sigmoid(self.net(z_what) + self.bias).view(-1, *self.shape)
        if not self.flat:
            return maps
        colour = torch.sigmoid(self.colour(z_what))[:, :, None, None]  # (B, C, 1, 1)
        if self.alpha:
            return torch.cat([colour.expand(-1, -1, *self.shape[1:]), maps], 1)
        return colour * maps


class BackgroundVAE(nn.Module):
    """The background component: q(z_bg | x) from a small CNN of the image, and p(x_bg | z_bg) decoded at
    `resolution` x `resolution` and upsampled bilinearly to the canvas, smooth by construction."""

    def __init__(self, channels: int, latent_size: int, resolution: int, hidden_size: int = 128):
        super().__init__()
        self.shape = (channels, resolution, resolution)
        self.encoder = nn.Sequential(
            nn.AdaptiveAvgPool2d(16), nn.Conv2d(channels, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(32, 32, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(),
            nn.Linear(32 * 4 * 4, hidden_size), nn.ReLU(), nn.Linear(hidden_size, 2 * latent_size))
        self.decoder = nn.Sequential(nn.Linear(latent_size, hidden_size), nn.ReLU(),
                                     nn.Linear(hidden_size, channels * resolution ** 2))
        with torch.no_grad():  # start dark and close to the prior, like the glimpses
            self.decoder[-1].bias.fill_(-2.0)
            self.encoder[-1].weight.mul_(0.1)
            self.encoder[-1].bias.zero_()
            self.encoder[-1].bias[latent_size:] = 0.5413  # softplus(0.5413) = 1

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # (B, C, H, W) -> mean, sd (B, D)
        return gaussian_parameters(self.encoder(images))

    def decode(self, z_background: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """(B, D) -> (B, C, H, W) in [0, 1], H x W = size."""
        coarse = torch.sigmoid(self.decoder(z_background)).view(-1, *self.shape)
        return F.interpolate(coarse, size=size, mode="bilinear", align_corners=False)


class InferenceStep(nn.Module):
    """One step of the recurrent inference network: h^i = LSTM([embed(x), z^{i-1}, z_pres^{i-1}], h^{i-1}),
    and a head giving the presence logit and the mean and sd of q(z_where^i). What z^{i-1} holds (its
    `feedback_size` numbers) and what z_where is (its size, the head's initial mean and sd) are the model's."""

    def __init__(self, embedding_size: int, feedback_size: int, hidden_size: int,
                 where_mean: tuple[float, ...], where_sd_bias: tuple[float, ...]):
        super().__init__()
        self.embedding_size = embedding_size
        self.lstm = nn.LSTMCell(embedding_size + feedback_size + 1, hidden_size)
        self.head = nn.Linear(hidden_size, 1 + 2 * len(where_mean))
        with torch.no_grad():
            # Start at the prior's window, centred, with the model's spread in position, so early
            # samples land on objects and the attention learns where they are, and with presence
            # probability sigmoid(2) = 0.88 so that early steps are tried and learn.
            self.head.weight.mul_(0.1)
            self.head.bias.copy_(torch.tensor([2.0, *where_mean, *where_sd_bias]))

    def image_gates(self, embedding: torch.Tensor) -> torch.Tensor:
        """(B, E) -> (B, 4H): the image's share of the LSTM's gate pre-activations. AIR's recurrent input
        is the same image at every step, so this is computed once per image rather than once per step."""
        weight = self.lstm.weight_ih[:, :self.embedding_size]
        return F.linear(embedding, weight, self.lstm.bias_ih + self.lstm.bias_hh)

    def forward(self, image_gates, previous, state):
        """(B, 4H), (B, F + 1) = [z^{i-1}, z_pres^{i-1}], ((B, H), (B, H)) or None (a fresh state: zeros) ->
        logit (B,), mean (B, D), sd (B, D), state. The LSTM cell of nn.LSTMCell (gates i, f, g, o), with the
        image's gates precomputed; a fresh state's terms, zero, are not computed."""
        gates = torch.addmm(image_gates, previous, self.lstm.weight_ih[:, self.embedding_size:].t())
        if state is not None:
            gates = torch.addmm(gates, state[0], self.lstm.weight_hh.t())
        input_gate, forget_gate, cell_gate, output_gate = gates.chunk(4, dim=1)
        cell = torch.sigmoid(input_gate) * torch.tanh(cell_gate)
        if state is not None:
            cell = torch.sigmoid(forget_gate) * state[1] + cell
        hidden = torch.sigmoid(output_gate) * torch.tanh(cell)
        output = self.head(hidden)
        mean, sd = gaussian_parameters(output[:, 1:])
        # A bounded logit: an unbounded one saturates early (when a weak decoder makes several steps
        # per digit worth it), its gradient then vanishes below Adam's epsilon, and the count can never
        # recover once a single step explains a digit better. The bound costs q at most 3e-4 nats a step.
        logit = PRESENCE_LOGIT_BOUND * torch.tanh(output[:, 0] / PRESENCE_LOGIT_BOUND)
        return logit, mean, sd, (hidden, cell)
