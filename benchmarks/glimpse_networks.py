"""How fast AIR's glimpse networks learn the sprites of the Multi-dSprites look-alike, one at a time.

    python benchmarks/glimpse_networks.py

A diagnostic for the segmentation benchmark: there, after 10 minutes (about 3,000 steps), AIR's glimpses of the
sprites are still blurred discs. Here nothing else is learned: each glimpse is one sprite (square, ellipse or heart,
turned at random, as `airscene data multi-dsprites` draws them) of a random colour over a random colour, centred
in the 28 x 28 window as a perfectly placed attention window would crop it. The glimpse encoder and decoder
(airscene.model.networks, the model's own settings: 200 hidden units, a 50-number z_what, the decoder's alpha
composited over the true background; the likelihood's sd 0.1, as the segmentation benchmark trains) are trained
alone as a VAE, batch 64, Adam at 1e-3, gradients clipped at 10, as the training loop does. Reported on 500 new
glimpses every 1,000 steps: the IoU of the decoded shape (alpha > 0.5) with the sprite's."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from results import write_section  # noqa: E402

from airscene.data.scenes import DSPRITE_SHAPES, dsprite_mask  # noqa: E402
from airscene.model.air import composite  # noqa: E402
from airscene.model.networks import GlimpseDecoder, GlimpseEncoder  # noqa: E402

GLIMPSE, WHAT, SD, BATCH = 28, 50, 0.1, 64
VARIANTS = {  # name: (description, encoder and decoder network, hidden units, glimpse colour, sprites turned)
    "mlp": ("the model's (`--glimpse-network mlp`)", "mlp", 200, "pixel", True),
    "conv": ("`--glimpse-network conv`", "conv", 200, "pixel", True),
    "flat": ("`--glimpse-colour flat`", "mlp", 200, "flat", True),
    "hidden-400": ("`--glimpse-hidden-size 400`", "mlp", 400, "pixel", True),
    "unturned": ("the model's, sprites never turned", "mlp", 200, "pixel", False),
}


def sprites(number: int, turned: bool, rng: np.random.Generator) -> tuple[torch.Tensor, ...]:
    """Glimpses (B, 3, g, g) of one sprite each, their backgrounds (B, 3, 1, 1) and masks (B, g, g)."""
    images, backgrounds = np.empty((number, 3, GLIMPSE, GLIMPSE), np.float32), rng.random((number, 3), np.float32)
    masks = np.empty((number, GLIMPSE, GLIMPSE), bool)
    for index in range(number):
        centre = GLIMPSE / 2 + rng.normal(0, 1, size=2)
        masks[index] = dsprite_mask(DSPRITE_SHAPES[rng.integers(len(DSPRITE_SHAPES))], GLIMPSE, *centre,
                                    rng.uniform(0.55, 0.95) * GLIMPSE, rng.uniform(0, 2 * np.pi) if turned else 0.0)
        images[index] = backgrounds[index, :, None, None]
        images[index][:, masks[index]] = rng.random((3, 1), np.float32)
    return torch.from_numpy(images), torch.from_numpy(backgrounds)[:, :, None, None], torch.from_numpy(masks)


def train(variant: str, steps: int, seed: int) -> list[float]:
    """The decoded shapes' mean IoU on 500 new glimpses after every 1,000 steps."""
    _, network, hidden, colour, turned = VARIANTS[variant]
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    encoder = GlimpseEncoder(3, GLIMPSE, hidden, WHAT, network)
    decoder = GlimpseDecoder(3, GLIMPSE, hidden, WHAT, -2.0, network, alpha=True, colour=colour)
    parameters = [*encoder.parameters(), *decoder.parameters()]
    optimiser = torch.optim.Adam(parameters, 1e-3)
    held_out_images, _, held_out_masks = sprites(500, turned, rng)
    scores = []
    for step in range(1, steps + 1):
        images, backgrounds, _ = sprites(BATCH, turned, rng)
        q = torch.distributions.Normal(*encoder(images))
        glimpse = decoder(q.rsample())  # (B, 4, g, g): colour, then alpha
        canvas = composite(glimpse[:, None], backgrounds.expand(-1, -1, GLIMPSE, GLIMPSE),
                           torch.ones(BATCH, 1), alpha=True)[:, -1]  # as the model draws one object over its ground
        negative_log_likelihood = 0.5 * ((images - canvas) / SD).square().flatten(1).sum(1)
        kl = torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0)).sum(1)
        optimiser.zero_grad()
        (negative_log_likelihood + kl).mean().backward()
        torch.nn.utils.clip_grad_norm_(parameters, 10.0)
        optimiser.step()
        if step % 1000 == 0:
            with torch.no_grad():
                shape = decoder(encoder(held_out_images)[0])[:, 3] > 0.5  # (B, g, g) from the codes' means
                overlap = (shape & held_out_masks).sum((1, 2)) / (shape | held_out_masks).sum((1, 2))
                scores.append(float(overlap.mean()))
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(2)
    rows = []
    for variant in args.variants:
        scores = train(variant, args.steps, args.seed)
        rows.append(f"| {VARIANTS[variant][0]} | " + " | ".join(f"{score:.3f}" for score in scores) + " |")
        print(rows[-1], flush=True)
    thousands = range(1000, args.steps + 1, 1000)
    write_section("Glimpse networks on single sprites", "\n".join([
        f"Seed {args.seed}. The decoded shape's IoU with the sprite on 500 held-out glimpses, by training step "
        "(the module docstring says what is trained and how).\n",
        "| glimpse networks | " + " | ".join(f"step {step:,}" for step in thousands) + " |",
        "| --- | " + " | ".join("---:" for _ in thousands) + " |", *rows]))


if __name__ == "__main__":
    main()
