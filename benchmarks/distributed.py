"""Several processes on this machine: training images per second of 1 and 2 processes (torchrun, DDP over
gloo, one thread each); the cost of DistributedDataParallel per step (the same steps timed with and without
the gradient all-reduce, in the same processes); and `train --seeds` side by side against one after another.

    python benchmarks/distributed.py --data data/multi-mnist
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from results import run_airscene, write_section  # noqa: E402

from airscene.config import Config, TrainConfig  # noqa: E402
from airscene.data import load_dataset  # noqa: E402
from airscene.distributed import joined, replicate, replicated_model  # noqa: E402
from airscene.runs import gather_objects  # noqa: E402
from airscene.train import AIRJob, fit_model_to_data  # noqa: E402

QUIET_LOOP = ["--eval-every", "1000000", "--checkpoint-every", "1000000", "--log-every", "50", "--quiet"]


def torchrun(processes: int, *arguments: str) -> None:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes),
               *arguments]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})


def images_per_second(data: str, out: Path, processes: int, batch_per_rank: int, steps: int) -> float:
    """Train `steps` steps of `processes` x `batch_per_rank` images; the training loop's own seconds."""
    run = out / f"throughput-{processes}x{batch_per_rank}"
    torchrun(processes, "-m", "airscene", "train", "--data", data, "--out", str(run), "--threads", "1",
             "--steps", str(steps), "--batch-size", str(batch_per_rank), *QUIET_LOOP)
    summary = json.loads((run / "train_summary.json").read_text())
    return summary["step"] * processes * batch_per_rank / summary["seconds"]


def timed_steps(job: AIRJob, model, estimator, first_step: int, steps: int) -> list[float]:
    """Seconds of each of `steps` full updates (forward, loss, backward, optimiser step)."""
    times = []
    for step in range(first_step, first_step + steps):
        started = time.perf_counter()
        batch = job.batch(step)
        loss, _ = estimator(model, job.estimator.draw(model, batch, 0.0, step))
        job.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        job.optimiser.step()
        times.append(time.perf_counter() - started)
    return times


def overhead_worker(data: str, out: str, batch_per_rank: int, steps: int) -> None:
    """Run by torchrun: alternate blocks of steps through the DDP wrapper and through the bare model (whose
    gradients are then not averaged: only the time is wanted); rank 0 writes the medians."""
    config = Config(data=data, train=TrainConfig(batch_size=batch_per_rank, threads=1))
    torch.set_num_threads(1)
    train_set, test_set, _ = load_dataset(data)
    with joined(torch.device("cpu")) as shard:
        fit_model_to_data(config, train_set, test_set, shard)
        torch.manual_seed(0)
        job = AIRJob(config, train_set, test_set, torch.device("cpu"), shard)
        wrapped = replicated_model(job.model, shard, job.device), replicate(job.estimator, shard, job.device)
        bare = job.model, job.estimator
        timed_steps(job, *wrapped, 0, 10)  # warm up allocators and DDP's buckets
        with_ddp, without = [], []
        for block in range(steps // 20):
            with_ddp += timed_steps(job, *wrapped, 10 + 40 * block, 20)
            without += timed_steps(job, *bare, 30 + 40 * block, 20)
        medians = gather_objects((statistics.median(with_ddp), statistics.median(without)), shard)
        if shard.leads:
            Path(out).write_text(json.dumps({"with_ddp": max(m[0] for m in medians),
                                             "without": max(m[1] for m in medians)}))


def ddp_overhead(data: str, out: Path, batch_per_rank: int, steps: int) -> dict:
    result = out / "overhead.json"
    torchrun(2, __file__, "--worker", "--data", data, "--out", str(result), "--batch-per-rank", str(batch_per_rank),
             "--steps", str(steps))
    return json.loads(result.read_text())


def seeds_wall_clock(data: str, out: Path, steps: int, parallel: int) -> float:
    """Seconds for `train --seeds 0,1` (training and evaluating both), `parallel` at a time."""
    started = time.perf_counter()
    run_airscene("train", "--data", data, "--out", str(out / f"seeds-parallel{parallel}"), "--seeds", "0,1",
                 "--parallel", str(parallel), "--steps", str(steps), *QUIET_LOOP)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default="data/multi-mnist")
    parser.add_argument("--out", default="benchmarks/out/distributed")
    parser.add_argument("--steps", type=int, default=300, help="steps of each throughput and seeds run")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--batch-per-rank", type=int, default=32, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return overhead_worker(args.data, args.out, args.batch_per_rank, args.steps)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for previous in out.iterdir():  # every number here is measured now
        shutil.rmtree(previous) if previous.is_dir() else previous.unlink()
    one = images_per_second(args.data, out, 1, 64, args.steps)
    two_same_batch = images_per_second(args.data, out, 2, 32, args.steps)
    two_double_batch = images_per_second(args.data, out, 2, 64, args.steps)
    overhead = ddp_overhead(args.data, out, 32, args.steps)
    side_by_side = seeds_wall_clock(args.data, out, args.steps, parallel=2)
    one_after_another = seeds_wall_clock(args.data, out, args.steps, parallel=1)
    extra = 1000 * (overhead["with_ddp"] - overhead["without"])
    body = "\n".join([
        "CPU only: this machine has no GPU, so the CUDA path (NCCL, one process per GPU) is not measured here.",
        "",
        "| | images / s | against 1 process |",
        "|---|---:|---:|",
        f"| 1 process, 1 thread, batch 64 | {one:.0f} | 1.00x |",
        f"| 2 processes (torchrun), 1 thread each, 2 x 32 = the same batch of 64 | {two_same_batch:.0f} | "
        f"{two_same_batch / one:.2f}x |",
        f"| 2 processes, 1 thread each, 2 x 64 = a batch of 128 | {two_double_batch:.0f} | {two_double_batch / one:.2f}x |",
        "",
        f"DistributedDataParallel per step (2 processes, 32 images each, median of {args.steps // 20 * 20} steps "
        f"each way, alternating): {1000 * overhead['with_ddp']:.1f} ms with the gradient all-reduce against "
        f"{1000 * overhead['without']:.1f} ms without, {extra:.1f} ms "
        f"({100 * extra / (1000 * overhead['without']):.0f}%) of overhead.",
        "",
        f"`train --seeds 0,1 --steps {args.steps}` (each seed trained, then evaluated): side by side (`--parallel 2`, "
        f"one thread each) {side_by_side:.0f} s; one after another (`--parallel 1`, two threads each) "
        f"{one_after_another:.0f} s; {one_after_another / side_by_side:.2f}x.",
        "",
        "What this says: each step all-reduces AIR's gradient (about 1.6 M parameters, 6 MB) over gloo, and on a "
        "machine with as many cores as processes the communication competes with the computation. Splitting a "
        "batch over processes pays where each process has cores (or a GPU) of its own; on one small machine, "
        "more images per step, or seeds side by side, use the second core better.",
    ])
    write_section("Several processes", body)


if __name__ == "__main__":
    main()
