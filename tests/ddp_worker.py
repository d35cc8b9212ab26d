"""Run by torchrun from tests/test_distributed.py: each rank does one check and saves what it found.

    torchrun --nproc-per-node K tests/ddp_worker.py CHECK DATA OUT
"""

import sys
from pathlib import Path

import torch

from airscene.config import Config, ModelConfig, TrainConfig
from airscene.data import load_dataset
from airscene.distributed import joined, replicated_model
from airscene.runs import Run, combine, fit, gather_objects
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
        combined = combine(gather_objects(job.evaluate(), shard))
        if shard.leads:
            torch.save({"metrics": combined, "share": len(job.test_images)}, out / "metrics.pt")


if __name__ == "__main__":
    check, data, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    {"weights": weights, "gradient": gradient, "metrics": metrics}[check](data, out)
