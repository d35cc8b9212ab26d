"""The compiled training step (`--compile default`) beside the eager one, per training setting, on this machine:
ms/step at batch 64 between the training records of steps 100 and 300, and the seconds the compile adds to
the run's start (the compiled run's step-100 record less the eager run's), with the compiler's cache empty
(a new machine, or a new PyTorch) and filled (every later run of the same shapes).

    python benchmarks/compiled_step.py

Each run is its own process through the command line (benchmarks/versions.py), alone on the 2 cores with 2 torch
threads; two rounds, eager and compiled alternating; the first compiled run of a setting starts from an empty
compiler cache of its own, the second reuses it."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from results import write_section  # noqa: E402
from versions import record_seconds  # noqa: E402

SETTINGS = {"AIR": [], "DAIR": ["--model", "dair"], "AIR, nvil": ["--estimator", "nvil"],
            "AIR, vimco": ["--estimator", "vimco"], "AIR, relaxed": ["--estimator", "relaxed"],
            "AIR, bf16": ["--precision", "bf16"],
            "grid, local": ["--model", "grid", "--estimator", "local", "--object-size", "20"]}
STEPS = 300


def timed(data: str, flags: list[str]) -> dict[int, float]:
    return record_seconds("src", data, "cpu", 64, STEPS, "--threads", "2", *flags)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/multi-mnist")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS), metavar="SETTING")
    parser.add_argument("--out", default="benchmarks/out/compiled-step.json")
    args = parser.parse_args()
    results = {}
    for name in args.settings:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor-")  # empty for this setting
        rounds = []
        for _ in range(2):
            eager = timed(args.data, SETTINGS[name])
            compiled = timed(args.data, [*SETTINGS[name], "--compile", "default"])
            rounds.append({"eager_ms": 1000 * (eager[STEPS] - eager[100]) / (STEPS - 100),
                           "compiled_ms": 1000 * (compiled[STEPS] - compiled[100]) / (STEPS - 100),
                           "compile_seconds": compiled[100] - eager[100]})
        results[name] = rounds
        print(json.dumps({name: rounds}), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    write_section("The compiled step", report(results))


def report(results: dict) -> str:
    rows = []
    for name, rounds in results.items():
        eager = statistics.mean(entry["eager_ms"] for entry in rounds)
        compiled = statistics.mean(entry["compiled_ms"] for entry in rounds)
        rows.append(f"| {name} | {eager:.1f} ms | {compiled:.1f} ms | {compiled / eager:.2f} | "
                    f"{rounds[0]['compile_seconds']:.0f} s | {rounds[1]['compile_seconds']:.0f} s |")
    return "\n".join([
        f"Default Multi-MNIST, batch 64, default flags but those named; ms/step between the records of steps 100 and "
        f"{STEPS}, the mean of two rounds (eager and compiled alternating, each its own process); the compile's "
        "seconds are the compiled run's step-100 record less the eager run's of the same round, with an empty "
        "compiler cache (round 1) and with the cache round 1 left (round 2).\n",
        "| setting | eager | compiled | compiled / eager | compile, empty cache | compile, cache filled |",
        "| --- | --- | --- | --- | --- | --- |", *rows])


if __name__ == "__main__":
    main()
