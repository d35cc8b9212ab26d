"""Where the compute is: the device a run uses, and the processes it shares the work with. Several processes
(on one machine or several) are launched by PyTorch's own `torchrun` and synchronised by its
DistributedDataParallel: gloo on CPUs, NCCL on CUDA. A single process is world size 1, and then nothing
here communicates."""

from __future__ import annotations

import datetime
import os
import pickle
import threading
import time
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
    if not isinstance(name, str):
        raise AirsceneError(f"device {name!r} is not a device name: use {DEVICES}")
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


# How long a rank waits for the others in one collective before it gives up (seconds): a rank that died or
# hangs ends the run with an error instead of a wait without end. AIRSCENE_COLLECTIVE_TIMEOUT sets it.
COLLECTIVE_TIMEOUT = float(os.environ.get("AIRSCENE_COLLECTIVE_TIMEOUT", 600))
SIGNAL_GRACE = 10.0  # seconds a rank that was asked to stop still waits for the others in a collective
STOP_REQUESTED = threading.Event()  # set by SIGINT, SIGTERM or SIGHUP (runs.stop_requests)


def communication_failure(error: BaseException) -> bool:
    """Whether an error is the process group's: a rank that died, hung past the timeout, or a broken link."""
    words = ("gloo", "nccl", "connection", "timed out", "timeout", "peer", "socket", "process group")
    return isinstance(error, getattr(dist, "DistError", ())) or (
        isinstance(error, RuntimeError) and any(word in str(error).lower() for word in words))


def _failed(error: BaseException) -> AirsceneError:
    first = (str(error).strip().splitlines() or [type(error).__name__])[0][:160]
    return AirsceneError(f"rank communication failed ({first}): another rank stopped, or the network broke; resume "
                         "the run with --resume from its last checkpoint")


@contextmanager
def joined(device: torch.device):
    """This process's Shard: a member of the process group torchrun describes (RANK, WORLD_SIZE,
    MASTER_ADDR, ...) if there is one, joined here (and left at the end) unless the caller already has. A
    failure of the group (a rank that died or hangs) ends the block as one line on every rank that lives."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world == 1:
        yield Shard()
        return
    created = not dist.is_initialized()
    if created:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo",
                                timeout=datetime.timedelta(seconds=COLLECTIVE_TIMEOUT))
    try:
        yield Shard(rank=dist.get_rank(), world=dist.get_world_size())
        if created:
            barrier(Shard(rank=dist.get_rank(), world=dist.get_world_size()))  # no rank leaves while another sends
    except RuntimeError as error:
        if communication_failure(error):
            raise _failed(error) from None
        raise
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


def _wait(work) -> None:
    """Wait for an asynchronous collective, polling, so that a stop request is seen: a rank asked to stop waits
    SIGNAL_GRACE seconds more for the others (they stop at the same step when they are alive), then gives up."""
    pause, given_up_at = 1e-4, None
    try:
        while not work.is_completed():
            if STOP_REQUESTED.is_set():
                given_up_at = given_up_at or time.monotonic() + SIGNAL_GRACE
                if time.monotonic() > given_up_at:
                    raise AirsceneError("stopped by a signal while waiting for the other ranks, which did not answer: "
                                        "the last checkpoint is intact; resume with --resume")
            time.sleep(pause)
            pause = min(pause * 2, 0.01)
        work.wait()
    except RuntimeError as error:
        raise _failed(error) if communication_failure(error) else error from None


def _on_backend(values: torch.Tensor) -> torch.Tensor:
    """A copy of `values` where the process group's backend takes it (NCCL: the GPU)."""
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    return values.to(device, copy=True)


def all_max(values: torch.Tensor, shard: Shard) -> torch.Tensor:
    """The elementwise maximum of `values` over ranks (itself for one rank), on the device it came from."""
    if shard.world == 1:
        return values
    reduced = _on_backend(values)
    _wait(dist.all_reduce(reduced, op=dist.ReduceOp.MAX, async_op=True))
    return reduced.to(values.device)


def gather_objects(value, shard: Shard) -> list:
    """Every rank's `value` (anything pickle writes), in rank order."""
    if shard.world == 1:
        return [value]
    payload = _on_backend(torch.frombuffer(bytearray(pickle.dumps(value)), dtype=torch.uint8))
    sizes = [_on_backend(torch.zeros(1, dtype=torch.int64)) for _ in range(shard.world)]
    _wait(dist.all_gather(sizes, _on_backend(torch.tensor([len(payload)])), async_op=True))
    longest = int(max(size.item() for size in sizes))
    padded = [_on_backend(torch.zeros(longest, dtype=torch.uint8)) for _ in range(shard.world)]
    _wait(dist.all_gather(padded, torch.nn.functional.pad(payload, (0, longest - len(payload))), async_op=True))
    return [pickle.loads(part[:int(size.item())].cpu().numpy().tobytes()) for part, size in zip(padded, sizes)]


def agree_on_settings(settings: dict, data_digest: str | None, shard: Shard, local: tuple[str, ...] = ()) -> None:
    """One comparison, at the start of a run, of every rank's settings (all but the `local` ones, dotted
    names that each process may set for itself) and data set: any difference is a one-line error on every
    rank, where training together would mix two runs or wait for ever."""
    if shard.world == 1:
        return
    mine = {name: value for name, value in _flat(settings).items() if name not in local}
    mine["data set digest"] = data_digest
    ranks = gather_objects(mine, shard)
    differing = sorted({name for other in ranks for name in set(other) | set(ranks[0])
                        if other.get(name) != ranks[0].get(name)})
    if differing:
        odd = next(rank for rank, other in enumerate(ranks) if other != ranks[0])
        raise AirsceneError(f"rank {odd}'s settings differ from rank 0's ({', '.join(differing[:6])}): start every "
                            "rank with the same flags and data")


def _flat(settings: dict, prefix: str = "") -> dict:
    flat = {}
    for name, value in settings.items():
        flat.update(_flat(value, f"{prefix}{name}.") if isinstance(value, dict) else {f"{prefix}{name}": value})
    return flat


def barrier(shard: Shard) -> None:
    if shard.world > 1:
        _wait(dist.barrier(async_op=True))
