"""Writes one benchmark's section of benchmarks/RESULTS.md, leaving the other sections as they are."""

from __future__ import annotations

import argparse
import json
import platform
import re
import shlex
import subprocess
import sys
from datetime import date
from pathlib import Path

import torch

RESULTS = Path(__file__).with_name("RESULTS.md")
HEADER = "# airscene benchmark results\n\nEach section is written by the script named in it; rerun that command to refresh it.\n"


DEFAULT_MINUTES = 10.0  # a seeded run's wall-clock budget unless --minutes says otherwise


def seeded_runs_parser(description: str, out: str) -> argparse.ArgumentParser:
    """The options of a benchmark that trains runs by seed for a wall-clock budget: where its runs go, the
    seeds, each run's minutes, and how many train at once."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", default=out)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--minutes", type=float, default=DEFAULT_MINUTES)
    parser.add_argument("--parallel", type=int, default=2)
    return parser


def run_airscene(*arguments: str) -> None:
    """Run an `airscene` command in a subprocess, quietly, failing loudly."""
    subprocess.run([sys.executable, "-m", "airscene.cli", *arguments], check=True, stdout=subprocess.DEVNULL)


def train_once(out: Path, *arguments: str) -> bool:
    """Run an `airscene ... train --out OUT` command unless OUT holds a finished run; resume it if OUT holds
    an interrupted one. True if it trained now."""
    summary = out / "train_summary.json"
    if summary.is_file() and json.loads(summary.read_text())["stopped_by"] not in ("SIGINT", "SIGTERM"):
        return False  # finished; one stopped by a signal is resumed
    run_airscene(*arguments, "--out", str(out), *(["--resume"] if (out / "checkpoint.pt").is_file() else []))
    return True


def train_and_evaluate(run: Path, data, seed: int, minutes: float, *flags: str, samples: int = 5) -> Path:
    """One single-threaded `airscene train` of `minutes` on `data` with `flags` (skipped if finished, resumed
    if interrupted), then `airscene eval` with `samples` importance samples once it has trained now."""
    if train_once(run, "train", "--data", str(data), *flags, "--seed", str(seed), "--minutes", str(minutes),
                  "--threads", "1", "--quiet"):
        run_airscene("eval", str(run), "--samples", str(samples))
    return run


def machine() -> str:
    import os

    return (f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}, "
            f"{torch.get_num_threads()} torch threads, {date.today().isoformat()}")


def write_section(name: str, body: str, measured_on: str | None = None) -> None:
    """Replace (or append) the section between this benchmark's markers; `measured_on`: the machine the figures
    came from, where that is not the one writing them."""
    command = "python " + " ".join(shlex.quote(part) for part in [f"benchmarks/{Path(sys.argv[0]).name}", *sys.argv[1:]])
    section = (f"<!-- {name}:start -->\n## {name}\n\nCommand: `{command}`  \nMachine: {measured_on or machine()}\n\n"
               f"{body.strip()}\n"
               f"<!-- {name}:end -->")
    text = RESULTS.read_text() if RESULTS.is_file() else HEADER
    pattern = re.compile(rf"<!-- {re.escape(name)}:start -->.*?<!-- {re.escape(name)}:end -->", re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section + "\n"
    RESULTS.write_text(text)
