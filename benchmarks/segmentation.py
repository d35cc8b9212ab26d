"""Segmentation as the field measures it: airscene and Slot Attention side by side on the same generated data,
with the same wall-clock budget on the same cores, scored by the same metric code (FG-ARI, ARI, mBO).

Slot Attention (Locatello et al. 2020, "Object-Centric Learning with Slot Attention"): the slot-attention
module is the `slot-attention` package's `SlotAttention` (3 iterations, slot size 64, MLP 128), installed by
`pip install -e ".[benchmarks]"`; the rest is written here from the paper's appendix for Tetrominoes and
Multi-dSprites: a CNN encoder (four 5 x 5 convolutions of 32 channels) with the soft position embedding, a
layer norm and a two-layer MLP; a spatial-broadcast decoder at full resolution (three 5 x 5 convolutions of
32 channels and a 3 x 3 one to colour and mask logits), masks a softmax over the slots; a mean squared error;
Adam at 4e-4, batch 64, the paper's warm-up (10k of 500k steps) and halving (every 100k) compressed to the
budget in time. Its segmentation is each pixel's most probable slot.

    pip install -e ".[benchmarks]"
    python benchmarks/segmentation.py --data tetrominoes --minutes 30
    python benchmarks/segmentation.py --data multi-dsprites --minutes 30

Runs already finished are kept; `--parallel N` trains N runs at once, each in its own process with `--threads`
torch threads; `--report` alone writes RESULTS.md from the finished runs (and the machine they ran on).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from results import DEFAULT_MINUTES, machine, run_airscene, seeded_runs_parser, train_once, write_section  # noqa: E402

from airscene.data.files import load_dataset  # noqa: E402
from airscene.evaluate import segmentation_metrics  # noqa: E402

# airscene's flags on every data set. The fast start (--learning-rate-start 4, the default) forms Multi-MNIST's
# count sooner, but here it left the masks worse at the same step (RESULTS.md, "Segmentation: the fast start, and
# what was tried on Multi-dSprites"), so these runs start at the rate they keep.
RECIPE = ["--model", "dair", "--learning-rate-decay", "cosine", "--learning-rate-start", "1"]
PROPOSALS = 16  # airscene's masks: each scene's best of this many explanations (`airscene eval --proposals`),
REFINE = 100  # then refined by this many gradient steps on its joint (`--refine`); both chosen on other scenes
DATA_SETS = {  # name: what it is, the `airscene data` command, Slot Attention's slots, airscene's train flags
    "tetrominoes": {
        "what": "Tetrominoes look-alike (35 x 35, 3 pieces on black)",
        "data": ["tetrominoes", "--test", "1000"],
        "slots": 4,
        "airscene": [*RECIPE, "--likelihood-sd", "0.1", "--object-size", "5,20", "--window-limit", "1.2",
                     "--max-objects", "3", "--glimpse-colour", "flat"],
    },
    # Both below: each step's window starts on what is left to explain (--where-proposal residual), which stops
    # later steps stacking on a sprite already explained; chosen on validation scenes (RESULTS.md, "Segmentation:
    # each step sent to what is left"). Multi-dSprites: a stronger count prior, as leftover sprite edges otherwise
    # pay for a fourth step, and windows up to 1.5 times the largest --object-size, as a turned square's extent
    # reaches 36 pixels (with 1.2 the window cut off the largest sprites' corners). CLEVR: 16-pixel glimpses for
    # objects of 4-20 pixels, the count prior annealed (a learned background with the full prior from the first
    # step switches every object off), a narrower likelihood (sd 0.07: at 0.1 small dim objects were not worth a
    # step, at 0.15 no object formed) and glimpse networks of 400 hidden units (fewer large objects split in two).
    "multi-dsprites": {
        "what": "Multi-dSprites look-alike (64 x 64, 1-4 sprites, colour on colour)",
        "data": ["multi-dsprites", "--test", "1000"],
        "slots": 5,
        "airscene": [*RECIPE, "--likelihood-sd", "0.1", "--compositing", "alpha", "--background", "learned",
                     "--object-size", "12,26", "--window-limit", "1.5", "--max-objects", "4",
                     "--where-proposal", "residual", "--count-prior", "1e-30"],
    },
    "clevr": {
        "what": "CLEVR look-alike (64 x 64, 3-6 objects, rendered by MuJoCo)",
        "data": ["clevr", "--train", "30000", "--test", "1000"],
        "slots": 7,
        "airscene": [*RECIPE, "--likelihood-sd", "0.07", "--compositing", "alpha", "--background", "learned",
                     "--object-size", "4,20", "--window-limit", "1.2", "--max-objects", "6",
                     "--where-proposal", "residual", "--glimpse-size", "16", "--glimpse-hidden-size", "400",
                     "--count-prior-schedule", "exponential", "--count-prior-start", "0.5",
                     "--count-prior-steps", "1500"],
    },
}
MODELS = ("airscene", "slot-attention")


class SoftPositionEmbedding(nn.Module):
    """Adds a learned projection of each pixel's coordinates (x, y, 1 - x, 1 - y) to the features."""

    def __init__(self, channels: int, height: int, width: int):
        super().__init__()
        ys, xs = torch.meshgrid(torch.linspace(0, 1, height), torch.linspace(0, 1, width), indexing="ij")
        self.register_buffer("grid", torch.stack([xs, ys, 1 - xs, 1 - ys]), persistent=False)  # (4, H, W)
        self.project = nn.Conv2d(4, channels, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:  # (B, D, H, W)
        return features + self.project(self.grid[None])


def convolutions(channels: list[int], kernel: int) -> nn.Sequential:
    layers = []
    for before, after in zip(channels, channels[1:]):
        layers += [nn.Conv2d(before, after, kernel, padding=kernel // 2), nn.ReLU()]
    return nn.Sequential(*layers)


class SlotAttentionAutoEncoder(nn.Module):
    """Encoder, slot attention, spatial-broadcast decoder: images (B, C, H, W) -> reconstruction and masks."""

    def __init__(self, channels: int, size: int, slots: int, hidden: int = 32, slot_size: int = 64):
        super().__init__()
        from slot_attention import SlotAttention

        self.encode = convolutions([channels, hidden, hidden, hidden, hidden], 5)
        self.encoder_position = SoftPositionEmbedding(hidden, size, size)
        self.to_inputs = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, slot_size), nn.ReLU(),
                                       nn.Linear(slot_size, slot_size))
        self.slots = SlotAttention(num_slots=slots, dim=slot_size, iters=3, hidden_dim=128)
        self.decoder_position = SoftPositionEmbedding(slot_size, size, size)
        self.decode = nn.Sequential(convolutions([slot_size, hidden, hidden, hidden], 5),
                                    nn.Conv2d(hidden, channels + 1, 3, padding=1))
        self.size = size

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch, channels = images.shape[:2]
        features = self.encoder_position(self.encode(images)).flatten(2).transpose(1, 2)  # (B, H*W, D)
        slots = self.slots(self.to_inputs(features))  # (B, K, S)
        broadcast = slots.flatten(0, 1)[:, :, None, None].expand(-1, -1, self.size, self.size)  # (B*K, S, H, W)
        decoded = self.decode(self.decoder_position(broadcast)).view(batch, -1, channels + 1, self.size, self.size)
        masks = decoded[:, :, -1].softmax(1)  # (B, K, H, W)
        reconstruction = (masks[:, :, None] * decoded[:, :, :-1]).sum(1)  # (B, C, H, W)
        return reconstruction, masks


def as_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (B, H, W) or (B, H, W, C) -> float (B, C, H, W) in [0, 1]."""
    images = torch.from_numpy(np.asarray(images))
    images = images[..., None] if images.dim() == 3 else images
    return images.permute(0, 3, 1, 2).float() / 255


def learning_rate(elapsed: float, budget: float, peak: float = 4e-4) -> float:
    """The paper's schedule, 500k steps compressed to the budget: linear warm-up over the first 2%, then
    halved every fifth."""
    fraction = elapsed / budget
    return peak * min(1.0, fraction / 0.02) * 0.5 ** (fraction / 0.2)


def train_slot_attention(data: Path, slots: int, seconds: float, seed: int, device: str, batch_size: int = 64):
    """Trains for `seconds` of wall-clock; returns the model and the steps taken."""
    torch.manual_seed(seed)
    train, _, _ = load_dataset(data)
    images = train.images
    channels = 1 if images.ndim == 3 else images.shape[-1]
    model = SlotAttentionAutoEncoder(channels, images.shape[1], slots).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=0.0)
    generator = np.random.default_rng(seed)
    start, step = time.monotonic(), 0
    while (elapsed := time.monotonic() - start) < seconds:
        for group in optimiser.param_groups:
            group["lr"] = learning_rate(elapsed, seconds)
        batch = as_tensor(images[np.sort(generator.choice(len(images), batch_size, replace=False))]).to(device)
        reconstruction, _ = model(batch)
        loss = F.mse_loss(reconstruction, batch)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        step += 1
    return model, step


@torch.no_grad()
def slot_attention_labels(model: SlotAttentionAutoEncoder, images: np.ndarray, batch_size: int = 250) -> np.ndarray:
    """Each pixel's most probable slot, numbered from 1 (every slot a segment, the background's too)."""
    model.eval()
    device = next(model.parameters()).device
    return np.concatenate([model(as_tensor(images[start:start + batch_size]).to(device))[1].argmax(1).cpu().numpy() + 1
                           for start in range(0, len(images), batch_size)])


def run_slot_attention(directory: Path, data: Path, slots: int, minutes: float, seed: int, device: str) -> None:
    if (directory / "scores.json").is_file():
        return
    model, steps = train_slot_attention(data, slots, minutes * 60, seed, device)
    _, test, _ = load_dataset(data)
    scores = {"steps": steps, "count_accuracy": None,
              **segmentation_metrics(test.masks, slot_attention_labels(model, test.images))}
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "scores.json").write_text(json.dumps(scores, indent=2))


def run_airscene_model(directory: Path, data: Path, flags: list[str], minutes: float, seed: int, threads: int,
                       device: str) -> None:
    if train_once(directory, "train", "--data", str(data), *flags, "--seed", str(seed), "--minutes", str(minutes),
                  "--threads", str(threads), "--device", device, "--quiet") or not (directory / "eval.json").is_file():
        run_airscene("eval", str(directory), "--samples", "1", "--proposals", str(PROPOSALS), "--refine", str(REFINE),
                     "--device", device)


def scores(directory: Path, model: str) -> dict | None:
    """A finished run's figures: steps, count accuracy, FG-ARI, ARI, mBO."""
    if model == "slot-attention":
        path = directory / "scores.json"
        return json.loads(path.read_text()) if path.is_file() else None
    if not (directory / "eval.json").is_file():
        return None
    evaluation = json.loads((directory / "eval.json").read_text())
    return {"steps": evaluation["checkpoint_step"], **{key: evaluation.get(key) for key in
                                                       ("count_accuracy", "fg_ari", "ari", "mbo")}}


