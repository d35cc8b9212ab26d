"""Operations per training step, for versions of airscene side by side (each a `src` folder: benchmarks/versions.py):
every PyTorch operator one step dispatches (forward, backward, clipping and Adam), counted by a dispatch mode. On a
GPU each is a kernel launched from Python, which is what bounds the step there (RESULTS.md, "GPU"); the count
is exact and the same on any machine, so it is measured here without one.

    git archive REV src | tar -x -C .before
    python benchmarks/step_operations.py --version before=.before/src --version after=src
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from results import write_section  # noqa: E402

SETTINGS = {"AIR": [], "DAIR": ["--model", "dair"], "AIR, nvil": ["--estimator", "nvil"],
            "AIR, vimco": ["--estimator", "vimco"], "AIR, relaxed": ["--estimator", "relaxed"]}

COUNT = textwrap.dedent("""
    import sys
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from airscene.config import Config
    from airscene.data import load_dataset
    from airscene.estimators import Batch, make_estimator
    from airscene.images import to_model_layout
    from airscene.model import AIR
    from airscene.runs import batch_indices, make_optimiser
    data, flags = sys.argv[1], sys.argv[2:]
    train = load_dataset(data)[0]
    config = Config()
    for name, value in zip(flags[::2], flags[1::2]):
        setattr(config.model if name == "--model" else config.train, name[2:], value)
    config.model.image_size, config.model.channels = train.images.shape[1], 1
    torch.manual_seed(0)
    model, estimator = AIR(config.model), make_estimator(config)
    optimiser = make_optimiser(model, estimator, config.train)
    class Counted(TorchDispatchMode):
        operations = 0
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            Counted.operations += 1
            return func(*args, **(kwargs or {}))
    def step(number):
        images = to_model_layout(train.images[batch_indices(number, len(train), 64, 0)], 1)
        loss, _ = estimator(model, estimator.draw(model, Batch(images=images), 0.5, number))
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.train.clip_norm)
        optimiser.step()
    step(0)  # the first step creates Adam's state
    with Counted():
        step(1)
    print(Counted.operations)
""")


def operations(source: str, data: str, flags: list[str]) -> int:
    environment = {**os.environ, "PYTHONPATH": str(Path(source).resolve())}
    output = subprocess.run([sys.executable, "-c", COUNT, data, *flags], check=True, env=environment,
                            capture_output=True, text=True, timeout=600).stdout
    return int(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="append", required=True, help="NAME=SRC_FOLDER, once per version")
    parser.add_argument("--data", default="data/multi-mnist")
    args = parser.parse_args()
    versions = dict(version.split("=", 1) for version in args.version)
    counts = {name: {setting: operations(source, args.data, flags) for setting, flags in SETTINGS.items()}
              for name, source in versions.items()}
    print(json.dumps(counts))
    names = list(versions)
    rows = [f"| {setting} | " + " | ".join(f"{counts[name][setting]:,}" for name in names) + " |" for setting in SETTINGS]
    write_section("Operations per training step", "\n".join([
        f"Versions: {', '.join(f'{name} = `{source}`' for name, source in versions.items())}. PyTorch operators "
        "dispatched by one training step at batch 64 (forward, backward, gradient clipping, Adam), the step after "
        "the first; default settings but those named.\n",
        "| setting | " + " | ".join(names) + " |", "| --- | " + " | ".join("---" for _ in names) + " |", *rows]))


if __name__ == "__main__":
    main()
