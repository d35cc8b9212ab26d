"""Run by torchrun from tests/test_distributed.py: each rank does one check and saves what it found.

    torchrun --nproc-per-node K tests/ddp_worker.py CHECK DATA OUT
"""

import contextlib
import io
import json
import os
import sys
import time
from pathlib import Path

import torch

from airscene import runs
from airscene.cli import main
from airscene.config import Config, ModelConfig, TrainConfig
from airscene.data import load_dataset
from airscene.distributed import joined, replicated_model
from airscene.rundir import Run
from airscene.runs import combine, fit, gather_objects
from airscene.train import AIRJob, fit_model_to_data

TINY = dict(glimpse_size=10, what_size=8, hidden_size=32, embedding_size=32, glimpse_hidden_size=32)


def config(data: str, steps: int = 6, batch_size: int = 8) -> Config:
    return Config(data=data, model=ModelConfig(**TINY),
                  train=TrainConfig(steps=steps, batch_size=batch_size, eval_every=3, checkpoint_every=3, log_every=3,
                                    eval_images=40, threads=1))


def weights(data: str, out: Path) -> None:
    """Train a few steps through the one loop; every rank saves the weights it ends with."""
    settings = config(data)
    train_set, test_set, _ = load_dataset(data)
    with joined(torch.device("cpu")) as shard, Run(out / "run", False, shard) as run:
        fit_model_to_data(settings, train_set, test_set, shard)
        torch.manual_seed(0)
        job = AIRJob(settings, train_set, test_set, torch.device("cpu"), shard)
        torch.manual_seed(shard.seed(0))
        fit(job, run, progress=False)
        torch.save(job.model.state_dict(), out / f"weights-rank{shard.rank}.pt")


def gradient(data: str, out: Path) -> None:
    """The gradient of one step on this rank's share of a global batch of 16, with the sampling noise fixed
    (every continuous latent at its mean), through DistributedDataParallel; rank 0 saves it."""
    torch.distributions.normal._standard_normal = lambda shape, dtype, device: torch.zeros(shape, dtype=dtype, device=device)
    train_set, test_set, _ = load_dataset(data)
    with joined(torch.device("cpu")) as shard:
        settings = config(data, batch_size=16 // shard.world)  # a global batch of 16 images
        fit_model_to_data(settings, train_set, test_set, shard)
        torch.manual_seed(0)
        job = AIRJob(settings, train_set, test_set, torch.device("cpu"), shard)
        model = replicated_model(job.model, shard, job.device)
        batch = job.batch(0)
        loss, _ = job.estimator(model, job.estimator.draw(model, batch, 0.5, 0))
        loss.backward()
        if shard.leads:
            torch.save({name: parameter.grad for name, parameter in job.model.named_parameters()}, out / "gradient.pt")


def metrics(data: str, out: Path) -> None:
    """Held-out count accuracy of one model over the ranks' shares of the test set, combined."""
    settings = config(data)
    train_set, test_set, _ = load_dataset(data)
    with joined(torch.device("cpu")) as shard:
        fit_model_to_data(settings, train_set, test_set, shard)
        torch.manual_seed(0)
        job = AIRJob(settings, train_set, test_set, torch.device("cpu"), shard)
        job.model.eval()
        combined = combine(gather_objects(job.held_out_partials(), shard))
        if shard.leads:
            torch.save({"metrics": combined, "share": len(job.test_images)}, out / "metrics.pt")


def command_line(data: str, out: Path, extra: list[str]) -> None:
    """`airscene train` with this rank's own extra flags; its exit code and error saved as OUT/rankR.json."""
    rank = int(os.environ["RANK"])
    (out / f"rank{rank}.pid").write_text(str(os.getpid()))
    flags = ["train", "--data", data, "--out", str(out / "run"), "--quiet", "--batch-size", "8", "--eval-every", "3",
             "--eval-images", "16", "--checkpoint-every", "3", "--log-every", "3", "--threads", "1",
             *(f"--{name.replace('_', '-')}={value}" for name, value in TINY.items()), *extra]
    error = io.StringIO()
    with contextlib.redirect_stderr(error):
        code = main(flags)
    (out / f"rank{rank}.json").write_text(json.dumps({"code": code, "error": error.getvalue()}))


def steps_differ(data: str, out: Path) -> None:
    command_line(data, out, ["--steps", str(4 + int(os.environ["RANK"]))])


def model_differs(data: str, out: Path) -> None:
    command_line(data, out, ["--steps", "4", "--model", "dair" if os.environ["RANK"] == "1" else "air"])


def rank_dies(data: str, out: Path) -> None:
    """Rank 1 dies at its fourth step, as a killed process does."""
    if os.environ["RANK"] == "1":
        step = runs.train_step
        runs.train_step = lambda job, number, *rest: os._exit(9) if number == 3 else step(job, number, *rest)
    command_line(data, out, ["--steps", "20"])


def rank_hangs(data: str, out: Path) -> None:
    """Rank 1 joins the group and then never takes part; rank 0 starts training and waits for it."""
    if os.environ["RANK"] == "1":
        with joined(torch.device("cpu")):
            time.sleep(120)
    command_line(data, out, ["--steps", "4"])


if __name__ == "__main__":
    check, data, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    {"weights": weights, "gradient": gradient, "metrics": metrics, "steps_differ": steps_differ,
     "model_differs": model_differs, "rank_dies": rank_dies, "rank_hangs": rank_hangs}[check](data, out)