def percent(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def report(out: Path, name: str, minutes: float, seeds: list[int], device: str) -> None:
    spec = DATA_SETS[name]
    rows = ["| model | seed | steps | count accuracy | FG-ARI | ARI | mBO |", "|---|---:|---:|---:|---:|---:|---:|"]
    for model in MODELS:
        for seed in seeds:
            found = scores(out / f"{model}-seed{seed}", model)
            if found is not None:
                rows.append(f"| {model} | {seed} | {found['steps']:,} | {percent(found['count_accuracy'])} | "
                            f"{percent(found['fg_ari'])} | {percent(found['ari'])} | {percent(found['mbo'])} |")
    ran = json.loads((out / "machine.json").read_text()) if (out / "machine.json").is_file() else {}
    body = (f"Data: {spec['what']}, `airscene data {' '.join(spec['data'])}`. Each run: {minutes:g} minutes of "
            f"training on {device} ({ran.get('threads', '?')} torch thread(s) a run, {ran.get('parallel', '?')} runs "
            f"at once), then scored on every held-out scene by `airscene.evaluate.segmentation_metrics`. airscene: "
            f"`airscene train {' '.join(spec['airscene'])}`, `airscene eval --samples 1 --proposals {PROPOSALS} --refine {REFINE}`. Slot Attention: "
            f"{spec['slots']} slots, as described in the script.\n\n" + "\n".join(rows))
    variant = [*([f"{minutes:g} minutes"] if minutes != DEFAULT_MINUTES else []), *([device] if device != "cpu" else [])]
    write_section(f"Segmentation: {name}" + (f" ({', '.join(variant)})" if variant else ""), body, ran.get("machine"))


def run_one(out: Path, data: Path, spec: dict, model: str, seed: int, minutes: float, threads: int, device: str) -> None:
    directory = out / f"{model}-seed{seed}"
    if model == "airscene":
        run_airscene_model(directory, data, spec["airscene"], minutes, seed, threads, device)
    else:
        run_slot_attention(directory, data, spec["slots"], minutes, seed, device)


def main() -> None:
    parser = seeded_runs_parser(__doc__, "benchmarks/out/segmentation")
    parser.add_argument("--data", choices=tuple(DATA_SETS), required=True)
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu, or cuda: where both models train")
    parser.add_argument("--report", action="store_true", help="only write RESULTS.md from the finished runs")
    parser.add_argument("--no-report", action="store_true", help="train and score, but leave RESULTS.md as it is")
    parser.add_argument("--concurrent", type=int, default=None,
                        help="runs training on the machine at once, this call's and others' (default: --parallel)")
    parser.set_defaults(parallel=1)
    args = parser.parse_args()
    spec, out = DATA_SETS[args.data], Path(args.out) / args.data
    data = out / "data"
    if not args.report:
        torch.set_num_threads(args.threads)
        if not (data / "dataset.json").is_file():
            run_airscene("data", *spec["data"], "--out", str(data))
        runs = [(model, seed) for seed in args.seeds for model in args.models]
        in_processes = args.parallel > 1 and len(runs) > 1  # each run its own process, as if alone with its threads
        if in_processes or not (out / "machine.json").is_file():  # a run started by this call's processes keeps it
            concurrent = args.concurrent or (min(args.parallel, len(runs)) if in_processes else 1)
            (out / "machine.json").write_text(json.dumps({"machine": machine(), "threads": args.threads,
                                                          "parallel": concurrent}))
        if in_processes:
            common = [sys.executable, __file__, "--data", args.data, "--out", args.out, "--minutes", str(args.minutes),
                      "--threads", str(args.threads), "--device", args.device, "--parallel", "1"]
            with ThreadPoolExecutor(args.parallel) as pool:
                list(pool.map(lambda run: subprocess.run([*common, "--models", run[0], "--seeds", str(run[1]), "--no-report"],
                                                         check=True), runs))
        else:
            for model, seed in runs:
                run_one(out, data, spec, model, seed, args.minutes, args.threads, args.device)
    if not args.no_report:
        report(out, args.data, args.minutes, args.seeds, args.device)


if __name__ == "__main__":
    main()
