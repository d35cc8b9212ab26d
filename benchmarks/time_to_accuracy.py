"""Time to accuracy on this machine's 2 cores, for two versions of airscene side by side in one run (each a
`src` folder: benchmarks/versions.py), through the command line with default flags:

    git archive REV src | tar -x -C .before
    python benchmarks/time_to_accuracy.py --version before=.before/src --version after=src
    python benchmarks/time_to_accuracy.py --version eager=src --version "compiled=src --compile default"

Per seed, each version trains alone (2 torch threads) for --minutes, evaluated every 100 steps on 1,000 held-out
scenes: the wall-clock seconds to the first evaluation at 95% and at 99%. The training step's ms at batch 64
(no evaluation between the timed records) is measured --rounds times per version, the versions alternating, so
that the machine's drift falls on both alike."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from results import write_section  # noqa: E402
from versions import ms_per_step, parse_versions, time_to_accuracy  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="append", required=True, help="NAME=SRC_FOLDER [FLAGS], once per version")
    parser.add_argument("--data", default="data/multi-mnist")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--minutes", type=float, default=3.0, help="budget of each run")
    parser.add_argument("--rounds", type=int, default=3, help="step timings per version")
    parser.add_argument("--out", default="benchmarks/out/time-to-accuracy")
    args = parser.parse_args()
    versions = parse_versions(args.version)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    steps: dict[str, list[float]] = {name: [] for name in versions}
    for _ in range(args.rounds):
        for name, (source, flags) in versions.items():
            steps[name].append(ms_per_step(source, args.data, "cpu", 64, 300, "--threads", "2", *flags))
    print(json.dumps({"ms_per_step": steps}), flush=True)
    runs: dict[str, list[dict]] = {name: [] for name in versions}
    for seed in args.seeds:
        for name, (source, flags) in versions.items():
            run = out / f"{name}-seed{seed}"
            if run.exists():
                raise SystemExit(f"{run} exists: give a new --out")
            runs[name].append({"seed": seed, **time_to_accuracy(source, args.data, "cpu", 64, args.minutes, "--threads", "2",
                                                                "--seed", str(seed), *flags, run=run,
                                                                targets=(0.95, 0.99))})
            print(json.dumps({name: runs[name][-1]}), flush=True)
    (out / "results.json").write_text(json.dumps({"ms_per_step": steps, "runs": runs}, indent=2) + "\n")
    write_section("Time to accuracy", report(versions, steps, runs, args.minutes))


def report(versions: dict, steps: dict, runs: dict, minutes: float) -> str:
    def seconds(value) -> str:
        return "not reached" if value is None else f"{value:.1f} s"

    def median(values) -> str:
        reached = [value for value in values if value is not None]
        return seconds(statistics.median(values)) if len(reached) == len(values) else f"{len(reached)} of {len(values)} reached"

    names = list(versions)
    rows = [f"| training step, batch 64, median of {len(steps[names[0]])} timings | "
            + " | ".join(f"{statistics.median(steps[name]):.1f} ms" for name in names) + " |"]
    for target in (95, 99):
        rows.append(f"| median time to {target}% over {len(runs[names[0]])} seeds | "
                    + " | ".join(median([run[f"seconds_to_{target}"] for run in runs[name]]) for name in names) + " |")
    per_seed = [f"| {run['seed']} | " + " | ".join(
        f"{seconds(runs[name][index]['seconds_to_95'])} (step {runs[name][index]['step_at_95']}) / "
        f"{seconds(runs[name][index]['seconds_to_99'])} / {runs[name][index]['final_accuracy']:.3f}"
        for name in names) + " |" for index, run in enumerate(runs[names[0]])]
    ratios = ", ".join(f"{name} {statistics.median(steps[name]) / statistics.median(steps[names[0]]):.2f}" for name in names[1:])
    described = ", ".join(f"{name} = `{' '.join([source, *flags])}`" for name, (source, flags) in versions.items())
    return "\n".join([
        f"Versions: {described}. Each run alone on the 2 cores, default flags but a version's own, {minutes:g} minutes, evaluated every 100 steps on 1,000 held-out scenes; ms/step between "
        "the training records of steps 100 and 300 of a run with no evaluation, the versions alternating.\n",
        "| | " + " | ".join(names) + " |", "| --- | " + " | ".join("---" for _ in names) + " |", *rows,
        f"\nStep time against {names[0]}'s: {ratios}.\n",
        "| seed | " + " | ".join(f"{name}: to 95% / to 99% / final accuracy" for name in names) + " |",
        "| --- | " + " | ".join("---" for _ in names) + " |", *per_seed])


if __name__ == "__main__":
    main()
