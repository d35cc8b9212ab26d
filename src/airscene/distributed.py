"""Where the compute is: the device a run uses, and the processes it shares the work with. Several processes
(on one machine or several) are launched by PyTorch's own `torchrun` and synchronised by its
DistributedDataParallel: gloo on CPUs, NCCL on CUDA. A single process is world size 1, and then nothing
here communicates."""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from airscene.errors import AirsceneError

DEVICES = "auto, cpu, cuda, cuda:N or mps"


def resolve_device(name: str) -> torch.device:
    """"auto": CUDA if there is a GPU, else Apple's MPS, else the CPU; a device that is not there is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)) % torch.cuda.device_count())
        return torch.device("mps" if torch.backends.mps.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise AirsceneError(f"device {name!r} is not a device: use {DEVICES}") from None
    if device.type == "cuda" and (not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()):
        raise AirsceneError(f"device {name} is not available here ({torch.cuda.device_count()} CUDA devices): "
                            "use --device cpu or auto")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise AirsceneError("device mps is not available here: use --device cpu or auto")
    if device.type not in ("cpu", "cuda", "mps"):
        raise AirsceneError(f"device {name} is not supported: use {DEVICES}")
    return device


@dataclass(frozen=True, kw_only=True)
class Shard:
    """This process's place among those training one run: rank r of world size W."""

    rank: int = 0
    world: int = 1

    @property
    def leads(self) -> bool:
        """Rank 0 writes the run directory; the others only compute."""
        return self.rank == 0

    def indices(self, total: int) -> np.ndarray:
        """This rank's share of `total` items (every W-th from its rank): the shares are disjoint and cover all."""
        return np.arange(self.rank, total, self.world)

    def of_batch(self, indices: np.ndarray) -> np.ndarray:
        """This rank's contiguous slice of a global batch of world x per-rank images."""
        per_rank = len(indices) // self.world
        return indices[self.rank * per_rank:(self.rank + 1) * per_rank]

    def seed(self, seed: int) -> int:
        """The seed of this rank's random draws: the run's own for a single process, one derived from the run's
        and the rank otherwise, so that ranks draw independent samples."""
        return seed if self.world == 1 else int(np.random.SeedSequence([seed, self.rank]).generate_state(1)[0])


@contextmanager
def joined(device: torch.device):
    """This process's Shard: a member of the process group torchrun describes (RANK, WORLD_SIZE,
    MASTER_ADDR, ...) if there is one, joined here (and left at the end) unless the caller already has."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world == 1:
        yield Shard()
        return
    created = not dist.is_initialized()
    if created:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    try:
        yield Shard(rank=dist.get_rank(), world=dist.get_world_size())
        if created:
            dist.barrier()  # no rank leaves while another still sends to it
    finally:
        if created:
            dist.destroy_process_group()


def leads() -> bool:
    """Is this process rank 0 (or alone)? What only one process should print."""
    return int(os.environ.get("RANK", 0)) == 0


def replicate(module: torch.nn.Module, shard: Shard, device: torch.device) -> torch.nn.Module:
    """The module wrapped in DistributedDataParallel when there are several ranks (each gradient is then the
    average over ranks), else the module itself. A module without parameters is never wrapped."""
    if shard.world == 1 or not any(parameter.requires_grad for parameter in module.parameters()):
        return module
    # Some parameters take no part in some configurations (the camera head where the camera is fixed; the
    # presence head where the count is): DDP is told to look for them rather than wait for their gradient.
    return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None,
                                   find_unused_parameters=True)


def replicated_model(model: torch.nn.Module, shard: Shard, device: torch.device):
    """The model as the estimators should see it: itself for one rank, else a Replicated wrapper."""
    return model if shard.world == 1 else Replicated(replicate(model, shard, device))


class Replicated:
    """A model as the estimators see it: calls go through its DistributedDataParallel wrapper (which makes
    the backward pass average the gradients over ranks), every attribute (its likelihood, count prior,
    config) comes from the model itself."""

    def __init__(self, wrapper: torch.nn.Module):
        self.wrapper = wrapper

    def __call__(self, *arguments, **options):
        return self.wrapper(*arguments, **options)

    def __getattr__(self, name: str):
        return getattr(self.wrapper.module, name)


def all_sum(values: torch.Tensor, shard: Shard) -> torch.Tensor:
    """The elementwise sum of `values` over ranks (itself for one rank)."""
    if shard.world == 1:
        return values
    values = values.clone()
    dist.all_reduce(values)
    return values


def all_max(values: torch.Tensor, shard: Shard) -> torch.Tensor:
    if shard.world == 1:
        return values
    values = values.clone()
    dist.all_reduce(values, op=dist.ReduceOp.MAX)
    return values


def gather_objects(value, shard: Shard) -> list:
    """Every rank's `value`, in rank order."""
    if shard.world == 1:
        return [value]
    gathered = [None] * shard.world
    dist.all_gather_object(gathered, value)
    return gathered


def barrier(shard: Shard) -> None:
    if shard.world > 1:
        dist.barrier()
