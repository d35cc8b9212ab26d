"""Running two versions of airscene side by side: each a `src` folder (the code before a change and after it),
driven through its command line under PYTHONPATH=SRC, so that any version can be measured by the same script.

    git archive REV src | tar -x -C .before     # the earlier version's source, beside the current one
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def parse_versions(values: list[str]) -> dict[str, tuple[str, list[str]]]:
    """--version arguments, each "NAME=SRC_FOLDER" or "NAME=SRC_FOLDER --flag value ...", as {name: (the
    folder, the training flags that version is run with)}: one source measured with and without a flag."""
    versions = {}
    for value in values:
        name, rest = value.split("=", 1)
        source, *flags = rest.split()
        versions[name] = (source, flags)
    return versions


def compile_mode(flags: list[str]) -> str:
    """The --compile flag's value among a version's flags, or "none"."""
    return flags[flags.index("--compile") + 1] if "--compile" in flags else "none"


def under(source: str) -> dict:
    """The environment of a process that imports `source`'s airscene."""
    return {**os.environ, "PYTHONPATH": str(Path(source).resolve())}


def airscene(source: str, *arguments: str, timeout: float = 900) -> None:
    subprocess.run([sys.executable, "-m", "airscene.cli", *arguments], check=True, env=under(source),
                   stdout=subprocess.DEVNULL, timeout=timeout)


def last_line(source: str, code: str, *arguments: str, timeout: float = 600) -> str:
    """What `python -c code arguments...` under `source`'s airscene prints last: a measuring script's result."""
    output = subprocess.run([sys.executable, "-c", code, *arguments], check=True, env=under(source),
                            capture_output=True, text=True, timeout=timeout).stdout
    return output.strip().splitlines()[-1]


def records(run: Path, kind: str) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [record for record in map(json.loads, lines) if record["kind"] == kind]


def record_seconds(source: str, data: str, device: str, batch: int, steps: int, *flags: str) -> dict[int, float]:
    """The `seconds` of each training record (every 50 steps) of a run of `steps` steps with no evaluation or
    checkpoint before its end."""
    run = Path(tempfile.mkdtemp()) / "run"
    airscene(source, "train", "--data", data, "--out", str(run), "--device", device, "--batch-size", str(batch),
             "--steps", str(steps), "--log-every", "50", "--eval-every", str(10 * steps), "--checkpoint-every",
             str(10 * steps), "--quiet", *flags)
    return {record["step"]: record["seconds"] for record in records(run, "train")}


def ms_per_step(source: str, data: str, device: str, batch: int, steps: int, *flags: str) -> float:
    """The time between the training records of step 100 and step `steps`, per step."""
    seconds = record_seconds(source, data, device, batch, steps, *flags)
    return 1000 * (seconds[steps] - seconds[100]) / (steps - 100)


def time_to_accuracy(source: str, data: str, device: str, batch: int, minutes: float, *flags: str,
                     run: Path | None = None, targets: tuple[float, ...] = (0.95,)) -> dict:
    """A run of `minutes` evaluated every 100 steps on 1,000 held-out scenes: the seconds and step of the first
    evaluation at or above each target accuracy (None if never), and the last evaluation's."""
    run = run or Path(tempfile.mkdtemp()) / "run"
    airscene(source, "train", "--data", data, "--out", str(run), "--device", device, "--batch-size", str(batch),
             "--minutes", str(minutes), "--eval-every", "100", "--eval-images", "1000", "--quiet", *flags)
    evaluations = records(run, "eval")
    result = {"final_accuracy": evaluations[-1]["test_count_accuracy"], "final_step": evaluations[-1]["step"],
              "run": str(run)}
    for target in targets:
        reached = next((record for record in evaluations if record["test_count_accuracy"] >= target), None)
        name = f"{round(100 * target)}"
        result[f"seconds_to_{name}"], result[f"step_at_{name}"] = reached and reached["seconds"], reached and reached["step"]
    return result
