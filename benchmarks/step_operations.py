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
import sys
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from results import write_section  # noqa: E402
from versions import last_line  # noqa: E402

SETTINGS = {"AIR": ("air", "enumerate"), "DAIR": ("dair", "enumerate"), "AIR, nvil": ("air", "nvil"),
            "AIR, vimco": ("air", "vimco"), "AIR, relaxed": ("air", "relaxed")}  # (model, estimator)

COUNT = textwrap.dedent("""
    import sys
    from torch.utils._python_dispatch import TorchDispatchMode
    benchmarks, data, model, estimator = sys.argv[1:5]
    sys.path.insert(0, benchmarks)
    from airscene.data import load_dataset
    from speed import ManualTraining
    training = ManualTraining(load_dataset(data)[0], estimator, model)
    class Counted(TorchDispatchMode):
        operations = 0
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            Counted.operations += 1
            return func(*args, **(kwargs or {}))
    training.step(0, exploration=0.5)  # the first step creates Adam's state
    with Counted():
        training.step(1, exploration=0.5)
    print(Counted.operations)
""")


def operations(source: str, data: str, model: str, estimator: str) -> int:
    """The operators one training step of `source`'s airscene dispatches (speed.ManualTraining's step)."""
    return int(last_line(source, COUNT, str(Path(__file__).parent), data, model, estimator))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="append", required=True, help="NAME=SRC_FOLDER, once per version")
    parser.add_argument("--data", default="data/multi-mnist")
    args = parser.parse_args()
    versions = dict(version.split("=", 1) for version in args.version)
    counts = {name: {setting: operations(source, args.data, *kinds) for setting, kinds in SETTINGS.items()}
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
