"""Several seeds side by side: each trains (and is evaluated) in its own process with its own threads, and
the best is chosen by held-out ELBO, which needs no labels. The paper's estimator fails in some seeds:
this is what a careful user runs."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from airscene.checkpoint import resumable
from airscene.config import Config
from airscene.errors import AirsceneError
from airscene.storage import check_writable, claim_directory, read_json, write_json

MAX_SEEDS = 64
SEEDS_MARKER = ".airscene-seeds"  # in every seeds directory airscene made


def run_command(arguments: list[str]) -> tuple[int, str]:
    """An airscene command in a child process: its exit code and its last line of error."""
    finished = subprocess.run([sys.executable, "-m", "airscene", *arguments], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    return finished.returncode, (finished.stderr.strip().splitlines() or [""])[-1]


def train_seed(config: Config, directory: Path, samples: int) -> dict:
    """Train (or resume) one seed's run in `directory` and evaluate it; its summary, metrics, or error."""
    request = directory.with_suffix(".json")
    write_json(request, config.to_dict(), "seed config")
    resume = ["--resume"] if resumable(directory) else []
    code, error = run_command(["train", "--data", config.data, "--config", str(request), "--out", str(directory),
                               "--quiet", *resume])
    if code != 0:
        return {"seed": config.train.seed, "run": str(directory), "error": error, "exit_code": code}
    code, error = run_command(["eval", str(directory), "--samples", str(samples)])
    if code != 0:
        return {"seed": config.train.seed, "run": str(directory), "error": error, "exit_code": code}
    metrics = json.loads((directory / "eval.json").read_text())
    summary = json.loads((directory / "train_summary.json").read_text())
    return {"seed": config.train.seed, "run": str(directory), "steps": summary["step"], "seconds": summary["seconds"],
            "stopped_by": summary["stopped_by"], **{key: metrics.get(key) for key in
                                                     ("test_elbo", "test_log_likelihood_iw", "count_accuracy")}}


def earlier_report(path: Path) -> bool:
    """Whether `path` is the report of an earlier `train --seeds` (from before the seeds directory's marker)."""
    try:
        report = read_json(path, "seeds report")
    except AirsceneError:
        return False
    return isinstance(report, dict) and {"seeds", "best", "chosen_by"} <= set(report)


def train_seeds(config: Config, out: str | Path, seeds: tuple[int, ...], parallel: int | None = None,
                samples: int = 20) -> dict:
    """Train `config` once per seed in OUT/seed-N, `parallel` at a time (default: as many as there are
    cores, up to the number of seeds), the cores shared between them unless config.train.threads says
    otherwise; evaluate each on the held-out images; write OUT/seeds.json with every seed's result and the
    best one by test ELBO, and return it."""
    config.validate()
    if int(os.environ.get("WORLD_SIZE", 1)) > 1:
        raise AirsceneError("--seeds starts a process of its own for each seed: run it without torchrun")
    if not seeds or len(seeds) > MAX_SEEDS or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise AirsceneError(f"--seeds {seeds} is invalid: give 1 to {MAX_SEEDS} different seeds >= 0, e.g. 0,1,2")
    cores = os.cpu_count() or 1
    parallel = parallel or min(len(seeds), cores)
    if isinstance(parallel, bool) or not isinstance(parallel, int) or parallel < 1:
        raise AirsceneError(f"--parallel is {parallel!r}: run a whole number >= 1 of seeds at a time")
    out = check_writable(out, "seeds directory")
    claim_directory(out, SEEDS_MARKER, "seeds directory", lambda entries: earlier_report(out / "seeds.json"))
    threads = config.train.threads or max(1, cores // parallel)
    runs = [dataclasses.replace(config, train=dataclasses.replace(config.train, seed=seed, threads=threads))
            for seed in seeds]
    with ThreadPoolExecutor(parallel) as pool:
        results = list(pool.map(lambda run: train_seed(run, out / f"seed-{run.train.seed}", samples), runs))
    finished = [result for result in results if "error" not in result and result["test_elbo"] is not None]
    best = max(finished, key=lambda result: result["test_elbo"], default=None)
    report = {"seeds": results, "best": best and best["run"], "chosen_by": "held-out ELBO (test_elbo)",
              "parallel": parallel, "threads_per_seed": threads}
    write_json(out / "seeds.json", report, "seeds report")
    return report
