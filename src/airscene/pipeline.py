"""The main job (`airscene run`, `bash scripts/run.sh`): the default Multi-MNIST data if missing, training
for a fixed budget (resumed if the run directory holds a checkpoint), held-out evaluation and Fig. 3."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

from airscene.checkpoint import resumable
from airscene.config import MAIN_JOB_MINUTES, Config
from airscene.data import make_multi_mnist
from airscene.errors import AirsceneError
from airscene.evaluate import evaluate_run
from airscene.storage import as_path
from airscene.train import train
from airscene.viz import draw_run_figure


def main_job(config: Config, out: str | Path, progress: bool = True, say: Callable[[str], None] = print) -> dict:
    """Everything the README's main job does; `say` reports what it is doing. Returns the training summary,
    the held-out metrics and where the figure is. A config with no minutes trains for MAIN_JOB_MINUTES."""
    out = as_path(out, "run directory")
    if config.train.minutes is None:
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, minutes=MAIN_JOB_MINUTES))
    data = Path(config.data)
    if not (data / "dataset.json").is_file():
        if data.exists() and (not data.is_dir() or any(data.iterdir())):
            raise AirsceneError(f"{data} holds files but no dataset.json: it is not an airscene data set, and the main "
                                "job will not write over it; give another --data")
        say(f"making the default Multi-MNIST data set in {config.data} ...")
        make_multi_mnist(config.data, seed=0, progress=progress)
    resume = resumable(out)
    if resume:
        say(f"resuming the run in {out}")
    summary = train(config, out, resume=resume, progress=progress)
    if summary["stopped_by"] in ("SIGINT", "SIGTERM"):
        return {"summary": summary}
    return {"summary": summary, "metrics": evaluate_run(out, samples=20), "figure": draw_run_figure(out)}
