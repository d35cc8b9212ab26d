"""The compiled training step (`--compile default`) beside the eager one, per training setting, on this machine.

    python benchmarks/compiled_step.py

Per setting, one process (2 torch threads) builds two identical jobs of the training loop (airscene.train.AIRJob,
default Multi-MNIST, batch 64), one stepping eagerly and one compiled, and takes the loop's own step
(airscene.runs.train_step) with each in turn, 300 steps each: the machine's drift falls on both alike, and the
figure is the median step past the first 50. The compile's cost is the compiled job's first step less the eager
one's. Each setting runs twice, in processes of its own: first with an empty compiler cache (as on a new machine
or after a PyTorch upgrade), then with the cache the first left (every later run of the same shapes)."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from results import write_section  # noqa: E402

SETTINGS = {"AIR": {}, "DAIR": {"model.model": "dair"}, "AIR, nvil": {"train.estimator": "nvil"},
            "AIR, vimco": {"train.estimator": "vimco"}, "AIR, relaxed": {"train.estimator": "relaxed"},
            "AIR, bf16": {"train.precision": "bf16"},
            "grid, local": {"model.model": "grid", "train.estimator": "local", "model.object_size": (20,)}}
STEPS, WARM_UP = 300, 50


def measure(data: str, setting: dict) -> dict:
    """In this process: the two jobs' step times (ms, median past WARM_UP) and the compile's seconds."""
    import torch

    from airscene.compiled import Compiled
    from airscene.config import Config
    from airscene.data import load_dataset
    from airscene.runs import draw_and_estimate, train_step
    from airscene.train import AIRJob, fit_model_to_data

    torch.set_num_threads(2)
    train, test, data_settings = load_dataset(data)
    jobs = {}
    for mode in ("none", "default"):
        config = Config(data=data)
        for path, value in setting.items():
            section, name = path.split(".")
            setattr(getattr(config, section), name, value)
        config.train.compile = mode
        config.validate()
        fit_model_to_data(config, train, test, data_settings=data_settings)
        torch.manual_seed(0)
        job = AIRJob(config, train, test, torch.device("cpu"))
        jobs[mode] = (job, Compiled(draw_and_estimate, mode, job.device))
    times = {mode: [] for mode in jobs}
    for step in range(STEPS):
        for mode, (job, forward) in jobs.items():
            started = time.perf_counter()
            train_step(job, step, job.model, job.estimator, forward)
            times[mode].append(time.perf_counter() - started)
    return {"eager_ms": 1000 * statistics.median(times["none"][WARM_UP:]),
            "compiled_ms": 1000 * statistics.median(times["default"][WARM_UP:]),
            "compile_seconds": times["default"][0] - times["none"][0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/multi-mnist")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS), metavar="SETTING")
    parser.add_argument("--out", default="benchmarks/out/compiled-step.json")
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # a setting, measured in this process
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.data, SETTINGS[args.measure])))
        return
    results = {}
    for name in args.settings:
        environment = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": tempfile.mkdtemp(prefix="inductor-")}  # empty
        results[name] = [json.loads(subprocess.run(
            [sys.executable, __file__, "--data", args.data, "--measure", name], env=environment, check=True,
            capture_output=True, text=True).stdout.strip().splitlines()[-1]) for _ in ("empty", "filled")]
        print(json.dumps({name: results[name]}), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    write_section("The compiled step", report(results))


def report(results: dict) -> str:
    rows = []
    for name, (empty, filled) in results.items():
        eager = statistics.mean([empty["eager_ms"], filled["eager_ms"]])
        compiled = statistics.mean([empty["compiled_ms"], filled["compiled_ms"]])
        rows.append(f"| {name} | {eager:.1f} ms | {compiled:.1f} ms | {compiled / eager:.2f} | "
                    f"{empty['compile_seconds']:.0f} s | {filled['compile_seconds']:.1f} s |")
    return "\n".join([
        f"Default Multi-MNIST, batch 64, default settings but those named. The training loop's step, eager and "
        f"compiled taking turns in one process, {STEPS} steps each; ms/step is the median past step {WARM_UP}, the mean "
        "of the setting's two processes; the compile is the compiled job's first step less the eager job's, with "
        "an empty compiler cache (the first process) and with the cache it left (the second).\n",
        "| setting | eager | compiled | compiled / eager | compile, empty cache | compile, cache filled |",
        "| --- | --- | --- | --- | --- | --- |", *rows])


if __name__ == "__main__":
    main()
