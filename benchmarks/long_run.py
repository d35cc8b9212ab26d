"""A long run of the default configuration: does anything go non-finite in 20,000 steps? Counts the steps
the loop skipped for a non-finite loss or gradient, scans the saved parameters for NaN/Inf, and records
the held-out accuracy over the run."""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from results import write_section  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default="data/multi-mnist")
    parser.add_argument("--out", default="benchmarks/out/long_run")
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--estimator", default="enumerate")
    args = parser.parse_args()
    out = Path(args.out)
    if not (out / "train_summary.json").is_file():
        command = [sys.executable, "-m", "airscene.cli", "train", "--data", args.data, "--out", str(out), "--quiet",
                   "--estimator", args.estimator, "--steps", str(args.steps), "--threads", "1", "--eval-every", "1000"]
        if (out / "checkpoint.pt").is_file():
            command.append("--resume")
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    skipped = [r for r in records if r["kind"] == "skipped"]
    trains = [r for r in records if r["kind"] == "train"]
    evals = [r for r in records if r["kind"] == "eval"]
    state = torch.load(out / "checkpoint.pt", weights_only=False)
    tensors = list(state["model"].values()) + list(state["estimator"].values())
    non_finite = sum(int((~torch.isfinite(t)).sum()) for t in tensors if t.is_floating_point())
    losses = [r["loss"] for r in trains]
    curve = ", ".join(f"{e['step']}: {e['test_count_accuracy']:.3f}" for e in evals if e["step"] % 2000 == 0)
    body = "\n".join([
        f"`airscene train --estimator {args.estimator} --steps {args.steps} --threads 1` with the default configuration, "
        "one torch thread; paused at times while timed benchmarks ran, so its wall-clock time means nothing.\n",
        "| what | value |",
        "| --- | --- |",
        f"| steps run | {state['step']} |",
        f"| steps skipped for a non-finite loss or gradient | {len(skipped)} |",
        f"| non-finite values among the saved parameters | {non_finite} |",
        f"| training loss (per {trains[0]['step']}-step window): first, min, max, last | {losses[0]:.1f}, {min(losses):.1f}, "
        f"{max(losses):.1f}, {losses[-1]:.1f} |",
        f"| held-out count accuracy (1,000 scenes) by step | {curve} |",
    ])
    write_section("Long run", body)
    print(body)


if __name__ == "__main__":
    main()
